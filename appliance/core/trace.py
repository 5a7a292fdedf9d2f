"""Packet trace: the stages a packet crossed, in the spirit of the seed's dtrace stacks.

The router asks `Tracer.begin()` for a record per received frame while tracing is on and
appends stages to it (`rx`, `verify`, `fib`, `neighbor`, `queue`, `ttl`, `tx`, `icmp`,
`drop`, `punt`, ...). The core never reads a clock: a stage's time is the `now` the caller
passed in, unless the tracer was given a clock (the daemon passes `time.monotonic` so a trace
shows how long each stage took).

A trace may be filtered (`Tracer.addresses`): then only IP packets from or to one of those
addresses are recorded, so a lab-wide trace (`vrlab trace`) sees its probe and what the probe
caused, not the ARP and ND chatter around it. Each record carries a `flow` summary of the
packet as received (family, addresses, protocol, TTL, ICMP type and echo identifier or
ports) so that a trace can be matched with the frames captured on the wires, and its `path`:
"slow" for records the router made, "fast" for the ones the C fast path made (`add`).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any


@dataclass(frozen=True, slots=True)
class TraceStage:
    stage: str
    """What happened: rx, verify, fib, neighbor, queue, ttl, tx, icmp, drop, punt, ..."""
    detail: str
    """Human-readable detail: the route hit, the neighbor state, the drop reason."""
    time: float
    """Seconds (monotonic) when the stage was recorded."""


@dataclass(slots=True)
class TraceRecord:
    packet_id: int
    ifindex: int
    stages: list[TraceStage] = field(default_factory=list)
    _clock: Callable[[], float] | None = None
    _now: float = 0.0
    path: str = "slow"
    """"slow" (the router core handled it) or "fast" (the C fast path forwarded it)."""
    flow: dict[str, Any] = field(default_factory=dict)
    """The packet as received: family, src, dst, proto, ttl, length, icmp_type/icmp_code/
    icmp_id or sport/dport (empty for non-IP frames)."""

    def add(self, stage: str, detail: str = "") -> None:
        t = self._clock() if self._clock is not None else self._now
        self.stages.append(TraceStage(stage, detail, t))

    def render(self) -> str:
        start = self.stages[0].time if self.stages else 0.0
        lines = [f"packet {self.packet_id} on ifindex {self.ifindex} ({self.path} path)"]
        for s in self.stages:
            lines.append(f"  +{(s.time - start) * 1e6:9.1f}us  {s.stage:<9} {s.detail}")
        return "\n".join(lines)


def flow_of(frame: bytes) -> dict[str, Any]:
    """The flow summary of an Ethernet frame (empty when it is not IPv4/IPv6)."""
    if len(frame) < 14:
        return {}
    ethertype = frame[12:14]
    l4 = 0
    out: dict[str, Any]
    if ethertype == b"\x08\x00" and len(frame) >= 34:
        out = {"family": 4, "src": str(IPv4Address(frame[26:30])),
               "dst": str(IPv4Address(frame[30:34])), "proto": frame[23], "ttl": frame[22],
               "length": int.from_bytes(frame[16:18], "big")}
        if not int.from_bytes(frame[20:22], "big") & 0x1FFF:
            l4 = 14 + (frame[14] & 15) * 4
    elif ethertype == b"\x86\xdd" and len(frame) >= 54:
        out = {"family": 6, "src": str(IPv6Address(frame[22:38])),
               "dst": str(IPv6Address(frame[38:54])), "proto": frame[20], "ttl": frame[21],
               "length": 40 + int.from_bytes(frame[18:20], "big")}
        l4 = 54
    else:
        return {}
    proto = out["proto"]
    if l4 and proto in (1, 58) and l4 + 8 <= len(frame):
        out["icmp_type"], out["icmp_code"] = frame[l4], frame[l4 + 1]
        out["icmp_id"] = int.from_bytes(frame[l4 + 4:l4 + 6], "big")
    elif l4 and proto in (6, 17) and l4 + 4 <= len(frame):
        out["sport"] = int.from_bytes(frame[l4:l4 + 2], "big")
        out["dport"] = int.from_bytes(frame[l4 + 2:l4 + 4], "big")
    return out


class Tracer:
    """A bounded ring of trace records; cheap to leave disabled (one attribute test)."""

    def __init__(
        self,
        enabled: bool = False,
        capacity: int = 1024,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.enabled = enabled
        self.clock = clock
        self._records: deque[TraceRecord] = deque(maxlen=capacity)
        self._ids = itertools.count(1)
        self._addresses: frozenset[bytes] = frozenset()
        self._address_list: list[str] = []

    @property
    def addresses(self) -> list[str]:
        """The filter: only packets from or to these addresses are traced (empty: all)."""
        return list(self._address_list)

    @addresses.setter
    def addresses(self, values: list[str]) -> None:
        self._address_list = [str(ip_address(v)) for v in values]
        self._addresses = frozenset(ip_address(v).packed for v in values)

    def wants(self, frame: bytes) -> bool:
        """Is this received frame one the trace records? (Called only while enabled.)"""
        if not self._addresses:
            return True
        if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
            return frame[26:30] in self._addresses or frame[30:34] in self._addresses
        if len(frame) >= 54 and frame[12:14] == b"\x86\xdd":
            return frame[22:38] in self._addresses or frame[38:54] in self._addresses
        return False

    def begin(self, ifindex: int, now: float, frame: bytes = b"") -> TraceRecord:
        rec = TraceRecord(next(self._ids), ifindex, [], self.clock, now,
                          flow=flow_of(frame) if frame else {})
        self._records.append(rec)
        return rec

    def add(self, record: TraceRecord) -> TraceRecord:
        """Append a record made elsewhere (the fast path's); it gets the next packet id."""
        record.packet_id = next(self._ids)
        self._records.append(record)
        return record

    def records(self, n: int | None = None) -> list[TraceRecord]:
        """The last `n` records (all when None), oldest first."""
        recs = list(self._records)
        return recs if n is None else recs[-n:] if n > 0 else []

    def clear(self) -> None:
        self._records.clear()
