"""The fast path alone: ``FastPath.poll`` over frames sitting in in-memory rings.

    python3 -m bench fastpath             # 50 passes, 1,000,000 routes for the big tables
    python3 -m bench.fastpath --quick     # 10 passes, 100,000 routes

``FastPath.poll`` over 1024 frames sitting in in-memory rings (an anonymous mmap laid out like
TPACKET_V2 rings), nanoseconds per frame, for the C fast path with a tiny and a big table
(IPv4 to one destination; IPv6 to 65,536 destinations, each its own /64, the case where a big
table costs cache and TLB misses) and for the Python twin. No kernel, no veth and no root:
this is the part of the per-packet cost that is ours. The frames and tables are those of
bench/forward.py (bench/tables.py). The machine is shared: compare figures within one run
(the ratios), not across runs.

Two more rows price the trace ring (`routerctl trace` / `vrlab trace` keep the fast path
attached): a trace running whose filter matches none of the frames (each frame pays the
filter check), and one that records every frame (clock reads and a 112-byte record each).
"""

from __future__ import annotations

import argparse
import ipaddress
import mmap
import socket
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.tables import FLOWS, MACS, PAYLOAD, load_tables

if TYPE_CHECKING:
    from appliance.dataplane.ring import RingSocket


@dataclass
class CpuCase:
    """One row of the in-memory table: nanoseconds of poll() per frame."""

    label: str
    kind: str
    routes: int
    flows: int
    trace: str = "off"
    """off; "other": a trace runs for an address none of the frames has; "all": every frame
    is traced."""
    samples: list[float] = field(default_factory=list)


_TPACKET2_HDR = struct.Struct("=IIIHHIIHH")
_SLOTS = 1024
_FRAME_SIZE = 2048
_MAC_OFFSET = 82
_STATUS = struct.Struct("=I")


def _memory_ring(ifindex: int, mac: bytes) -> RingSocket:
    """A RingSocket over an anonymous mmap (RX slots, then TX slots) and a socketpair."""
    from appliance.dataplane.ring import RingSocket

    sock, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.close()  # kicks then fail quietly (MSG_DONTWAIT, error ignored)
    ring_map = mmap.mmap(-1, 2 * _SLOTS * _FRAME_SIZE)
    return RingSocket(sock, f"mem{ifindex}", ifindex, mac, 1500, ring_map, _FRAME_SIZE, _SLOTS)


def _frames(flows: int, count: int) -> list[bytes]:
    """`count` frames from h1 to r: IPv4 UDP to 198.51.100.2, or IPv6 UDP to `flows`
    destinations 2001:db8:0:N::2 (each its own /64), as bench/gen.c sends them."""
    h1, r = (bytes.fromhex(MACS[n].replace(":", "")) for n in ("h1-r", "r-h1"))
    out = []
    for i in range(count):
        if flows:
            dst = ((0x20010DB8 << 96) | ((i % flows) << 64) | 2).to_bytes(16, "big")
            ip6 = struct.pack("!IHBB16s16s", 0x60000000, 8, 17, 64,
                              ipaddress.IPv6Address("2001:db8:1::2").packed, dst)
            out.append(r + h1 + b"\x86\xdd" + ip6 + struct.pack("!HHHH", 40000, 9, 8, 0))
        else:
            ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 46, 0, 0, 64, 17, 0,
                                       bytes([192, 0, 2, 2]), bytes([198, 51, 100, 2])))
            total = sum(struct.unpack("!10H", ip))
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            ip[10:12] = (~total & 0xFFFF).to_bytes(2, "big")
            udp = struct.pack("!HHHH", 40000, 9, 26, 0) + bytes(PAYLOAD)
            out.append(r + h1 + b"\x08\x00" + bytes(ip) + udp)
    return out


class CpuRun:
    """A case set up: a fast path with its tables and two in-memory rings."""

    def __init__(self, case: CpuCase) -> None:
        from appliance.dataplane.tablesync import new_fastpath

        self.case = case
        macs = [bytes.fromhex(MACS[n].replace(":", "")) for n in ("r-h1", "r-h2")]
        self.rings = [_memory_ring(1, macs[0]), _memory_ring(2, macs[1])]
        self.fp = new_fastpath(case.kind)
        load_tables(self.fp, self.rings, case.routes, case.flows)
        for ring in self.rings:
            self.fp.attach(ring)
        if case.trace == "other":
            from appliance.dataplane.tracering import trace_addresses

            self.fp.set_trace(trace_addresses(["203.0.113.99"]))
        elif case.trace == "all":
            self.fp.set_trace(b"", match_all=True)
        self.pool = _frames(case.flows, max(case.flows, _SLOTS))
        self.cursor = 0

    def one_pass(self) -> None:
        """Fill every RX slot (frames rotate through the flows), time one poll() over them.
        Only the poll is timed, not the refill."""
        rx, tx = self.rings[0].map, self.rings[1].map
        tx_base = _SLOTS * _FRAME_SIZE
        for slot in range(_SLOTS):
            frame = self.pool[self.cursor]
            self.cursor = (self.cursor + 1) % len(self.pool)
            off = slot * _FRAME_SIZE
            rx[off + _MAC_OFFSET: off + _MAC_OFFSET + len(frame)] = frame
            _TPACKET2_HDR.pack_into(rx, off, 1, len(frame), len(frame), _MAC_OFFSET,
                                    _MAC_OFFSET, 0, 0, 0, 0)
            _STATUS.pack_into(tx, tx_base + slot * _FRAME_SIZE, 0)
        self.fp.trace_records()  # the daemon drains the ring between polls, untimed here
        started = time.perf_counter_ns()
        done, _ = self.fp.poll(_SLOTS)
        elapsed = time.perf_counter_ns() - started
        counts = self.fp.counters()
        if done != _SLOTS or counts["forward4"] + counts["forward6"] == 0:
            raise RuntimeError(f"{self.case.label}: poll read {done}, forwarded nothing")
        self.case.samples.append(elapsed / done)

    def close(self) -> None:
        for ring in self.rings:
            self.fp.detach(ring.ifindex)
            ring.close()


def cpu_cases_run(cases: list[CpuCase], passes: int) -> None:
    """All cases set up first, then passes round robin (the Python twin every 5th), so a
    change in the machine's load hits every case alike."""
    runs = [CpuRun(case) for case in cases]
    try:
        for i in range(passes):
            for run_ in runs:
                if run_.case.kind == "c" or i % 5 == 0:
                    run_.one_pass()
    finally:
        for run_ in runs:
            run_.close()


def cpu_table(cases: list[CpuCase], passes: int) -> str:
    lines = [f"the fast path alone: poll() over {_SLOTS} frames in in-memory rings, "
             f"ns per frame (median of {passes} passes; no kernel, no veth)",
             f"{'case':<52} {'ns/frame':>9} {'frames/s':>12}"]
    for case in cases:
        if case.samples:
            ns = statistics.median(case.samples)
            lines.append(f"{case.label:<52} {ns:>9.0f} {1e9 / ns:>12,.0f}")
        else:
            lines.append(f"{case.label:<52} {'-':>9} {'-':>12}")
    return "\n".join(lines)


def cpu_verdicts(cases: dict[str, CpuCase]) -> list[str]:
    ns = {key: statistics.median(c.samples) for key, c in cases.items() if c.samples}
    out = []
    if "c4" in ns and "py4" in ns:
        ratio = ns["py4"] / ns["c4"]
        out.append(f"{'met ' if ratio >= 50 else 'MISSED'} fast path alone, C >= 50x Python "
                   f"twin: {ratio:.0f}x")
    for small, big, what in (("c4", "c4big", "IPv4, one flow"),
                             ("c6", "c6big", f"IPv6, {FLOWS:,} flows")):
        if small in ns and big in ns:
            cost = ns[big] / ns[small] - 1
            out.append(f"{'met ' if cost < 0.10 else 'MISSED'} fast path alone, big table "
                       f"({what}) costs < 10%: {cost:+.1%}")
    if "c4" in ns and "c4trace" in ns:
        cost = ns["c4trace"] / ns["c4"] - 1
        out.append(f"{'met ' if cost < 0.05 else 'MISSED'} fast path alone, a trace running "
                   f"for other packets costs < 5%: {cost:+.1%}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.fastpath", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 passes, 100k routes")
    parser.add_argument("--passes", type=int, help="passes per case (default 50)")
    parser.add_argument("--routes", type=int, help="big table size (default 1,000,000)")
    args = parser.parse_args(argv)
    routes = args.routes or (100_000 if args.quick else 1_000_000)
    passes = args.passes or (10 if args.quick else 50)
    from appliance.dataplane.tablesync import have_c

    cases = {
        "c4": CpuCase("C, IPv4, 2 routes, 1 destination", "c", 2, 0),
        "c4big": CpuCase(f"C, IPv4, {routes:,} routes, 1 destination", "c", routes, 0),
        "c6": CpuCase(f"C, IPv6, 1 route, {FLOWS:,} destinations", "c", 1, FLOWS),
        "c6big": CpuCase(f"C, IPv6, {routes:,} routes, {FLOWS:,} destinations", "c", routes,
                         FLOWS),
        "c4trace": CpuCase("C, IPv4, 2 routes, trace on (filter: other address)", "c", 2,
                           0, "other"),
        "c4traceall": CpuCase("C, IPv4, 2 routes, every frame traced", "c", 2, 0, "all"),
        "py4": CpuCase("Python twin, IPv4, 2 routes, 1 destination", "python", 2, 0),
    }
    if not have_c():
        print("bench fastpath: C extension not built (python3 setup.py build_ext --inplace)")
        cases = {key: case for key, case in cases.items() if case.kind != "c"}
    cpu_cases_run(list(cases.values()), passes)
    print(cpu_table(list(cases.values()), passes))
    for line in cpu_verdicts(cases):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
