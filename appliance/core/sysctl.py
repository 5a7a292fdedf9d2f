"""Router tunables under their BSD `sysctl` names (seed 003, "8.9 ip_sysctl function").

Each knob has a default, a range and a short description. The router reads the values on
the packet path (plain dict lookups) and listens for changes that must reach other parts
(neighbor timers, the fast-path generation), so every knob really changes behaviour:

- ``net.inet.ip.forwarding`` / ``net.inet6.ip6.forwarding``: forward transit packets at all
  (ip_forward is only called when set; otherwise transit packets count as "not forwardable").
- ``net.inet.ip.redirect`` / ``net.inet6.ip6.redirect``: send ICMP / ND redirects.
- ``net.inet.ip.ttl`` / ``net.inet6.ip6.hlim``: TTL / hop limit of packets the router
  originates (echo replies, ICMP errors, ND uses 255 regardless, RFC 4861 §7.1).
- ``net.inet.icmp.icmplim`` / ``net.inet6.icmp6.errppslimit``: ICMP error token bucket rate
  (per second; 0 disables the limit, as on FreeBSD).
- ``net.inet.icmp.bmcastecho``: answer echo requests sent to broadcast/multicast.
- ``net.inet.ip.maxfragpackets``: datagrams held in reassembly at once (-1 unlimited,
  0 refuses all fragments, as on FreeBSD).
- ``net.inet.ip.fragttl`` / ``net.inet6.ip6.fragttl``: seconds a datagram waits for its
  fragments (30 and 60, FreeBSD's IPFRAGTTL and RFC 8200 §4.5's 60 s). Each queue takes the
  value when its first fragment arrives (BSD ipq_ttl): a change applies to new queues.
- neighbor timers (one cache serves ARP and ND, so each timer applies to both):
  ``net.link.ether.inet.max_age`` (REACHABLE lifetime, RFC 4861 ReachableTime),
  ``net.link.ether.inet.maxhold`` (packets queued per unresolved neighbor),
  ``net.inet6.icmp6.nd6_delay`` (DELAY_FIRST_PROBE_TIME),
  ``net.inet6.icmp6.nd6_retrans`` (RetransTimer, milliseconds),
  ``net.inet6.icmp6.nd6_mmaxtries`` (MAX_MULTICAST_SOLICIT),
  ``net.inet6.icmp6.nd6_umaxtries`` (MAX_UNICAST_SOLICIT),
  ``net.inet6.icmp6.nd6_gctimer`` (seconds a STALE entry is kept unused before removal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass


class SysctlError(ValueError):
    """An unknown sysctl name or a value out of range."""


@dataclass(frozen=True, slots=True)
class Knob:
    """One tunable: its default, inclusive range and a line of description."""

    name: str
    default: int
    minimum: int
    maximum: int
    description: str
    forwarding: bool = False
    """True if the fast path depends on it (a change bumps Router.generation)."""


KNOBS: dict[str, Knob] = {
    k.name: k
    for k in (
        Knob("net.inet.ip.forwarding", 1, 0, 1, "forward IPv4 packets", forwarding=True),
        Knob("net.inet.ip.redirect", 1, 0, 1, "send ICMP redirects", forwarding=True),
        Knob("net.inet.ip.ttl", 64, 1, 255, "TTL of IPv4 packets the router originates"),
        Knob("net.inet.icmp.icmplim", 200, 0, 1_000_000, "ICMP errors per second (0 = no limit)"),
        Knob("net.inet.icmp.bmcastecho", 0, 0, 1, "answer broadcast/multicast echo requests"),
        Knob(
            "net.inet.ip.maxfragpackets", 436, -1, 1_000_000,
            "datagrams in reassembly (-1 = unlimited, 0 = drop all fragments)",
        ),
        Knob(
            "net.inet.ip.fragttl", 30, 1, 3600,
            "seconds a datagram may wait for its fragments (per queue, set when it starts)",
        ),
        Knob("net.inet6.ip6.forwarding", 1, 0, 1, "forward IPv6 packets", forwarding=True),
        Knob(
            "net.inet6.ip6.fragttl", 60, 1, 3600,
            "seconds an IPv6 datagram may wait for its fragments (per queue, RFC 8200 §4.5)",
        ),
        Knob("net.inet6.ip6.redirect", 1, 0, 1, "send ND redirects", forwarding=True),
        Knob("net.inet6.ip6.hlim", 64, 1, 255, "hop limit of IPv6 packets the router originates"),
        Knob(
            "net.inet6.icmp6.errppslimit", 100, 0, 1_000_000,
            "ICMPv6 errors per second (0 = no limit)",
        ),
        Knob(
            "net.link.ether.inet.max_age", 30, 1, 86_400,
            "seconds a neighbor stays REACHABLE after confirmation (ARP and ND)",
        ),
        Knob(
            "net.link.ether.inet.maxhold", 16, 1, 4096,
            "packets queued per unresolved neighbor (oldest dropped)",
        ),
        Knob("net.inet6.icmp6.nd6_delay", 5, 1, 3600, "seconds in DELAY before probing"),
        Knob("net.inet6.icmp6.nd6_retrans", 1000, 10, 60_000, "ms between solicitations"),
        Knob("net.inet6.icmp6.nd6_mmaxtries", 3, 1, 100, "multicast solicitations/ARP requests"),
        Knob("net.inet6.icmp6.nd6_umaxtries", 3, 1, 100, "unicast probes before failure"),
        Knob(
            "net.inet6.icmp6.nd6_gctimer", 600, 1, 864_000,
            "seconds an unused STALE neighbor is kept",
        ),
    )
}


def parse_value(name: str, value: object) -> int:
    """Check `value` for knob `name` and return it as an int, or raise SysctlError."""
    knob = KNOBS.get(name)
    if knob is None:
        raise SysctlError(f"unknown sysctl {name!r}")
    if isinstance(value, bool):
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value.strip(), 0)
        except ValueError:
            raise SysctlError(f"{name}: {value!r} is not an integer") from None
    else:
        raise SysctlError(f"{name}: {value!r} is not an integer")
    if not knob.minimum <= number <= knob.maximum:
        raise SysctlError(f"{name}: {number} is out of range {knob.minimum}..{knob.maximum}")
    return number


Listener = Callable[[str, int], None]


class Sysctl:
    """The current values; `values` is a plain dict for cheap reads on the packet path."""

    def __init__(self, initial: dict[str, int] | None = None) -> None:
        self.values: dict[str, int] = {name: knob.default for name, knob in KNOBS.items()}
        self.generation = 0
        """Bumped when a knob the fast path depends on changes."""
        self._listeners: list[Listener] = []
        for name, value in (initial or {}).items():
            self.set(name, value)

    def get(self, name: str) -> int:
        try:
            return self.values[name]
        except KeyError:
            raise SysctlError(f"unknown sysctl {name!r}") from None

    def set(self, name: str, value: object) -> int:
        """Set a knob (int or decimal/hex string); returns the old value."""
        number = parse_value(name, value)
        old = self.values[name]
        self.values[name] = number
        if number != old:
            if KNOBS[name].forwarding:
                self.generation += 1
            for listener in self._listeners:
                listener(name, number)
        return old

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(name, value)` after every change."""
        self._listeners.append(listener)

    def items(self) -> Iterator[tuple[str, int]]:
        return iter(sorted(self.values.items()))

    def describe(self, name: str) -> Knob:
        try:
            return KNOBS[name]
        except KeyError:
            raise SysctlError(f"unknown sysctl {name!r}") from None
