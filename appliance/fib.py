"""The routing table: longest prefix match for IPv4 and IPv6.

Layout (one `_PrefixTable` per family, `width` = 32 or 128 address bits):

- `by_len[L]` is a dict of every prefix of length L, keyed by the network address as an int
  (host bits zero).  Exact-match add, replace and delete are one dict operation.
- A prefix is *short* when L <= `split` (16 for IPv4, 32 for IPv6) and *long* otherwise.
  Addresses are cut into *buckets* by their top `split` bits.
- `long_lens[bucket]` lists, longest first, the lengths of the long prefixes that lie inside
  that bucket (with a reference count per (bucket, length) so delete can drop a length).
  A lookup probes only those lengths: in a full Internet table a /16 holds a handful.
- For IPv4 the short prefixes are also expanded into a dense list of 65536 slots (DIR-16:
  slot = the best short route covering that /16), so the short part of a lookup is one list
  index.  For IPv6 that would be 2**32 slots; there the short part probes the short lengths
  present (few in practice: /0, /16, /29, /32).

So an IPv4 lookup is one dict get, a few dict probes and a list index, whatever the table
size; 1M routes load with one dict insert each (`add_many`).

The fast path (C, DIR-24-8 for IPv4) takes its snapshot from `iter_v4()` / `iter_v6()`, which
yield `(network: int, prefixlen: int, route)` ordered by prefix length, shortest first: writing
them into a DIR-24-8 table in that order makes longer prefixes overwrite shorter ones, which is
exactly longest-prefix-match semantics.  `generation` tells it when to rebuild.
"""

from __future__ import annotations

import enum
import ipaddress
from bisect import insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

__all__ = ["Fib", "Route", "RouteOrigin", "RouteType"]


class RouteType(enum.Enum):
    """What happens to a packet that matches (RFC 1812 §5.2.4; Linux route types)."""

    UNICAST = "unicast"
    BLACKHOLE = "blackhole"  # discard silently
    REJECT = "reject"  # discard and answer ICMP unreachable, administratively prohibited


class RouteOrigin(enum.Enum):
    """Where the route came from; redirect rules (BSD ip_forward) look at it."""

    CONNECTED = "connected"  # an interface address's subnet
    STATIC = "static"  # configuration or routerctl
    REDIRECT = "redirect"  # learned from an ICMP redirect
    LOCAL = "local"  # the router's own address (/32, /128)


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of the routing table."""

    prefix: IPv4Network | IPv6Network
    type: RouteType = RouteType.UNICAST
    ifindex: int | None = None
    """Egress interface (None for blackhole/reject)."""
    gateway: IPv4Address | IPv6Address | None = None
    """Next hop; None means on-link (the destination itself is the next hop)."""
    origin: RouteOrigin = RouteOrigin.STATIC

    def __post_init__(self) -> None:
        if self.gateway is not None:
            if self.gateway.version != self.prefix.version:
                raise ValueError(f"gateway {self.gateway} is not of the family of {self.prefix}")
            if self.type is not RouteType.UNICAST:
                raise ValueError(f"a {self.type.value} route has no gateway ({self.prefix})")


Prefix = IPv4Network | IPv6Network | str


class _PrefixTable:
    """Prefixes of one address family; see the module docstring for the layout."""

    __slots__ = (
        "by_len",
        "count",
        "dense",
        "dense_len",
        "long_count",
        "long_lens",
        "masks",
        "short_lens",
        "split",
        "width",
    )

    def __init__(self, width: int, split: int, dense: bool) -> None:
        self.width = width
        self.split = split
        all_ones = (1 << width) - 1
        # masks[L] keeps the top L bits of an address
        self.masks = [all_ones ^ (all_ones >> plen) for plen in range(width + 1)]
        self.by_len: list[dict[int, Route]] = [{} for _ in range(width + 1)]
        self.count = 0
        self.long_lens: dict[int, list[int]] = {}
        self.long_count: dict[int, int] = {}  # key (bucket << 8) | plen -> prefixes
        self.short_lens: list[int] = []  # short lengths present, longest first
        # DIR-16 expansion of the short prefixes (IPv4 only): best route and its length
        self.dense: list[Route | None] | None = [None] * (1 << split) if dense else None
        self.dense_len: list[int] = [-1] * (1 << split) if dense else []

    # --- lookup -------------------------------------------------------------------------

    def lookup(self, addr: int) -> Route | None:
        bucket = addr >> (self.width - self.split)
        lens = self.long_lens.get(bucket)
        if lens is not None:
            by_len = self.by_len
            masks = self.masks
            for plen in lens:
                route = by_len[plen].get(addr & masks[plen])
                if route is not None:
                    return route
        if self.dense is not None:
            return self.dense[bucket]
        by_len = self.by_len
        masks = self.masks
        for plen in self.short_lens:
            route = by_len[plen].get(addr & masks[plen])
            if route is not None:
                return route
        return None

    def get(self, network: int, plen: int) -> Route | None:
        return self.by_len[plen].get(network)

    # --- changes ------------------------------------------------------------------------

    def insert(self, network: int, plen: int, route: Route) -> Route | None:
        """Insert or replace; returns the replaced route. Keeps dense up to date."""
        table = self.by_len[plen]
        old = table.get(network)
        table[network] = route
        if old is None:
            self.count += 1
            if plen > self.split:
                self._long_ref(network, plen)
            elif len(table) == 1:
                insort(self.short_lens, plen, key=_negate)
        if plen <= self.split and self.dense is not None:
            self._dense_add(network, plen, route)
        return old

    def insert_bulk(self, items: list[tuple[int, int, Route]]) -> bool:
        """Insert many; returns whether anything changed."""
        by_len = self.by_len
        split = self.split
        long_lens = self.long_lens
        long_count = self.long_count
        shift = self.width - split
        changed = False
        short_added = 0
        for network, plen, route in items:
            table = by_len[plen]
            old = table.get(network)
            if old is route or old == route:
                continue
            changed = True
            table[network] = route
            if plen > split:
                if old is None:
                    self.count += 1
                    bucket = network >> shift
                    key = (bucket << 8) | plen
                    refs = long_count.get(key, 0)
                    long_count[key] = refs + 1
                    if refs == 0:
                        lens = long_lens.get(bucket)
                        if lens is None:
                            long_lens[bucket] = [plen]
                        else:
                            insort(lens, plen, key=_negate)
            else:
                short_added += 1
                if old is None:
                    self.count += 1
                    if len(table) == 1:
                        insort(self.short_lens, plen, key=_negate)
                if self.dense is not None and short_added <= 64:
                    self._dense_add(network, plen, route)
        if short_added > 64 and self.dense is not None:
            self._dense_rebuild()
        return changed

    def remove(self, network: int, plen: int) -> Route | None:
        table = self.by_len[plen]
        old = table.pop(network, None)
        if old is None:
            return None
        self.count -= 1
        if plen > self.split:
            self._long_unref(network, plen)
        else:
            if not table:
                self.short_lens.remove(plen)
            if self.dense is not None:
                self._dense_remove(network, plen)
        return old

    def _long_ref(self, network: int, plen: int) -> None:
        bucket = network >> (self.width - self.split)
        key = (bucket << 8) | plen
        refs = self.long_count.get(key, 0)
        self.long_count[key] = refs + 1
        if refs == 0:
            lens = self.long_lens.get(bucket)
            if lens is None:
                self.long_lens[bucket] = [plen]
            else:
                insort(lens, plen, key=_negate)

    def _long_unref(self, network: int, plen: int) -> None:
        bucket = network >> (self.width - self.split)
        key = (bucket << 8) | plen
        refs = self.long_count[key] - 1
        if refs:
            self.long_count[key] = refs
            return
        del self.long_count[key]
        lens = self.long_lens[bucket]
        lens.remove(plen)
        if not lens:
            del self.long_lens[bucket]

    def _slots(self, network: int, plen: int) -> range:
        first = network >> (self.width - self.split)
        return range(first, first + (1 << (self.split - plen)))

    def _dense_add(self, network: int, plen: int, route: Route) -> None:
        assert self.dense is not None
        dense, dense_len = self.dense, self.dense_len
        for slot in self._slots(network, plen):
            if dense_len[slot] <= plen:
                dense[slot] = route
                dense_len[slot] = plen

    def _dense_remove(self, network: int, plen: int) -> None:
        # Every slot the removed prefix owned falls back to the same covering prefix: the
        # longest short prefix strictly shorter than `plen` that contains `network`.
        assert self.dense is not None
        fallback_len = -1
        fallback: Route | None = None
        for shorter in self.short_lens:
            if shorter < plen:
                fallback = self.by_len[shorter].get(network & self.masks[shorter])
                if fallback is not None:
                    fallback_len = shorter
                    break
        dense, dense_len = self.dense, self.dense_len
        for slot in self._slots(network, plen):
            if dense_len[slot] == plen:
                dense[slot] = fallback
                dense_len[slot] = fallback_len

    def _dense_rebuild(self) -> None:
        assert self.dense is not None
        size = 1 << self.split
        dense: list[Route | None] = [None] * size
        dense_len = [-1] * size
        shift = self.width - self.split
        for plen in sorted(self.short_lens):  # shortest first: longer ones overwrite
            span = 1 << (self.split - plen)
            for network, route in self.by_len[plen].items():
                first = network >> shift
                dense[first : first + span] = [route] * span
                dense_len[first : first + span] = [plen] * span
        self.dense = dense
        self.dense_len = dense_len

    # --- iteration ----------------------------------------------------------------------

    def iter_by_length(self) -> Iterator[tuple[int, int, Route]]:
        for plen, table in enumerate(self.by_len):
            for network, route in table.items():
                yield network, plen, route

    def iter_sorted(self) -> Iterator[Route]:
        keyed = [(network, plen) for network, plen, _ in self.iter_by_length()]
        keyed.sort()
        by_len = self.by_len
        for network, plen in keyed:
            yield by_len[plen][network]


def _negate(value: int) -> int:
    return -value


def _as_network(prefix: Prefix) -> IPv4Network | IPv6Network:
    if isinstance(prefix, str):
        return ipaddress.ip_network(prefix)
    return prefix


class Fib:
    """The routing table of one router: IPv4 and IPv6, longest prefix match.

    `generation` is bumped on every change that alters what a lookup can return (an add that
    replaces a route with an equal one is not a change; `add_many` bumps once).
    """

    def __init__(self) -> None:
        self.generation = 0
        self._v4 = _PrefixTable(32, 16, dense=True)
        self._v6 = _PrefixTable(128, 32, dense=False)

    def _table(self, version: int) -> _PrefixTable:
        return self._v4 if version == 4 else self._v6

    # --- changes ------------------------------------------------------------------------

    def add(self, route: Route) -> None:
        """Add `route`, replacing any route with the same prefix."""
        prefix = route.prefix
        table = self._table(prefix.version)
        old = table.insert(int(prefix.network_address), prefix.prefixlen, route)
        if old != route:
            self.generation += 1

    def add_many(self, routes: Iterable[Route]) -> None:
        """Add many routes at once (each replaces its prefix); one generation bump."""
        v4: list[tuple[int, int, Route]] = []
        v6: list[tuple[int, int, Route]] = []
        for route in routes:
            prefix = route.prefix
            item = (int(prefix.network_address), prefix.prefixlen, route)
            (v4 if prefix.version == 4 else v6).append(item)
        changed = self._v4.insert_bulk(v4) if v4 else False
        if v6 and self._v6.insert_bulk(v6):
            changed = True
        if changed:
            self.generation += 1

    def delete(self, prefix: Prefix) -> Route | None:
        """Remove the route for exactly `prefix`; returns it, or None if there was none."""
        network = _as_network(prefix)
        table = self._table(network.version)
        old = table.remove(int(network.network_address), network.prefixlen)
        if old is not None:
            self.generation += 1
        return old

    def clear(self) -> None:
        if len(self):
            self.generation += 1
        self._v4 = _PrefixTable(32, 16, dense=True)
        self._v6 = _PrefixTable(128, 32, dense=False)

    # --- queries ------------------------------------------------------------------------

    def lookup_v4(self, addr: int) -> Route | None:
        """Longest prefix match of an IPv4 address given as an int."""
        return self._v4.lookup(addr)

    def lookup_v6(self, addr: int) -> Route | None:
        """Longest prefix match of an IPv6 address given as an int."""
        return self._v6.lookup(addr)

    def lookup(self, addr: IPv4Address | IPv6Address) -> Route | None:
        """Longest prefix match of an address object."""
        return self._table(addr.version).lookup(int(addr))

    def get(self, prefix: Prefix) -> Route | None:
        """The route for exactly `prefix` (no longest-prefix match)."""
        network = _as_network(prefix)
        return self._table(network.version).get(int(network.network_address), network.prefixlen)

    def routes(self) -> Iterator[Route]:
        """Every route, IPv4 first, each family sorted by (network, prefix length)."""
        yield from self._v4.iter_sorted()
        yield from self._v6.iter_sorted()

    def iter_v4(self) -> Iterator[tuple[int, int, Route]]:
        """IPv4 routes as (network as int, prefix length, route), shortest prefixes first.

        The order a DIR-24-8 builder wants: writing each prefix over its range in this order
        leaves every slot holding its longest match. Cheap (no sorting, no objects made).
        """
        return self._v4.iter_by_length()

    def iter_v6(self) -> Iterator[tuple[int, int, Route]]:
        """IPv6 routes as (network as int, prefix length, route), shortest prefixes first."""
        return self._v6.iter_by_length()

    def __len__(self) -> int:
        return self._v4.count + self._v6.count

    def __contains__(self, prefix: object) -> bool:
        if not isinstance(prefix, IPv4Network | IPv6Network | str):
            return False
        return self.get(prefix) is not None
