"""Packet trace: the stages a packet crossed, in the spirit of the seed's dtrace stacks.

The router asks `Tracer.begin()` for a record per received frame while tracing is on and
appends stages to it (`rx`, `verify`, `fib`, `neighbor`, `queue`, `ttl`, `tx`, `icmp`,
`drop`, `punt`, ...). The core never reads a clock: a stage's time is the `now` the caller
passed in, unless the tracer was given a clock (the daemon passes `time.monotonic` so a trace
shows how long each stage took).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


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

    def add(self, stage: str, detail: str = "") -> None:
        t = self._clock() if self._clock is not None else self._now
        self.stages.append(TraceStage(stage, detail, t))

    def render(self) -> str:
        start = self.stages[0].time if self.stages else 0.0
        lines = [f"packet {self.packet_id} on ifindex {self.ifindex}"]
        for s in self.stages:
            lines.append(f"  +{(s.time - start) * 1e6:9.1f}us  {s.stage:<9} {s.detail}")
        return "\n".join(lines)


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

    def begin(self, ifindex: int, now: float) -> TraceRecord:
        rec = TraceRecord(next(self._ids), ifindex, [], self.clock, now)
        self._records.append(rec)
        return rec

    def records(self, n: int | None = None) -> list[TraceRecord]:
        """The last `n` records (all when None), oldest first."""
        recs = list(self._records)
        return recs if n is None else recs[-n:] if n > 0 else []

    def clear(self) -> None:
        self._records.clear()
