"""Simulated libvirt hosts on one machine, for multi-host tests and benchmarks.

Each simulated host is what a real machine in a vrlab inventory needs, squeezed into this one:

- a network namespace `vrsim-<name>` with a veth to the root namespace's bridge `vrsim0`
  (203.0.113.1/26, a documentation range that is NOT the machine's own 192.0.2.0/24) and its
  own address 203.0.113.<10+index>;
- its own system-mode `libvirtd --listen` and `virtlogd`, started inside that namespace in a
  private mount namespace (`ip netns exec` gives one) where `/run/libvirt`, `/var/lib/libvirt`,
  `/var/cache/libvirt`, `/var/log/libvirt` and `/etc/libvirt` are bind mounts of the host's own
  directories under `workdir/<name>/`, with its own hostname (`unshare --uts`) and host UUID;
- the URI `qemu+tcp://<address>/system` (no auth: the address is only reachable from here).

Facts this follows are in ../shared/MULTIHOST-NOTES.md: the daemons are pinned to CPU 0
(libvirt's capabilities cache stores raw CPUID, so an unpinned daemon re-probes QEMU for ~8 s
about half the time); QEMU outlives libvirtd, so `remove` destroys every domain (and kills any
QEMU left in `<run>/qemu/*.pid`) before stopping the daemons; the pid files are in the private
`/run/libvirt`. The capabilities cache is seeded from, and saved back to, one shared directory
so every host after the first starts in a fraction of a second.

`SimHosts` is a context manager: whatever happens, leaving it removes everything it created
(domains, QEMUs, daemons, namespaces, the bridge, the work directory). The mounts live only in
the daemons' mount namespaces and disappear with their last process.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from orchestrate.backends.qemu import process_is_zombie, process_start_time

BRIDGE = "vrsim0"
NETWORK = ipaddress.IPv4Network("203.0.113.0/26")
GATEWAY = "203.0.113.1"
UNDERLAY_MTU = 9000  # room for VXLAN and UDP tunnel headers around a 1500-byte (or larger) link
NETNS_PREFIX = "vrsim-"
CACHE_SEED = Path("/var/tmp/vrlab-simhosts-capabilities")
PRIVATE_DIRS = {
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
    "etc": "/etc/libvirt",
}
START_TIMEOUT = 60.0
WORKDIR = Path("/var/tmp/vrlab-simhosts")  # `python3 -m orchestrate.simhosts up|down`


class SimHostError(Exception):
    """A simulated host could not be set up."""


def _run(*argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _pid_alive(pid: int) -> bool:
    return process_start_time(pid) is not None and not process_is_zombie(pid)


def _own_objects(directory: str, names: list[str]) -> set[str]:
    if directory.rstrip("/").endswith(("/qemu", "/storage", "/networks", "/autostart")):
        return {name for name in names if name.endswith(".xml") or name == "autostart"}
    return {"storage"} & set(names)


def _kill(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; waits (bounded) until the process is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.05)


@dataclass
class SimHost:
    """One simulated host: its namespace, address, daemons and private directories."""

    name: str
    index: int
    workdir: Path

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.name}"

    @property
    def address(self) -> str:
        return str(NETWORK.network_address + 10 + self.index)

    @property
    def uri(self) -> str:
        return f"qemu+tcp://{self.address}/system"

    @property
    def root(self) -> Path:
        return self.workdir / self.name

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def veth(self) -> str:
        return f"vrs-{self.name}"[:15]

    def inventory(self, reach: str = "netns") -> dict[str, str]:
        """This host as an entry of a vrlab `hosts:` inventory, reached through its network
        namespace ("netns") or, as a real machine would be, over SSH ("ssh": needs
        `start_sshd` first)."""
        entry = {"uri": self.uri, "tunnel": self.address}
        if reach == "ssh":
            keys = self.workdir / "ssh"
            entry.update(ssh=f"root@{self.address}", ssh_key=str(keys / "id_ed25519"),
                         known_hosts=str(keys / "known_hosts"))
        else:
            entry["netns"] = self.netns
        return entry

    def start_sshd(self) -> None:
        """An sshd on the host's address (its own host key, pinned in workdir/ssh/known_hosts;
        only workdir/ssh/id_ed25519 may log in), as a real host offers for `ssh:`."""
        keys = self.workdir / "ssh"
        host_key = self.root / "ssh_host_ed25519_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
        config = self.root / "sshd_config"
        config.write_text(
            f"ListenAddress {self.address}\nHostKey {host_key}\n"
            f"PidFile {self.run_dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {keys / 'id_ed25519.pub'}\nStrictModes no\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nAllowTcpForwarding local\n"
            "X11Forwarding no\n")
        public = (host_key.with_name(host_key.name + ".pub")).read_text().split()
        with (keys / "known_hosts").open("a") as handle:
            handle.write(f"{self.address} {public[0]} {public[1]}\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        try:
            _run("ip", "netns", "exec", self.netns, "/usr/sbin/sshd", "-f", str(config))
        except subprocess.CalledProcessError as exc:
            raise SimHostError(f"{self.name}: sshd did not start: {exc.stderr}") from exc

    # -- network -------------------------------------------------------------------------------

    def create_network(self) -> None:
        from pyroute2 import IPRoute, NetNS, netns

        if self.netns in netns.listnetns():
            raise SimHostError(f"namespace {self.netns} already exists (a stale run? "
                               f"SimHosts.remove_stale())")
        netns.create(self.netns)
        with IPRoute() as ip:
            ip.link("add", ifname=self.veth, kind="veth", peer={"ifname": "uplink",
                                                                 "net_ns_fd": self.netns})
            index = ip.link_lookup(ifname=self.veth)[0]
            bridge = ip.link_lookup(ifname=BRIDGE)[0]
            ip.link("set", index=index, master=bridge, mtu=UNDERLAY_MTU, state="up")
        with NetNS(self.netns) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            uplink = ns.link_lookup(ifname="uplink")[0]
            ns.link("set", index=uplink, mtu=UNDERLAY_MTU, state="up")
            ns.addr("add", index=uplink, address=self.address, prefixlen=NETWORK.prefixlen)

    # -- daemons -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """The host's private directories, with its own libvirtd.conf and qemu.conf."""
        for sub in PRIVATE_DIRS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        etc = self.root / "etc"
        shutil.rmtree(etc)
        # The configuration only: not the machine's own pools, networks and domains.
        shutil.copytree("/etc/libvirt", etc, symlinks=True, ignore=_own_objects)
        (etc / "libvirtd.conf").write_text(
            'listen_tls = 0\nlisten_tcp = 1\n'
            f'listen_addr = "{self.address}"\n'
            'auth_tcp = "none"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
            f'host_uuid = "{uuid.uuid5(uuid.NAMESPACE_DNS, self.netns)}"\n'
        )
        (etc / "qemu.conf").write_text(
            'user = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\n'
            'security_driver = "none"\ncgroup_controllers = [ ]\n'
            f'migration_address = "{self.address}"\nmigration_host = "{self.address}"\n'
        )
        seed = CACHE_SEED / "qemu"
        if seed.is_dir():
            shutil.copytree(seed, self.root / "cache" / "qemu", dirs_exist_ok=True)

    def start(self) -> None:
        """Start virtlogd (unless it still runs) and libvirtd; wait until the URI answers."""
        Path("/run/libvirt").mkdir(exist_ok=True)
        mounts = " && ".join(f"mount --bind {self.root / sub} {target}"
                             for sub, target in PRIVATE_DIRS.items())
        daemons = []
        if self.pid("virtlogd") is None:
            daemons.append("taskset -c 0 virtlogd -d -p /run/libvirt/virtlogd.pid")
        daemons.append("taskset -c 0 libvirtd -d -l -p /run/libvirt/libvirtd.pid")
        script = f"set -e; {mounts}; hostname {self.name}; " + "; ".join(daemons)
        try:
            _run("ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c", script)
        except subprocess.CalledProcessError as exc:
            raise SimHostError(f"{self.name}: daemons did not start: {exc.stderr}") from exc
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            probe = subprocess.run(["virsh", "-c", self.uri, "hostname"], capture_output=True,
                                   text=True, timeout=30, check=False)
            if probe.returncode == 0 and probe.stdout.strip() == self.name:
                return
            time.sleep(0.2)
        raise SimHostError(f"{self.name}: {self.uri} did not answer within {START_TIMEOUT} s")

    def pid(self, daemon: str) -> int | None:
        try:
            pid = int((self.run_dir / f"{daemon}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def kill_libvirtd(self) -> None:
        """What a host crash looks like to the controller: libvirtd gone, without cleanup."""
        pid = self.pid("libvirtd")
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def qemu_pids(self) -> list[int]:
        """QEMUs of this host's domains still running (from libvirt's pid files; a pid that
        now belongs to another program does not count)."""
        pids = []
        for pidfile in sorted((self.run_dir / "qemu").glob("*.pid")):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pidfile.read_text().strip())
                domain = pidfile.stem
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if (_pid_alive(pid) and b"qemu-system" in cmdline[0]
                        and f"guest={domain}".encode() in b",".join(cmdline)):
                    pids.append(pid)
        return pids

    def domains(self) -> list[str]:
        """Names of every domain defined on this host (empty when libvirtd is down)."""
        if self.pid("libvirtd") is None:
            return []
        result = subprocess.run(["virsh", "-c", self.uri, "list", "--all", "--name"],
                                capture_output=True, text=True, timeout=30, check=False)
        return [line for line in result.stdout.split() if line]

    def stop(self) -> None:
        """Destroy every domain, kill any QEMU left, stop libvirtd and virtlogd."""
        if self.pid("libvirtd") is not None:
            for domain in self.domains():
                for verb in ("destroy", "undefine"):
                    subprocess.run(["virsh", "-c", self.uri, verb, domain],
                                   capture_output=True, timeout=30, check=False)
        for pid in self.qemu_pids():
            _kill(pid)
        for daemon in ("libvirtd", "virtlogd", "sshd"):
            daemon_pid = self.pid(daemon)
            if daemon_pid is not None:
                _kill(daemon_pid)
        # Anything else still in the host's namespace (an sshd session outlives its listener).
        listed = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True,
                                text=True, timeout=30, check=False)
        for leftover in listed.stdout.split():
            _kill(int(leftover))

    def save_capabilities(self) -> None:
        """Keep the filled capabilities cache for the next host (and the next run)."""
        cache = self.root / "cache" / "qemu" / "capabilities"
        if any(cache.glob("*.xml")) and not (CACHE_SEED / "qemu" / "capabilities").is_dir():
            CACHE_SEED.mkdir(parents=True, exist_ok=True)
            shutil.copytree(self.root / "cache" / "qemu", CACHE_SEED / "qemu",
                            dirs_exist_ok=True)


class SimHosts:
    """`with SimHosts(["alpha", "beta"], workdir) as hosts:` — hosts up, always removed."""

    def __init__(self, names: list[str], workdir: Path, ssh: bool = False) -> None:
        self.workdir = workdir
        self.ssh = ssh
        self.hosts = [SimHost(name, index + 1, workdir) for index, name in enumerate(names)]

    def __getitem__(self, name: str) -> SimHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def inventory(self, reach: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
        """The hosts as a vrlab inventory; `reach`: host -> "ssh" for those to reach over
        SSH (SimHosts(ssh=True)), the others through their namespace."""
        return {host.name: host.inventory((reach or {}).get(host.name, "netns"))
                for host in self.hosts}

    def __enter__(self) -> SimHosts:
        try:
            self.create()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.remove()

    def create(self) -> None:
        from pyroute2 import IPRoute

        remove_stale()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "hosts.json").write_text(json.dumps([h.name for h in self.hosts]))
        with IPRoute() as ip:
            ip.link("add", ifname=BRIDGE, kind="bridge")
            index = ip.link_lookup(ifname=BRIDGE)[0]
            ip.link("set", index=index, mtu=UNDERLAY_MTU, state="up")
            ip.addr("add", index=index, address=GATEWAY, prefixlen=NETWORK.prefixlen)
        if self.ssh:
            keys = self.workdir / "ssh"
            keys.mkdir(mode=0o700)
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "id_ed25519"))
        for host in self.hosts:
            host.create_network()
            host.prepare()
            host.start()
            host.save_capabilities()
            if self.ssh:
                host.start_sshd()

    def remove(self) -> None:
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.stop()
        remove_stale()
        shutil.rmtree(self.workdir, ignore_errors=True)


def remove_stale() -> None:
    """Remove every simulated host's namespace and the bridge (a run that was killed)."""
    from pyroute2 import IPRoute, netns
    from pyroute2.netlink.exceptions import NetlinkError

    for name in netns.listnetns():
        if name.startswith(NETNS_PREFIX):
            netns.remove(name)
    with IPRoute() as ip:
        for link in ip.get_links():
            name = str(link.get_attr("IFLA_IFNAME"))
            # A veth whose namespace outlives its name (a reference the kernel drops later)
            # would block the next run's veth of the same name.
            if name == BRIDGE or name.startswith("vrs-"):
                # The veth may vanish meanwhile, with the namespace just removed.
                with contextlib.suppress(NetlinkError):
                    ip.link("del", index=link["index"])


def main(argv: list[str] | None = None) -> int:
    """`python3 -m orchestrate.simhosts up [NAME ...]` (default alpha beta) prints the
    inventory to use (`vrlab up --hosts FILE`); `down` removes every simulated host."""
    import yaml

    parser = argparse.ArgumentParser(prog="python3 -m orchestrate.simhosts")
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("names", nargs="*", default=["alpha", "beta"])
    args = parser.parse_args(argv)
    if args.action == "down":
        try:
            names = json.loads((WORKDIR / "hosts.json").read_text())
        except (OSError, ValueError):
            names = []
        SimHosts(names, WORKDIR).remove()
        return 0
    hosts = SimHosts(args.names, WORKDIR)
    try:
        hosts.create()
    except BaseException:
        hosts.remove()
        raise
    print(yaml.safe_dump({"hosts": hosts.inventory()}, sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
