"""Network namespaces, veth pairs, bridges and router daemons: the netns tests' toolkit
(tests/netns imports it as `netns`) and the soak benchmark's, with the `line` topology both use.

Everything is created through a `Lab`, which records each object *before* creating it and
removes all of it in `close()` (reverse order), even when a test fails halfway through
building its topology. Namespace names carry the test process id (`vrl<pid>-<serial>-<role>`) so
parallel runs never collide, and `remove_stale()` clears namespaces left by a run that was
killed before its clean-up could run.

Only documentation addresses (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)
and link-local addresses are ever configured.

Netlink goes through pyroute2; the commands under test (ping, traceroute, nc, ...) run in a
namespace with `ip netns exec`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import yaml
from pyroute2 import NetNS, netns

REPO = Path(__file__).resolve().parents[1]
PREFIX = f"vrl{os.getpid()}"
_STALE = re.compile(r"^vrl(\d+)-")
_SERIAL = itertools.count(1)
NUD_PERMANENT = 0x80  # linux/neighbour.h


def remove_stale() -> list[str]:
    """Remove `vrl<pid>-*` namespaces whose creating process no longer exists."""
    removed = []
    for name in netns.listnetns():
        m = _STALE.match(name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            with contextlib.suppress(OSError):
                netns.remove(name)
                removed.append(name)
    return removed


def link_local(mac: str) -> IPv6Address:
    """The modified EUI-64 link-local address of `mac` (RFC 4291 appendix A), as Linux forms it."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:6]
    return IPv6Address(b"\xfe\x80" + bytes(6) + iid)


class Namespace:
    """One network namespace; `run` executes a command inside it."""

    def __init__(self, name: str) -> None:
        self.name = name
        netns.create(name)
        self._ipr: NetNS | None = None
        try:
            self.set_up("lo")
        except Exception:
            self.remove()
            raise

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    @property
    def ipr(self) -> NetNS:
        if self._ipr is None:
            self._ipr = NetNS(self.name)
        return self._ipr

    def ifindex(self, ifname: str) -> int:
        found = self.ipr.link_lookup(ifname=ifname)
        if not found:
            raise LookupError(f"no interface {ifname} in {self.name}")
        return int(found[0])

    def set_up(self, ifname: str, *, mtu: int | None = None, mac: str | None = None) -> None:
        idx = self.ifindex(ifname)
        if mac is not None:
            self.ipr.link("set", index=idx, address=mac)
        if mtu is not None:
            self.ipr.link("set", index=idx, mtu=mtu)
        self.ipr.link("set", index=idx, state="up")

    def add_address(self, ifname: str, cidr: str) -> None:
        addr, plen = cidr.split("/")
        kwargs: dict[str, Any] = {}
        if ":" in addr:
            kwargs["flags"] = 0x02  # IFA_F_NODAD: usable at once, tests do not wait for DAD
        self.ipr.addr("add", index=self.ifindex(ifname), address=addr, prefixlen=int(plen),
                      **kwargs)

    def add_route(self, prefix: str, via: str, ifname: str | None = None) -> None:
        kwargs: dict[str, Any] = {"dst": prefix, "gateway": via}
        if ifname is not None:
            kwargs["oif"] = self.ifindex(ifname)
        if ":" in via or ":" in prefix:
            kwargs["family"] = 10
        self.ipr.route("add", **kwargs)

    def add_neighbor(self, ifname: str, address: str, mac: str) -> None:
        """A permanent ARP/ND entry (`ip neigh replace ... nud permanent`)."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.ipr.neigh("replace", dst=address, lladdr=mac, ifindex=self.ifindex(ifname),
                       family=family, state=NUD_PERMANENT)

    def mac(self, ifname: str) -> str:
        link = self.ipr.get_links(self.ifindex(ifname))[0]
        return str(link.get_attr("IFLA_ADDRESS"))

    def sysctl(self, key: str, value: int | str) -> None:
        path = Path("/proc/sys") / key.replace(".", "/")
        self.run(["sh", "-c", f"echo {value} > {path}"])

    def read_sysctl(self, path: str) -> str:
        return self.run(["cat", f"/proc/sys/{path}"]).stdout.strip()

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 20.0,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the namespace; `check` raises with its output on a non-zero exit."""
        proc = subprocess.run(
            self.argv(argv), capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"[{self.name}] {' '.join(argv)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(argv), **kwargs)

    def python(self, code: str, *, timeout: float = 30.0, input: str | None = None,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run Python `code` in the namespace (this interpreter, the repository importable)."""
        return self.run([sys.executable, "-c", code], timeout=timeout, input=input, check=check)

    def remove(self) -> None:
        if self._ipr is not None:
            with contextlib.suppress(Exception):
                self._ipr.close()
            self._ipr = None
        with contextlib.suppress(OSError):
            netns.remove(self.name)


class RouterProcess:
    """A `vrlab-router` daemon running in a namespace; `ctl` talks to it with routerctl."""

    def __init__(self, ns: Namespace, config: dict[str, Any], workdir: Path,
                 extra_args: Sequence[str] = (), *, ready_timeout: float = 30.0) -> None:
        self.ns = ns
        self.config = config
        self.workdir = workdir
        self.config_path = workdir / f"{ns.name}.yaml"
        self.socket = workdir / f"{ns.name}.sock"
        self.log_path = workdir / f"{ns.name}.log"
        self.config_path.write_text(yaml.safe_dump(config))
        self.stdout_lines: list[str] = []
        self._log = self.log_path.open("wb")
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.proc = ns.popen(
            [sys.executable, "-m", "appliance.host.daemon", "--config", str(self.config_path),
             "--control", str(self.socket), *extra_args],
            stdout=subprocess.PIPE, stderr=self._log, env=env, cwd=str(REPO),
        )
        self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self.stdout_lines.append(line.decode(errors="replace"))
                    if line.strip() == b"vrlab-router: ready":
                        return
            elif self.proc.poll() is not None:
                break
        self.stop()
        raise AssertionError(
            f"vrlab-router in {self.ns.name} did not become ready (exit {self.proc.returncode})"
            f"\nstdout: {self.stdout_lines}\nlog:\n{self.log()}"
        )

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def ctl(self, *args: str, check: bool = True, timeout: float = 20.0
            ) -> subprocess.CompletedProcess[str]:
        """Run routerctl against this daemon (a Unix socket needs no namespace)."""
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.run(
            [sys.executable, "-m", "appliance.control.ctl", "--socket", str(self.socket), *args],
            capture_output=True, text=True, timeout=timeout, env=env, cwd=str(REPO),
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"routerctl {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\nrouter log:\n{self.log()}"
            )
        return proc

    def stats(self) -> dict[str, int]:
        data = json.loads(self.ctl("show", "stats", "--json").stdout)
        return dict(data["counters"])

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit within `timeout`; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return int(self.proc.returncode)


@dataclass
class Lab:
    """Owns every namespace and daemon a test creates; `close()` removes them all."""

    workdir: Path
    namespaces: list[Namespace] = field(default_factory=list)
    routers: list[RouterProcess] = field(default_factory=list)
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def namespace(self, role: str) -> Namespace:
        ns = Namespace(f"{PREFIX}-{next(_SERIAL)}-{role}")
        self.namespaces.append(ns)
        return ns

    def veth(self, a: Namespace, a_name: str, b: Namespace, b_name: str, *,
             mtu: int = 1500, a_mac: str | None = None, b_mac: str | None = None) -> None:
        """A veth pair a_name (in a) <-> b_name (in b), both up with `mtu`."""
        a.ipr.link("add", ifname=a_name, kind="veth",
                   peer={"ifname": b_name, "net_ns_fd": b.name})
        a.set_up(a_name, mtu=mtu, mac=a_mac)
        b.set_up(b_name, mtu=mtu, mac=b_mac)

    def bridge(self, ns: Namespace, name: str, ports: Sequence[str]) -> None:
        """A bridge in `ns` with `ports` (interfaces already in `ns`) enslaved."""
        ns.ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0)
        br = ns.ifindex(name)
        for port in ports:
            ns.ipr.link("set", index=ns.ifindex(port), master=br)
        ns.set_up(name)
        for port in ports:
            ns.set_up(port)

    def start_router(self, ns: Namespace, config: dict[str, Any],
                     extra_args: Sequence[str] = ()) -> RouterProcess:
        router = RouterProcess(ns, config, self.workdir, extra_args)
        self.routers.append(router)
        return router

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def defer(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def close(self) -> None:
        errors: list[BaseException] = []
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception as e:  # keep cleaning up; report at the end
                errors.append(e)
        for router in reversed(self.routers):
            try:
                router.stop()
            except Exception as e:
                errors.append(e)
        for ns in reversed(self.namespaces):
            ns.remove()
        self._cleanups.clear()
        self.routers.clear()
        self.namespaces.clear()
        if errors:
            raise errors[0]


def host_offloads_off(ns: Namespace, ifname: str) -> None:
    """Segmentation offloads off on a *host* veth: a veth hands 64 KiB TSO/GSO super-frames to
    the peer namespace unsegmented, and a router on a packet ring would see (and rightly refuse)
    frames far above the link MTU. Checksum offload stays on (the data path completes
    TP_STATUS_CSUMNOTREADY checksums)."""
    ns.run(["ethtool", "-K", ifname, "tso", "off", "gso", "off", "gro", "off"])


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.1) -> bool:
    """Poll `predicate` until it is true or `timeout` passes (a bounded loop)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


_SEND_FRAMES = """
import socket, sys
frames = [bytes.fromhex(line) for line in sys.stdin.read().split()]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for f in frames:
    s.send(f)
s.close()
"""


def send_frames(ns: Namespace, ifname: str, frames: Sequence[bytes]) -> None:
    """Send raw Ethernet `frames` out of `ifname` in `ns` (an AF_PACKET socket, no checks)."""
    ns.run([sys.executable, "-c", _SEND_FRAMES, ifname],
           input="\n".join(f.hex() for f in frames))


# ---------------------------------------------------------------------------- topologies

# Linux hosts around vrlab-router daemons.
#
# line (h1 -- r -- h2), the r--h2 link at MTU 1280::
#
#     h1 [h1-r] 192.0.2.2/26         [r-h1] 192.0.2.1/26        r
#           2001:db8:1::2/64                2001:db8:1::1/64
#     h2 [h2-r] 198.51.100.2/26      [r-h2] 198.51.100.1/26     (MTU 1280)
#           2001:db8:2::2/64                2001:db8:2::1/64
#
# (tests/netns adds `lan`: two routers and a host on one bridge.)
#
# Hosts use the kernel stack (segmentation offloads off, see `host_offloads_off`); routers run
# `vrlab-router` in their namespace. Each topology is built per module and per fast-path mode
# (`MODES`): the C fast path when the extension is built (else the Python twin), and
# `--no-fastpath` (every frame through the slow path).

HAVE_C = importlib.util.find_spec("appliance.dataplane._fastpath") is not None
MODES = ["c" if HAVE_C else "python", "off"]
MODE_ARGS = {"c": ["--fastpath", "c"], "python": ["--fastpath", "python"],
             "off": ["--no-fastpath"]}

MAC = {  # line's, then tests/netns lan's
    "h1-r": "02:00:00:00:01:02", "r-h1": "02:00:00:00:01:01",
    "r-h2": "02:00:00:00:02:01", "h2-r": "02:00:00:00:02:02",
    "h1-lan": "02:00:00:00:0a:0a", "r1-lan": "02:00:00:00:0a:01", "r2-lan": "02:00:00:00:0a:02",
    "r2-h2": "02:00:00:00:0b:01", "h2-r2": "02:00:00:00:0b:02",
}


# ---------------------------------------------------------------------------- line


@dataclass
class Line:
    lab: Lab
    mode: str
    h1: Namespace
    r: Namespace
    h2: Namespace
    router: RouterProcess | None = None

    H1 = "192.0.2.2"
    H1_6 = "2001:db8:1::2"
    R_H1 = "192.0.2.1"
    R_H1_6 = "2001:db8:1::1"
    R_H2 = "198.51.100.1"
    R_H2_6 = "2001:db8:2::1"
    H2 = "198.51.100.2"
    H2_6 = "2001:db8:2::2"
    R_H1_LL = str(link_local(MAC["r-h1"]))
    R_H2_LL = str(link_local(MAC["r-h2"]))

    def start(self, **overrides: Any) -> RouterProcess:
        self.router = self.lab.start_router(self.r, line_config(**overrides),
                                            MODE_ARGS[self.mode])
        return self.router


def line_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "hostname": "r",
        "interfaces": [
            {"name": "r-h1", "addresses": ["192.0.2.1/26", "2001:db8:1::1/64"]},
            {"name": "r-h2", "addresses": ["198.51.100.1/26", "2001:db8:2::1/64"], "mtu": 1280},
        ],
        "routes": [{"prefix": "203.0.113.0/25", "type": "reject"}],
    }
    config.update(overrides)
    return config


def build_line(lab: Lab, mode: str, *, start: bool = True) -> Line:
    h1, r, h2 = lab.namespace("h1"), lab.namespace("r"), lab.namespace("h2")
    lab.veth(h1, "h1-r", r, "r-h1", a_mac=MAC["h1-r"], b_mac=MAC["r-h1"])
    lab.veth(r, "r-h2", h2, "h2-r", mtu=1280, a_mac=MAC["r-h2"], b_mac=MAC["h2-r"])
    for ns, ifname, v4, v6, gw4, gw6 in (
        (h1, "h1-r", "192.0.2.2/26", "2001:db8:1::2/64", "192.0.2.1", "2001:db8:1::1"),
        (h2, "h2-r", "198.51.100.2/26", "2001:db8:2::2/64", "198.51.100.1", "2001:db8:2::1"),
    ):
        host_offloads_off(ns, ifname)
        ns.add_address(ifname, v4)
        ns.add_address(ifname, v6)
        ns.add_route("0.0.0.0/0", gw4)
        ns.add_route("::/0", gw6)
    line = Line(lab, mode, h1, r, h2)
    if start:
        line.start()
    return line
