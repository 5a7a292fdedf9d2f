"""A fake Ethernet wiring two (or more) Router cores together, h11 style.

Frames a router transmits on a connected port are handed to the peer's `receive` at the same
`now`; the exchange runs until nothing more is produced (bounded). Frames sent on ports with
no peer are collected in `outside` (what a capture on that port would show), and every frame
that crossed a link is kept in `wire`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from appliance.core.router import Action, Router, Transmit

Port = tuple[str, int]  # (router name, ifindex)


@dataclass
class FakeNetwork:
    routers: dict[str, Router] = field(default_factory=dict)
    peers: dict[Port, Port] = field(default_factory=dict)
    outside: dict[Port, list[bytes]] = field(default_factory=dict)
    wire: list[tuple[Port, Port, bytes]] = field(default_factory=list)
    max_steps: int = 10_000

    def add(self, name: str, router: Router) -> None:
        self.routers[name] = router

    def connect(self, a: Port, b: Port) -> None:
        """A point-to-point link between port a and port b."""
        self.peers[a] = b
        self.peers[b] = a

    def inject(self, port: Port, frame: bytes, now: float) -> list[Action]:
        """Frame arrives at `port` from outside; run the network until quiet. Returns the
        actions of the first receive (for accounting checks)."""
        name, ifindex = port
        first = self.routers[name].receive(ifindex, frame, now)
        self.run(name, first, now)
        return first

    def start(self, now: float) -> None:
        for name, router in self.routers.items():
            self.run(name, router.start(now), now)

    def tick(self, now: float) -> None:
        for name, router in self.routers.items():
            self.run(name, router.tick(now), now)

    def run(self, name: str, actions: Iterable[Action], now: float) -> None:
        pending: deque[tuple[str, Transmit]] = deque(
            (name, a) for a in actions if isinstance(a, Transmit))
        steps = 0
        while pending:
            steps += 1
            if steps > self.max_steps:
                raise RuntimeError("fake network did not settle (forwarding loop?)")
            src_name, tx = pending.popleft()
            port = (src_name, tx.ifindex)
            peer = self.peers.get(port)
            if peer is None:
                self.outside.setdefault(port, []).append(tx.frame)
                continue
            self.wire.append((port, peer, tx.frame))
            out = self.routers[peer[0]].receive(peer[1], tx.frame, now)
            pending.extend((peer[0], a) for a in out if isinstance(a, Transmit))

    def take(self, port: Port) -> list[bytes]:
        """The frames that left `port` towards the outside since the last take."""
        return self.outside.pop(port, [])
