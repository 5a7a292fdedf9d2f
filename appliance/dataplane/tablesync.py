"""The fast path as the daemon uses it: pick C or the Python twin, keep its tables in step with
the router, and fold its counters into the router's statistics.

``new_fastpath("auto" | "c" | "python")`` returns ``appliance.dataplane._fastpath.FastPath``
when the extension is built (or asked for) and ``appliance.dataplane.twin.FastPath``
otherwise; both have the API documented in ``appliance/dataplane/twin.py``.

``build_snapshot(router)`` turns the router's state into table records, read only through the
contract of docs/INTERFACES.md: ``router.fib.routes()``, ``router.neighbors.entries()``,
``router.interfaces`` and ``router.sysctl``. ``TableSync(fastpath, router)`` loads a snapshot
and, on each ``sync()``, reloads only the tables whose source changed when
``router.generation`` moved (the FIB on ``fib.generation`` or an address change, the neighbors on
``neighbors.generation``), so a neighbor turning STALE does not rebuild a million-route FIB.
``TableSync.merge_counters(router.stats)`` adds what the fast path forwarded since the last
call to ``ip.total``/``ip.forward``/``ip.fastforward`` (and the ``ip6`` twins), as FreeBSD's
ip_tryforward counts them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Protocol

from appliance.dataplane import twin
from appliance.dataplane.twin import (
    FLAG_FORWARDING4,
    FLAG_FORWARDING6,
    FLAG_REDIRECT4,
    FLAG_REDIRECT6,
    INTERFACE,
    NEIGHBOR,
    NEIGHBOR_STALE,
    NEXTHOP,
    ROUTE4,
    ROUTE6,
    FastPathError,
    NextHopKind,
    Verdict,
)

if TYPE_CHECKING:
    from appliance.core.fib import Route
    from appliance.core.router import Router
    from appliance.core.stats import Stats
    from appliance.dataplane.ring import RingSocket

__all__ = [
    "FastPathError",
    "Snapshot",
    "TableSync",
    "Verdict",
    "build_fib",
    "build_interfaces",
    "build_neighbors",
    "build_snapshot",
    "have_c",
    "new_fastpath",
]

USABLE_STATES = frozenset({"REACHABLE", "STALE", "DELAY", "PROBE"})
"""Neighbor states the fast path forwards to: every state with a link-layer address. A STALE
entry is still used to send (RFC 4861 §7.3.3; Linux forwards on it too): it is loaded with
``NEIGHBOR_STALE``, the fast path forwards the packet and notes the neighbor, and the daemon
hands the note to ``Router.neighbor_used``, which moves the entry to DELAY (and later PROBE)
as the slow path would have; the packet itself never leaves the fast path."""


class FastPathLike(Protocol):
    """The API both fast path implementations have (see appliance/dataplane/twin.py)."""

    generation: int

    def load_interfaces(self, records: bytes, flags: int, generation: int) -> None: ...
    def load_fib(self, nexthops: bytes, routes4: bytes, routes6: bytes, generation: int
                 ) -> None: ...
    def load_neighbors(self, records: bytes, generation: int) -> None: ...
    def process(self, ifindex: int, frame: bytes, csum_partial: bool = False
                ) -> tuple[int, int, bytes]: ...
    def attach(self, ring: RingSocket) -> None: ...
    def detach(self, ifindex: int) -> None: ...
    def poll(self, budget: int, spin: float = 0.0) -> tuple[int, list[tuple[int, int, bytes]]]:
        ...
    def serve(self, budget: int, timeout: float, other_fd: int, spin: float = 0.0
              ) -> tuple[int, list[tuple[int, int, bytes]], list[tuple[int, int]]]: ...
    def transmit(self, ifindex: int, frame: bytes) -> bool: ...
    def flush(self) -> bool: ...
    def counters(self) -> dict[str, int]: ...
    def set_trace(self, addresses: bytes, match_all: bool = False) -> None: ...
    def trace_records(self) -> bytes: ...
    def stale_neighbors(self) -> list[tuple[int, bytes]]: ...


def have_c() -> bool:
    """True when the C extension is built."""
    try:
        importlib.import_module("appliance.dataplane._fastpath")
    except ImportError:
        return False
    return True


def new_fastpath(kind: str = "auto") -> FastPathLike:
    """A fresh fast path: ``"c"`` (error if not built), ``"python"``, or ``"auto"``."""
    if kind not in ("auto", "c", "python"):
        raise ValueError(f"fast path kind {kind!r}: expected auto, c or python")
    if kind != "python":
        try:
            module = importlib.import_module("appliance.dataplane._fastpath")
        except ImportError:
            if kind == "c":
                raise
        else:
            fastpath: FastPathLike = module.FastPath()
            return fastpath
    return twin.FastPath()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Table records for ``load_interfaces``, ``load_fib`` and ``load_neighbors``."""

    interfaces: bytes
    flags: int
    nexthops: bytes
    routes4: bytes
    routes6: bytes
    neighbors: bytes
    generation: int


def build_interfaces(router: Router) -> tuple[bytes, int]:
    """INTERFACE records of ``router.interfaces`` and the forwarding sysctls as flags."""
    records = b"".join(
        INTERFACE.pack(iface.ifindex, iface.mac, iface.mtu)
        for iface in router.interfaces.values()
    )
    get = router.sysctl.get
    flags = (
        (FLAG_FORWARDING4 if get("net.inet.ip.forwarding") else 0)
        | (FLAG_FORWARDING6 if get("net.inet6.ip6.forwarding") else 0)
        | (FLAG_REDIRECT4 if get("net.inet.ip.redirect") else 0)
        | (FLAG_REDIRECT6 if get("net.inet6.ip6.redirect") else 0)
    )
    return records, flags


def _own_addresses(router: Router) -> Iterable[IPv4Network | IPv6Network]:
    """Host prefixes the router answers itself: its addresses (link-local included) and the
    directed broadcasts of its subnets (RFC 1812 §5.3.5.2: the slow path decides)."""
    for iface in router.interfaces.values():
        for a4 in iface.ipv4:
            yield IPv4Network(a4.ip)
            if a4.network.prefixlen < 31:
                yield IPv4Network(a4.network.broadcast_address)
        for a6 in iface.ipv6:
            yield IPv6Network(a6.ip)


def build_fib(routes: Iterable[Route], own: Iterable[IPv4Network | IPv6Network] = ()
              ) -> tuple[bytes, bytes, bytes]:
    """NEXTHOP, ROUTE4 and ROUTE6 records for ``routes`` (``appliance.core.fib.Route``-like:
    prefix, type, ifindex, gateway, origin) plus LOCAL host routes for ``own``, which win over
    a route for the same prefix. Next hops are shared between routes."""
    hops: dict[tuple[int, int, bytes], int] = {}
    r4: list[bytes] = []
    r6: list[bytes] = []

    def hop(kind: int, ifindex: int, gateway: bytes) -> int:
        key = (kind, ifindex, gateway)
        index = hops.get(key)
        if index is None:
            index = hops[key] = len(hops)
        return index

    zero = bytes(16)
    for route in routes:
        type_name = route.type.name
        if route.origin.name == "LOCAL":
            nh = hop(NextHopKind.LOCAL, route.ifindex or 0, zero)
        elif type_name == "BLACKHOLE":
            nh = hop(NextHopKind.BLACKHOLE, 0, zero)
        elif type_name == "REJECT":
            nh = hop(NextHopKind.REJECT, 0, zero)
        elif route.gateway is not None:
            # ifindex None (not yet resolved to an interface) gives 0: the fast path punts
            # such packets as PUNT_NOROUTE rather than matching a shorter prefix.
            gw = route.gateway.packed.ljust(16, b"\0")
            nh = hop(NextHopKind.GATEWAY, route.ifindex or 0, gw)
        else:
            nh = hop(NextHopKind.ONLINK, route.ifindex or 0, zero)
        prefix = route.prefix
        if prefix.version == 4:
            r4.append(ROUTE4.pack(prefix.network_address.packed, prefix.prefixlen, nh))
        else:
            r6.append(ROUTE6.pack(prefix.network_address.packed, prefix.prefixlen, nh))
    local = hop(NextHopKind.LOCAL, 0, zero)
    for prefix in own:
        if prefix.version == 4:
            r4.append(ROUTE4.pack(prefix.network_address.packed, prefix.prefixlen, local))
        else:
            r6.append(ROUTE6.pack(prefix.network_address.packed, prefix.prefixlen, local))
    nexthops = b"".join(NEXTHOP.pack(kind, ifindex, gw) for kind, ifindex, gw in hops)
    return nexthops, b"".join(r4), b"".join(r6)


def build_neighbors(router: Router) -> bytes:
    """NEIGHBOR records for resolved, usable neighbors, each with its cached Ethernet header
    (neighbor MAC, our MAC on that interface, EtherType): the NCE "fastpath" header; STALE
    ones flagged ``NEIGHBOR_STALE``."""
    records = []
    for entry in router.neighbors.entries():
        if entry.mac is None or entry.state.name not in USABLE_STATES:
            continue
        iface = router.interfaces.get(entry.ifindex)
        if iface is None:
            continue
        v4 = len(entry.addr) == 4
        header = entry.mac + iface.mac + (b"\x08\x00" if v4 else b"\x86\xdd")
        flags = NEIGHBOR_STALE if entry.state.name == "STALE" else 0
        records.append(NEIGHBOR.pack(entry.ifindex, 4 if v4 else 6, entry.addr, header, flags))
    return b"".join(records)


def build_snapshot(router: Router) -> Snapshot:
    """All table records for ``router`` as they are now."""
    interfaces, flags = build_interfaces(router)
    nexthops, routes4, routes6 = build_fib(router.fib.routes(), _own_addresses(router))
    return Snapshot(interfaces, flags, nexthops, routes4, routes6, build_neighbors(router),
                    router.generation)


def _address_key(router: Router) -> tuple[object, ...]:
    return tuple(
        (i.ifindex, i.mac, i.mtu, tuple(i.ipv4), tuple(i.ipv6))
        for i in router.interfaces.values()
    )


class TableSync:
    """Keeps a fast path's tables equal to the router's (see the module docstring)."""

    def __init__(self, fastpath: FastPathLike, router: Router) -> None:
        self.fastpath = fastpath
        self.router = router
        self._generation: int | None = None
        self._fib_key: tuple[object, ...] | None = None
        self._neighbor_generation: int | None = None
        self._iface_key: tuple[object, ...] | None = None
        self._merged = {"forward4": 0, "forward6": 0}
        self.sync()

    def sync(self) -> bool:
        """Reload what changed since the last call; True if anything was reloaded."""
        router = self.router
        generation = router.generation
        if generation == self._generation:
            return False
        addresses = _address_key(router)
        interfaces, flags = build_interfaces(router)
        iface_key = (interfaces, flags)
        interfaces_changed = iface_key != self._iface_key
        if interfaces_changed:
            self.fastpath.load_interfaces(interfaces, flags, generation)
            self._iface_key = iface_key
        fib_key = (router.fib.generation, addresses)
        if fib_key != self._fib_key:
            nexthops, routes4, routes6 = build_fib(router.fib.routes(), _own_addresses(router))
            self.fastpath.load_fib(nexthops, routes4, routes6, generation)
            self._fib_key = fib_key
        if router.neighbors.generation != self._neighbor_generation or interfaces_changed:
            self.fastpath.load_neighbors(build_neighbors(router), generation)
            self._neighbor_generation = router.neighbors.generation
        self._generation = generation
        return True

    def merge_counters(self, stats: Stats) -> dict[str, int]:
        """Add forwarding done by the fast path since the last call to ``stats``; returns the
        fast path's counters."""
        counts = self.fastpath.counters()
        for key, group in (("forward4", "ip"), ("forward6", "ip6")):
            delta = counts[key] - self._merged[key]
            if delta:
                stats.bump(f"{group}.total", delta)
                stats.bump(f"{group}.forward", delta)
                stats.bump(f"{group}.fastforward", delta)
                self._merged[key] = counts[key]
        return counts
