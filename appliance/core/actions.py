"""What the router core returns: results are values (opte style).

`Transmit(ifindex, frame)` sends a frame; `Drop(reason)` ends a frame that the router refused;
`Deliver(reason)` ends a frame the router consumed itself (an ARP reply it learned from, an
echo reply addressed to it); `Hold(reason)` says the frame is kept (queued on an unresolved
neighbor, or a fragment waiting for its datagram). The reason of each is a `Stats` key that
has already been bumped, so every frame is accounted for.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Action", "Deliver", "Drop", "Hold", "Transmit"]


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send `frame` (a whole Ethernet frame) out of interface `ifindex`."""

    ifindex: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class Drop:
    """The frame was refused; `reason` is the Stats key that counted it."""

    reason: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """The frame was consumed by the router itself; `reason` is the Stats key that counted it."""

    reason: str


@dataclass(frozen=True, slots=True)
class Hold:
    """The frame is kept (neighbor queue, reassembly); `reason` is the Stats key."""

    reason: str


Action = Transmit | Drop | Deliver | Hold
