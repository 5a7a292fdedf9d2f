"""Forwarding benchmark: 64-byte UDP frames per second arriving at h2 through r.

    python3 -m bench forward              # median of 3 runs of 5 s per forwarder
    python3 -m bench.forward --quick      # 1 run of 2 s, 100k routes for the big-table case

(The fast path alone, on in-memory rings with no kernel, is bench/fastpath.py; both send the
traffic of bench/tables.py through its tables.) One namespace topology per forwarder,
documentation addresses only::

    h1 [h1-r] 192.0.2.2/26 -- [r-h1] r [r-h2] -- [h2-r] 198.51.100.2/26 h2

A C generator (bench/gen.c, compiled here with gcc into a temporary directory) sends 18-byte
UDP payloads (64-byte frames on the wire with the FCS) from h1 with sendmmsg, pinned to CPU 0;
the forwarder in r is pinned to CPU 1 at nice -15 (the kernel forwards in softirq context,
ahead of all processes; at nice 0 a user-space forwarder on a busy machine would measure the
scheduler). veth delivers synchronously: r's receive work (the kernel's forwarding, or the
packet socket's copy into our RX ring) runs on CPU 0 inside the generator's send, and h2's
receive runs on whichever core transmitted to it. The figure is h2-r's rx_packets over the
window. Every forwarder gets its own topology, all built first, and the runs go round robin
over them.

The sink: the traffic goes to 198.51.100.3, a static neighbor on r (in every forwarder) whose
MAC h2's NIC does not have, so h2 drops each frame as soon as it arrives (PACKET_OTHERHOST), as
a receiver on another machine costs the router nothing. The "sink = h2's stack" rows send to
h2 itself instead: h2's IP and UDP input and a port-unreachable attempt per frame then run on
the forwarder's core (for the daemon: inside its TX kick), which is veth's doing, not the
router's, and half of that core's time.

The forwarders:

- the Linux kernel (addresses on r, net.ipv4.ip_forward=1);
- ``vrlab-router`` with ``--fastpath c``, ``--fastpath python`` and ``--no-fastpath``: the real
  daemon, slow path and all, with ``--busy-poll 1000`` (it keeps polling its rings 1 ms after
  the last frame rather than sleeping: a sleeping reader costs the receiving core a wake-up
  per burst); the C row again with the default (no busy polling);
- a bare loop around ``FastPath.poll`` (the C extension on the rings, tables loaded directly,
  nothing else), busy-polling 1 ms after the last frame before sleeping in poll(2): with the
  two routes the traffic needs; the same sleeping at once when idle; the same with r's kernel
  IP input left attached to the interfaces (the daemon and the other bare rows detach it as
  ``appliance.host.kernel.detach_stack`` does: the interfaces become ports of a bridge that stays
  down, whose rx_handler drops frames after the packet sockets got them; attached, r's kernel
  parses, looks up and drops every transit frame on CPU 0); the same with a big IPv4 table
  (one hot destination); and IPv6 to 65,536 destinations with 1 route and with a big table
  (many flows).

Each row also shows how the forwarder's CPU spent the windows (/proc/stat: idle, stolen by
the hypervisor, softirq): on these VMs steal and the sink's receive softirq (h2's stack runs
inline in the forwarder's TX kick, on the forwarder's core) move the figures more than the
fast path does. The bare rows add the forwarder's own CPU per packet and frames per TX kick.

Hosts keep checksum offload on (so the ring forwarders complete partial UDP checksums, as in
production) and GSO/TSO off. The machine is shared and has two cores: compare figures within
one run (the ratios), not across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.netns import Lab as NetnsLab
from bench.netns import Namespace, remove_stale
from bench.tables import FLOWS, MACS, PAYLOAD, SINK, SINK_MAC, load_tables

REPO = Path(__file__).resolve().parents[1]
DST = "198.51.100.2"  # h2 itself: its own IP/UDP stack is the sink
DST6 = "2001:db8::2"
GEN_CPU, FORWARDER_CPU = "0", "1"
# The forwarder runs at nice -15: on a shared machine the kernel forwards in softirq context,
# ahead of every process, so a user-space forwarder at nice 0 would mostly measure the
# scheduler. (The generator stays at nice 0: above ksoftirqd it starves the receive softirq
# of its own core and the backlog overflows.)
PIN_GEN = ["taskset", "-c", GEN_CPU]
PIN_FORWARDER = ["nice", "-n", "-15", "taskset", "-c", FORWARDER_CPU]
SPIN = ["--spin", "0.001"]  # busy-poll 1 ms after the last frame before sleeping
BUSY = ["--busy-poll", "1000"]  # the daemon's same, in microseconds


@dataclass
class Forwarder:
    """One line of the table."""

    key: str
    label: str
    kind: str  # kernel | daemon | bare
    args: list[str] = field(default_factory=list)
    routes: int = 0
    # the bare rows, like the daemon (appliance.host.kernel.detach_stack)
    detach_kernel: bool = True
    flows: int = 0  # > 0: IPv6 traffic to this many destinations, each its own /64
    sink: str = "nic"  # nic: h2's NIC filter drops the frames; stack: h2's IP stack takes them
    samples: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)  # forwarder CPU, per window
    note: str = ""


def run(argv: list[str], *, check: bool = True, timeout: float = 30.0
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


class Topology:
    """h1 -- r -- h2 in namespaces of a `bench.netns.Lab`; `close()` removes them and every
    process started in them."""

    def __init__(self, key: str, workdir: Path) -> None:
        self.lab = NetnsLab(workdir)
        self.procs: list[subprocess.Popen[str]] = []
        try:
            self.h1, self.r, self.h2 = (self.lab.namespace(f"{key}-{role}")
                                        for role in ("h1", "r", "h2"))
            self.r.sysctl("net.ipv6.conf.all.disable_ipv6", 1)
            self.r.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
            self.lab.veth(self.h1, "h1-r", self.r, "r-h1", a_mac=MACS["h1-r"],
                          b_mac=MACS["r-h1"])
            self.lab.veth(self.r, "r-h2", self.h2, "h2-r", a_mac=MACS["r-h2"],
                          b_mac=MACS["h2-r"])
            for ns, ifname in ((self.h1, "h1-r"), (self.h2, "h2-r")):
                ns.run(["ethtool", "-K", ifname, "tso", "off", "gso", "off"], check=False)
            self.h1.add_address("h1-r", "192.0.2.2/26")
            self.h1.add_route("0.0.0.0/0", "192.0.2.1")
            self.h1.add_neighbor("h1-r", "192.0.2.1", MACS["r-h1"])
            self.h2.add_address("h2-r", "198.51.100.2/26")
            self.h2.add_route("0.0.0.0/0", "198.51.100.1")
            # IPv6 for the many-flows rows; r's kernel has IPv6 off, so only rings see it
            self.h1.add_address("h1-r", "2001:db8:1::2/64")
            self.h1.add_route("::/0", "2001:db8:1::1")
            self.h1.add_neighbor("h1-r", "2001:db8:1::1", MACS["r-h1"])
            self.h2.add_address("h2-r", "2001:db8:2::2/64")
        except BaseException:
            self.close()
            raise

    def popen(self, ns: Namespace, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(ns.argv(argv), text=True, **kwargs)
        self.procs.append(proc)
        return proc

    def rx_packets(self) -> int:
        out = self.h2.run(["cat", "/sys/class/net/h2-r/statistics/rx_packets"])
        return int(out.stdout)

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.procs.clear()
        self.lab.close()


def wait_line(proc: subprocess.Popen[str], wanted: str, timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if line.strip() == wanted:
                return
        elif proc.poll() is not None:
            break
    raise RuntimeError(f"forwarder did not print {wanted!r} (exit {proc.poll()})")


def start_forwarder(topo: Topology, fwd: Forwarder, workdir: Path) -> subprocess.Popen[str] | None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if fwd.kind == "kernel":
        topo.r.add_address("r-h1", "192.0.2.1/26")
        topo.r.add_address("r-h2", "198.51.100.1/26")
        topo.r.add_neighbor("r-h2", DST, MACS["h2-r"])
        topo.r.add_neighbor("r-h2", SINK, SINK_MAC)
        topo.r.sysctl("net.ipv4.ip_forward", 1)
        return None
    if fwd.kind == "daemon":
        config = {
            "hostname": "r",
            "interfaces": [{"name": "r-h1", "addresses": ["192.0.2.1/26"]},
                           {"name": "r-h2", "addresses": ["198.51.100.1/26"]}],
            "neighbors": [{"address": SINK, "mac": SINK_MAC, "interface": "r-h2"}],
        }
        path = workdir / f"{fwd.key}.yaml"
        path.write_text(yaml.safe_dump(config))
        argv = [*PIN_FORWARDER, sys.executable, "-m", "appliance.host.daemon",
                "--config", str(path), "--control", str(workdir / f"{fwd.key}.sock"), *fwd.args]
        log = workdir / f"{fwd.key}.log"
        with log.open("w") as stderr:
            proc = topo.popen(topo.r, argv, stdout=subprocess.PIPE, stderr=stderr, env=env,
                              cwd=str(REPO))
        try:
            wait_line(proc, "vrlab-router: ready", 90)
        except RuntimeError as err:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"{err}: {' '.join(tail)}") from None
        return proc
    if fwd.detach_kernel:
        # r's kernel stack stops seeing the frames: a bridge that stays down consumes them in
        # its rx_handler (dropped, port disabled), after the packet sockets got their copy.
        topo.r.ipr.link("add", ifname="rdrop", kind="bridge")  # left down
        for ifname in ("r-h1", "r-h2"):
            topo.r.ipr.link("set", index=topo.r.ifindex(ifname),
                            master=topo.r.ifindex("rdrop"))
    argv = [*PIN_FORWARDER, sys.executable, "-m", "bench.forward",
            *fwd.args[:-1], "--serve", fwd.args[-1], "--routes", str(fwd.routes),
            "--flows", str(fwd.flows)]
    proc = topo.popen(topo.r, argv, stdout=subprocess.PIPE, env=env, cwd=str(REPO))
    wait_line(proc, "ready", 300)
    return proc


_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_times(cpu: str) -> list[int]:
    """The /proc/stat tick counters of one CPU, in `_CPU_FIELDS` order."""
    with open("/proc/stat") as stat:
        for line in stat:
            words = line.split()
            if words[0] == f"cpu{cpu}":
                return [int(w) for w in words[1:1 + len(_CPU_FIELDS)]]
    return [0] * len(_CPU_FIELDS)


def cpu_shares(before: list[int], after: list[int]) -> dict[str, float]:
    """Fraction of the window the CPU spent in each `_CPU_FIELDS` state."""
    deltas = [b - a for a, b in zip(before, after, strict=True)]
    total = max(sum(deltas), 1)
    return {name: d / total for name, d in zip(_CPU_FIELDS, deltas, strict=True)}


def measure(topo: Topology, gen: Path, seconds: float, flows: int = 0, sink: str = "nic"
            ) -> tuple[float, float, dict[str, float]]:
    """(packets/s at h2, packets/s the generator sent, how the forwarder's CPU spent the
    window) over one window."""
    warm = 0.7
    # IPv6: no payload, the smallest frame (62 bytes + FCS); destinations 2001:db8:0:N::2
    dst, payload, count = (DST6, 0, flows) if flows else (
        SINK if sink == "nic" else DST, PAYLOAD, 1)
    proc = topo.popen(topo.h1, [*PIN_GEN, str(gen), dst, "9",
                             str(warm + seconds + 0.3), str(payload), str(count)],
                      stdout=subprocess.PIPE)
    time.sleep(warm)
    t0a = time.monotonic()
    c0 = topo.rx_packets()
    t0 = (t0a + time.monotonic()) / 2
    cpu0 = cpu_times(FORWARDER_CPU)
    time.sleep(seconds)
    cpu1 = cpu_times(FORWARDER_CPU)
    t1a = time.monotonic()
    c1 = topo.rx_packets()
    t1 = (t1a + time.monotonic()) / 2
    out, _ = proc.communicate(timeout=seconds + 30)
    sent = int(out.split()[1]) if out.startswith("sent") else 0
    return (c1 - c0) / (t1 - t0), sent / (warm + seconds + 0.3), cpu_shares(cpu0, cpu1)


@dataclass
class Setup:
    """A built topology with its forwarder running."""

    fwd: Forwarder
    topo: Topology
    proc: subprocess.Popen[str] | None


def prepare(fwd: Forwarder, workdir: Path) -> Setup:
    topo = Topology(fwd.key, workdir)
    try:
        proc = start_forwarder(topo, fwd, workdir)
        # warm up: neighbors resolved, caches filled
        topo.h1.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", DST], check=False)
    except BaseException:
        topo.close()
        raise
    return Setup(fwd, topo, proc)


def finish(setup: Setup) -> None:
    try:
        proc, fwd = setup.proc, setup.fwd
        if proc is not None and fwd.kind == "bare" and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
            counters = json.loads(out.strip().splitlines()[-1])
            forwarded = max(counters["forward4"] + counters["forward6"], 1)
            fwd.note = (f"ring drops {counters['rx_ring_drops']:,}; "
                        f"forwarder CPU per packet {counters['user_us'] / forwarded:.2f} us "
                        f"user + {counters['sys_us'] / forwarded:.2f} us sys; "
                        f"{forwarded / max(counters['tx_kicks'], 1):.0f} frames per TX kick")
    finally:
        setup.topo.close()


# ------------------------------------------------------------------ the bare forwarder


def serve(kind: str, routes: int, spin: float, flows: int, frames: int = 0) -> int:
    """Run in r: the fast path on the two rings, tables loaded directly, until SIGTERM
    (`frames`: slots per ring, else RingSocket's default)."""
    from appliance.dataplane.ring import RingSocket
    from appliance.dataplane.tablesync import new_fastpath

    rings = [RingSocket.open(name, frames=frames) if frames else RingSocket.open(name)
             for name in ("r-h1", "r-h2")]
    fp = new_fastpath(kind)
    load_tables(fp, rings, routes, flows)
    for ring in rings:
        fp.attach(ring)
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    start = resource.getrusage(resource.RUSAGE_SELF)
    print("ready", flush=True)
    poller = select.poll()
    for ring in rings:
        poller.register(ring.fd, select.POLLIN)
    while not stop:
        # with spin, poll() itself keeps walking the rings (up to `spin` seconds without
        # returning) before this loop sleeps: a sleeping reader costs the receiving CPU a
        # wake-up (an IPI in a VM) for every burst
        done, _punts = fp.poll(256, spin)
        if not done:
            poller.poll(50)
    counters = fp.counters()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    counters["user_us"] = int((usage.ru_utime - start.ru_utime) * 1e6)
    counters["sys_us"] = int((usage.ru_stime - start.ru_stime) * 1e6)
    for ring in rings:
        fp.detach(ring.ifindex)
        ring.close()
    print(json.dumps(counters), flush=True)
    return 0


# ------------------------------------------------------------------ main


def compile_gen(workdir: Path) -> Path:
    out = workdir / "gen"
    run(["gcc", "-O2", "-Wall", "-o", str(out), str(Path(__file__).with_name("gen.c"))])
    return out


def usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "gcc", "taskset", "ping"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if (os.cpu_count() or 1) < 2:
        return "needs two CPUs (generator and forwarder on different cores)"
    return None


def table(forwarders: list[Forwarder], runs: int, seconds: float) -> str:
    base = next((f for f in forwarders if f.key == "kernel" and f.samples), None)
    kernel = statistics.median(base.samples) if base else 0.0
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"64-byte UDP, h1 -> r -> h2, packets/s received at h2 (median of {runs} x {seconds:g} s;"
        f" generator CPU {GEN_CPU}, forwarder CPU {FORWARDER_CPU}; load average now {load} on"
        f" {os.cpu_count()} CPUs: 'offered' below what the kernel row reaches means the"
        f" generator itself was starved)",
        f"{'forwarder':<52} {'pps at h2':>11} {'vs kernel':>10} {'offered':>10} "
        f"{'CPU ' + FORWARDER_CPU + ' idle/steal/si':>20}  notes",
    ]
    for f in forwarders:
        if not f.samples:
            lines.append(f"{f.label:<52} {'-':>11} {'-':>10} {'-':>10} {'-':>20}  {f.note}")
            continue
        pps = statistics.median(f.samples)
        ratio = f"{pps / kernel:.2f}x" if kernel else "-"
        lines.append(f"{f.label:<52} {pps:>11,.0f} {ratio:>10} "
                     f"{statistics.median(f.sent):>10,.0f} {cpu_note(f.cpu):>20}  {f.note}")
    return "\n".join(lines)


def cpu_note(windows: list[dict[str, float]]) -> str:
    """Median share of the forwarder's CPU that was idle, stolen by the hypervisor and spent
    in softirq (not charged to the forwarder) over the windows: a forwarder that drops frames
    while its CPU idles waits on wake-ups; one whose CPU is stolen measures the host."""
    if not windows:
        return "-"
    parts = (statistics.median(w[k] for w in windows) for k in ("idle", "steal", "softirq"))
    return "/".join(f"{p:.0%}" for p in parts)


def verdicts(forwarders: list[Forwarder]) -> list[str]:
    pps = {f.key: statistics.median(f.samples) for f in forwarders if f.samples}
    out = []

    def check(name: str, ok: bool, detail: str) -> None:
        out.append(f"{'met ' if ok else 'MISSED'} {name}: {detail}")

    if "daemon-c" in pps and "kernel" in pps:
        check("C fast path >= kernel", pps["daemon-c"] >= pps["kernel"],
              f"{pps['daemon-c']:,.0f} vs {pps['kernel']:,.0f}")
    if "daemon-c-stack" in pps and "kernel-stack" in pps:
        check("C fast path >= kernel, sink = h2's stack",
              pps["daemon-c-stack"] >= pps["kernel-stack"],
              f"{pps['daemon-c-stack']:,.0f} vs {pps['kernel-stack']:,.0f}")
    if "daemon-c" in pps and "daemon-py" in pps:
        ratio = pps["daemon-c"] / max(pps["daemon-py"], 1.0)
        check("C >= 50x Python twin", ratio >= 50, f"{ratio:.1f}x")
    if "daemon-c" in pps and "daemon-slow" in pps:
        ratio = pps["daemon-c"] / max(pps["daemon-slow"], 1.0)
        check("C >= 50x Python slow path", ratio >= 50, f"{ratio:.1f}x")
    if "bare-1" in pps and "bare-big" in pps:
        cost = 1 - pps["bare-big"] / pps["bare-1"]
        check("big IPv4 table, one flow, costs < 10%", cost < 0.10, f"{cost:+.1%}")
    if "bare6-1" in pps and "bare6-big" in pps:
        cost = 1 - pps["bare6-big"] / pps["bare6-1"]
        check(f"big IPv6 table, {FLOWS:,} flows, costs < 10%", cost < 0.10, f"{cost:+.1%}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.forward", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 run of 2 s, 100k routes")
    parser.add_argument("--runs", type=int, help="runs per forwarder (default 3)")
    parser.add_argument("--seconds", type=float, help="length of each run (default 5)")
    parser.add_argument("--routes", type=int, help="big table size (default 1,000,000)")
    parser.add_argument("--only", nargs="*", metavar="KEY",
                        help="kernel, daemon-c, daemon-c-sleep, daemon-py, daemon-slow, "
                        "kernel-stack, daemon-c-stack, bare-1, bare-1-sleep, "
                        "bare-1-attached, bare-big, bare6-1, bare6-big")
    parser.add_argument("--serve", choices=["c", "python"], help=argparse.SUPPRESS)
    parser.add_argument("--spin", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--flows", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ring-frames", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve, args.routes or 2, args.spin, args.flows, args.ring_frames)
    runs = args.runs or (1 if args.quick else 3)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    routes = args.routes or (100_000 if args.quick else 1_000_000)
    from appliance.dataplane.tablesync import have_c

    reason = usable()
    if reason:
        print(f"bench forward: skipped, {reason}")
        return 1
    remove_stale()  # namespaces of earlier runs that were killed before their clean-up

    forwarders = [
        Forwarder("kernel", "Linux kernel forwarding", "kernel"),
        Forwarder("daemon-c", "vrlab-router, C fast path", "daemon",
                  ["--fastpath", "c", *BUSY]),
        Forwarder("daemon-c-sleep", "  same, sleeping when a round finds nothing", "daemon",
                  ["--fastpath", "c"]),
        Forwarder("daemon-py", "vrlab-router, Python twin fast path", "daemon",
                  ["--fastpath", "python", *BUSY]),
        Forwarder("daemon-slow", "vrlab-router, no fast path (Router.receive)", "daemon",
                  ["--no-fastpath", *BUSY]),
        Forwarder("kernel-stack", "Linux kernel forwarding, sink = h2's stack", "kernel",
                  sink="stack"),
        Forwarder("daemon-c-stack", "vrlab-router, C fast path, sink = h2's stack", "daemon",
                  ["--fastpath", "c", *BUSY], sink="stack"),
        Forwarder("bare-1", "FastPath.poll loop (C), 2 routes", "bare", [*SPIN, "c"], routes=2),
        Forwarder("bare-1-sleep", "  same, sleeping in poll(2) when idle", "bare", ["c"],
                  routes=2),
        Forwarder("bare-1-attached", "  same, r's kernel IP input left attached", "bare",
                  [*SPIN, "c"], routes=2, detach_kernel=False),
        Forwarder("bare-big", f"  same, {routes:,} routes", "bare", [*SPIN, "c"],
                  routes=routes),
        Forwarder("bare6-1", f"FastPath.poll loop (C), IPv6 to {FLOWS:,} /64s, 1 route", "bare",
                  [*SPIN, "c"], routes=1, flows=FLOWS),
        Forwarder("bare6-big", f"  same, {routes:,} routes", "bare", [*SPIN, "c"],
                  routes=routes, flows=FLOWS),
    ]
    if args.only:
        forwarders = [f for f in forwarders if f.key in args.only]
    if not have_c():
        for f in forwarders:
            if f.args[-1:] == ["c"]:
                f.note = "C extension not built (python3 setup.py build_ext --inplace)"
        forwarders = [f for f in forwarders if f.args[-1:] != ["c"] or not f.note]
    with tempfile.TemporaryDirectory(prefix="vrlab-bench-") as tmp:
        workdir = Path(tmp)
        gen = compile_gen(workdir)
        # Every forwarder gets its own topology, all built first; the runs then go round
        # robin, so a change in the machine's load hits every forwarder alike.
        setups: list[Setup] = []
        try:
            for fwd in forwarders:
                print(f"  setting up: {fwd.label}", flush=True)
                try:
                    setups.append(prepare(fwd, workdir))
                except (RuntimeError, AssertionError, subprocess.TimeoutExpired,
                        OSError) as err:
                    fwd.note = f"failed: {err}"
            for i in range(runs):
                print(f"  run {i + 1}/{runs}", flush=True)
                for setup in setups:
                    try:
                        pps, sent, cpu = measure(setup.topo, gen, seconds, setup.fwd.flows,
                                                 setup.fwd.sink)
                    except (RuntimeError, AssertionError, subprocess.TimeoutExpired, OSError,
                            ValueError) as err:
                        setup.fwd.note = f"failed: {err}"
                        continue
                    setup.fwd.samples.append(pps)
                    setup.fwd.sent.append(sent)
                    setup.fwd.cpu.append(cpu)
        finally:
            for setup in setups:
                finish(setup)
    print(table(forwarders, runs, seconds))
    for line in verdicts(forwarders):
        print(line)
    return 0 if all(f.samples for f in forwarders) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
