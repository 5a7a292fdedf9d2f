"""The routing table: longest prefix match for IPv4 and IPv6.

The source of truth, per family, is `by_len[L]`: a dict of every prefix of length L keyed by
its network address as an int (host bits zero). Exact-match add, replace and delete are one
dict operation there. Lookups use a structure kept beside it:

- IPv4 (`_V4Table`): a 16-8-8 multibit trie of Python lists (DIR-16 for lengths 0..16, one
  256-slot list per /16 for 17..24, one 256-slot leaf per /24 for 25..32). A lookup is one
  dict get and at most three list indexes, whatever the table size. `add_many` fills the
  dicts and rebuilds the trie with slice assignments, so 1M routes load in seconds.
- IPv6 (`_V6Table`): per-length probing, narrowed by the lengths present inside each /32.

The fast path (C, DIR-24-8 for IPv4) takes its snapshot from `Fib.iter_v4()` / `iter_v6()`,
which yield `(network: int, prefixlen: int, route)` ordered by prefix length, shortest first:
writing each prefix over its range in that order leaves every slot holding its longest match.
`Fib.generation` tells it when to rebuild.
"""

from __future__ import annotations

import enum
import gc
import ipaddress
from bisect import insort
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

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


class _Prefixes:
    """What both families share: the exact-match dicts, the source of truth."""

    __slots__ = ("by_len", "count", "masks", "short_lens", "split", "width")

    def __init__(self, width: int, split: int) -> None:
        self.width = width
        self.split = split
        all_ones = (1 << width) - 1
        # masks[L] keeps the top L bits of an address
        self.masks = [all_ones ^ (all_ones >> plen) for plen in range(width + 1)]
        self.by_len: list[dict[int, Route]] = [{} for _ in range(width + 1)]
        self.count = 0
        self.short_lens: list[int] = []  # short lengths present, longest first

    def get(self, network: int, plen: int) -> Route | None:
        return self.by_len[plen].get(network)

    def covering(self, network: int, below: int, floor: int) -> Route | None:
        """The longest prefix containing `network` with a length in [floor, below)."""
        by_len, masks = self.by_len, self.masks
        for plen in range(below - 1, floor - 1, -1):
            if by_len[plen]:
                route = by_len[plen].get(network & masks[plen])
                if route is not None:
                    return route
        return None

    def _put(self, network: int, plen: int, route: Route) -> Route | None:
        """Store in the exact-match dicts; returns the replaced route."""
        table = self.by_len[plen]
        old = table.get(network)
        table[network] = route
        if old is None:
            self.count += 1
            if plen <= self.split and len(table) == 1:
                insort(self.short_lens, plen, key=_negate)
        return old

    def _pop(self, network: int, plen: int) -> Route | None:
        table = self.by_len[plen]
        old = table.pop(network, None)
        if old is not None:
            self.count -= 1
            if plen <= self.split and not table:
                self.short_lens.remove(plen)
        return old

    def iter_by_length(self) -> Iterator[tuple[int, int, Route]]:
        for plen, table in enumerate(self.by_len):
            for network, route in table.items():
                yield network, plen, route

    def iter_sorted(self) -> Iterator[Route]:
        # One int per prefix, (network << 8) | plen, sorts in (network, plen) order and far
        # faster than tuples would.
        keys: list[int] = []
        for plen, table in enumerate(self.by_len):
            if table:
                keys.extend([(network << 8) | plen for network in table])
        keys.sort()
        by_len = self.by_len
        for key in keys:
            yield by_len[key & 255][key >> 8]


# Bulk loads bigger than this rebuild the lookup structures instead of updating them.
_REBUILD_THRESHOLD = 64


class _V4Table(_Prefixes):
    """IPv4: a 16-8-8 multibit trie over the exact-match dicts.

    - `dense[a >> 16]`: the best route of length 0..16 for that /16 (DIR-16 expansion);
      `dense_len` holds its length (-1 for none).
    - `mid[a >> 16]`, only for /16s that hold longer prefixes: 256 slots, one per /24, each
      None, the best route of length 17..24 for that /24, or a leaf list.
    - a leaf list: 256 slots, one per address, each None or the best route of length 25..32,
      then at index 256 the best route of length 17..24 for the /24 (what the slot held
      before the leaf replaced it).

    A lookup is at most one dict get and three list indexes whatever the table size. Each
    slot is written only while adding or deleting a prefix that covers it.
    """

    __slots__ = ("dense", "dense_len", "mid", "mid_count")

    def __init__(self) -> None:
        super().__init__(32, 16)
        self.dense: list[Route | None] = [None] * 65536
        self.dense_len = [-1] * 65536
        self.mid: dict[int, list[Any]] = {}
        # /16 -> prefixes longer than 16 in it; None until needed after a rebuild
        self.mid_count: dict[int, int] | None = {}

    def lookup(self, addr: int) -> Route | None:
        sub = self.mid.get(addr >> 16)
        if sub is not None:
            slot = sub[(addr >> 8) & 255]
            if slot is not None:
                if slot.__class__ is not list:
                    return slot
                route = slot[addr & 255]
                if route is not None:
                    return route
                route = slot[256]
                if route is not None:
                    return route
        return self.dense[addr >> 16]

    # --- changes ------------------------------------------------------------------------

    def insert(self, network: int, plen: int, route: Route) -> Route | None:
        counts = self._mid_counts() if plen > 16 else {}  # counted before the dicts change
        old = self._put(network, plen, route)
        if plen <= 16:
            self._dense_add(network, plen, route)
        else:
            if old is None:
                counts[network >> 16] = counts.get(network >> 16, 0) + 1
            self._mid_add(network, plen, route)
        return old

    def insert_bulk(self, items: list[tuple[int, int, Route]]) -> bool:
        short = sum(1 for _, plen, _ in items if plen <= 16)
        if len(items) - short <= _REBUILD_THRESHOLD and short <= _REBUILD_THRESHOLD:
            changed = False
            for network, plen, route in items:
                if self.insert(network, plen, route) != route:
                    changed = True
            return changed
        changed = False
        put = self._put
        for network, plen, route in items:
            if put(network, plen, route) != route:
                changed = True
        if short:
            self._dense_rebuild()
        if len(items) > short:
            self._mid_rebuild()
        return changed

    def remove(self, network: int, plen: int) -> Route | None:
        counts = self._mid_counts() if plen > 16 else {}  # counted before the dicts change
        old = self._pop(network, plen)
        if old is None:
            return None
        if plen <= 16:
            self._dense_remove(network, plen, old)
        else:
            self._mid_remove(network, plen, old)
            bucket = network >> 16
            left = counts[bucket] - 1
            if left:
                counts[bucket] = left
            else:
                del counts[bucket]
                del self.mid[bucket]  # nothing longer than /16 left in it
        return old

    def _mid_counts(self) -> dict[int, int]:
        if self.mid_count is None:
            counts: Counter[int] = Counter()
            for plen in range(17, 33):
                counts.update(network >> 16 for network in self.by_len[plen])
            self.mid_count = dict(counts)
        return self.mid_count

    # --- the DIR-16 level ---------------------------------------------------------------

    def _dense_add(self, network: int, plen: int, route: Route) -> None:
        dense, dense_len = self.dense, self.dense_len
        first = network >> 16
        for slot in range(first, first + (1 << (16 - plen))):
            if dense_len[slot] <= plen:
                dense[slot] = route
                dense_len[slot] = plen

    def _dense_remove(self, network: int, plen: int, old: Route) -> None:
        # Every slot the removed prefix owned falls back to the same covering prefix.
        fallback = self.covering(network, plen, 0)
        fallback_len = -1 if fallback is None else fallback.prefix.prefixlen
        dense, dense_len = self.dense, self.dense_len
        first = network >> 16
        for slot in range(first, first + (1 << (16 - plen))):
            if dense[slot] is old:
                dense[slot] = fallback
                dense_len[slot] = fallback_len

    def _dense_rebuild(self) -> None:
        dense: list[Route | None] = [None] * 65536
        dense_len = [-1] * 65536
        for plen in range(17):  # shortest first: longer prefixes overwrite shorter ones
            span = 1 << (16 - plen)
            for network, route in self.by_len[plen].items():
                first = network >> 16
                dense[first : first + span] = [route] * span
                dense_len[first : first + span] = [plen] * span
        self.dense = dense
        self.dense_len = dense_len

    # --- the /24 and leaf levels ----------------------------------------------------------

    def _mid_add(self, network: int, plen: int, route: Route) -> None:
        bucket = network >> 16
        sub = self.mid.get(bucket)
        if sub is None:
            sub = self.mid[bucket] = [None] * 256
        index = (network >> 8) & 255
        if plen <= 24:
            for at in range(index, index + (1 << (24 - plen))):
                slot = sub[at]
                if slot.__class__ is list:
                    current = slot[256]
                    if current is None or current.prefix.prefixlen <= plen:
                        slot[256] = route
                elif slot is None or slot.prefix.prefixlen <= plen:
                    sub[at] = route
            return
        leaf = sub[index]
        if leaf.__class__ is not list:
            leaf = [None] * 256
            leaf.append(sub[index])
            sub[index] = leaf
        first = network & 255
        for host in range(first, first + (1 << (32 - plen))):
            current = leaf[host]
            if current is None or current.prefix.prefixlen <= plen:
                leaf[host] = route

    def _mid_remove(self, network: int, plen: int, old: Route) -> None:
        sub = self.mid[network >> 16]
        index = (network >> 8) & 255
        if plen <= 24:
            fallback = self.covering(network, plen, 17)
            for at in range(index, index + (1 << (24 - plen))):
                slot = sub[at]
                if slot.__class__ is list:
                    if slot[256] is old:
                        slot[256] = fallback
                elif slot is old:
                    sub[at] = fallback
            return
        # None in a leaf means "use slot 256", so the fallback stops at /25.
        fallback = self.covering(network, plen, 25)
        leaf = sub[index]
        first = network & 255
        for host in range(first, first + (1 << (32 - plen))):
            if leaf[host] is old:
                leaf[host] = fallback

    def _mid_rebuild(self) -> None:
        by_len = self.by_len
        mid: dict[int, list[Any]] = {}
        for plen in range(17, 25):  # shortest first: longer prefixes overwrite shorter ones
            span = 1 << (24 - plen)
            for network, route in by_len[plen].items():
                sub = mid.get(network >> 16)
                if sub is None:
                    sub = mid[network >> 16] = [None] * 256
                index = (network >> 8) & 255
                if span == 1:
                    sub[index] = route
                else:
                    sub[index : index + span] = [route] * span
        for plen in range(25, 33):
            span = 1 << (32 - plen)
            for network, route in by_len[plen].items():
                sub = mid.get(network >> 16)
                if sub is None:
                    sub = mid[network >> 16] = [None] * 256
                index = (network >> 8) & 255
                leaf = sub[index]
                if leaf.__class__ is not list:
                    leaf = [None] * 256
                    leaf.append(sub[index])
                    sub[index] = leaf
                first = network & 255
                if span == 1:
                    leaf[first] = route
                else:
                    leaf[first : first + span] = [route] * span
        self.mid = mid
        self.mid_count = None  # counted again when a delete first needs it


class _V6Table(_Prefixes):
    """IPv6: per-length probing, narrowed by /32 buckets.

    `long_lens[a >> 96]` lists, longest first, the lengths of the prefixes longer than /32
    that lie inside that /32 (reference-counted per (bucket, length) in `long_count`); a
    lookup probes only those, then the short lengths present (few in practice: /0, /16,
    /29, /32). A 2**32-slot expansion like IPv4's DIR-16 is out of the question here.
    """

    __slots__ = ("long_count", "long_lens")

    def __init__(self) -> None:
        super().__init__(128, 32)
        self.long_lens: dict[int, list[int]] = {}
        self.long_count: dict[tuple[int, int], int] = {}

    def lookup(self, addr: int) -> Route | None:
        by_len = self.by_len
        masks = self.masks
        lens = self.long_lens.get(addr >> 96)
        if lens is not None:
            for plen in lens:
                route = by_len[plen].get(addr & masks[plen])
                if route is not None:
                    return route
        for plen in self.short_lens:
            route = by_len[plen].get(addr & masks[plen])
            if route is not None:
                return route
        return None

    def insert(self, network: int, plen: int, route: Route) -> Route | None:
        old = self._put(network, plen, route)
        if old is None and plen > 32:
            key = (network >> 96, plen)
            refs = self.long_count.get(key, 0)
            self.long_count[key] = refs + 1
            if refs == 0:
                lens = self.long_lens.setdefault(key[0], [])
                insort(lens, plen, key=_negate)
        return old

    def insert_bulk(self, items: list[tuple[int, int, Route]]) -> bool:
        changed = False
        for network, plen, route in items:
            if self.insert(network, plen, route) != route:
                changed = True
        return changed

    def remove(self, network: int, plen: int) -> Route | None:
        old = self._pop(network, plen)
        if old is not None and plen > 32:
            key = (network >> 96, plen)
            refs = self.long_count[key] - 1
            if refs:
                self.long_count[key] = refs
            else:
                del self.long_count[key]
                lens = self.long_lens[key[0]]
                lens.remove(plen)
                if not lens:
                    del self.long_lens[key[0]]
        return old


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
        self._v4 = _V4Table()
        self._v6 = _V6Table()

    def _table(self, version: int) -> _V4Table | _V6Table:
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
        """Add many routes at once (each replaces its prefix); one generation bump.

        The cyclic garbage collector is paused meanwhile: a big load allocates millions of
        containers, none of them garbage, and each collection pass would walk all of them
        (a third of the time of a 1M-route load).
        """
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._add_many(routes)
        finally:
            if collecting:
                gc.enable()

    def _add_many(self, routes: Iterable[Route]) -> None:
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
        self._v4 = _V4Table()
        self._v6 = _V6Table()

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
        It walks the live table: finish (or copy) it before changing the Fib.
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
