"""Automatic addressing: subnets and addresses for the links whose interfaces have none.

```yaml
addressing: auto                  # every link; or a mapping that overrides the pools:
addressing: {ipv4: 198.51.100.0/24, ipv6: "2001:db8:1::/48", p2p_prefix: 31}
```

A link is addressed automatically when the file has `addressing:`, or when one of its
endpoints is a bare node name (`[r1, r2]`: its interface is generated too). For each family:
if an endpoint already has an address of that family, the others get free addresses of the
same subnet; otherwise the link gets a subnet from the pool: IPv4 a /30 (or /31 with
`p2p_prefix: 31`) per point-to-point link and the smallest prefix that fits per LAN segment,
IPv6 a /64 per link. Endpoints get the subnet's first addresses in link order. The pools are,
by default, the documentation ranges (198.51.100.0/24, 203.0.113.0/24 without the management
range 203.0.113.248/29, 192.0.2.0/24; 2001:db8::/32) minus every subnet the file already
uses; `ipv4: false` (or `ipv6: false`) assigns none of that family. LAN segments are placed
first (largest first) so that the small point-to-point blocks do not fragment the pool.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network

from orchestrate.topology.model import (
    MANAGEMENT_NETWORK,
    IPNetwork,
    Link,
    Topology,
)

DEFAULT_IPV4_POOLS: tuple[IPv4Network, ...] = (
    IPv4Network("198.51.100.0/24"), IPv4Network("203.0.113.0/24"), IPv4Network("192.0.2.0/24"),
)
DEFAULT_IPV6_POOLS: tuple[IPv6Network, ...] = (IPv6Network("2001:db8::/32"),)
IPV6_LINK_PREFIX = 64


@dataclass(slots=True)
class AddressingSpec:
    """The `addressing:` section: which pools, and whether every link is addressed."""

    every_link: bool = False
    """`addressing:` is present: address every link, not only those with generated names."""
    ipv4: list[IPv4Network] = field(default_factory=lambda: list(DEFAULT_IPV4_POOLS))
    ipv6: list[IPv6Network] = field(default_factory=lambda: list(DEFAULT_IPV6_POOLS))
    p2p_prefix: int = 30


class PoolExhausted(Exception):
    """No free block of the requested size is left."""


class Pool:
    """Free address space of one family as sorted [start, end] integer intervals."""

    def __init__(self, networks: Iterable[IPNetwork], used: Iterable[IPNetwork]) -> None:
        # in the order given (the first pool is used first), not in address order
        self.free: list[tuple[int, int]] = [
            (int(n.network_address), int(n.broadcast_address)) for n in networks]
        for net in used:
            self.take(int(net.network_address), int(net.broadcast_address))

    def take(self, start: int, end: int) -> None:
        """Remove [start, end] from the free space."""
        out: list[tuple[int, int]] = []
        for lo, hi in self.free:
            if hi < start or lo > end:
                out.append((lo, hi))
                continue
            if lo < start:
                out.append((lo, start - 1))
            if hi > end:
                out.append((end + 1, hi))
        self.free = out

    def allocate(self, size_bits: int) -> int:
        """The lowest free aligned block of 2**size_bits addresses; its first address."""
        size = 1 << size_bits
        for lo, hi in self.free:
            start = (lo + size - 1) & ~(size - 1)
            if start + size - 1 <= hi:
                self.take(start, start + size - 1)
                return start
        raise PoolExhausted


def ipv4_prefix_for(count: int, p2p_prefix: int) -> int:
    """The prefix length for `count` addresses on one link: /30 (/31) for two, else a fit."""
    if count <= 2:
        return p2p_prefix
    prefix = 30
    while (1 << (32 - prefix)) - 2 < count:
        prefix -= 1
    return prefix


@dataclass(frozen=True, slots=True)
class Exhausted:
    """A link no subnet could be found for: placed at the link by the validator."""

    link: int
    family: int
    prefix: int


def assign(topology: Topology, spec: AddressingSpec, auto_links: set[int]) -> list[Exhausted]:
    """Give the interfaces on `auto_links` the addresses they lack; return what ran out."""
    used: dict[int, list[IPNetwork]] = {4: [], 6: []}
    for node in topology.nodes.values():
        for iface in node.interfaces:
            for addr in iface.addresses:
                if not addr.ip.is_link_local:
                    used[addr.version].append(addr.network)
    pools = {
        4: Pool(spec.ipv4, [*used[4], MANAGEMENT_NETWORK]),
        6: Pool(spec.ipv6, used[6]),
    }
    enabled = {4: bool(spec.ipv4), 6: bool(spec.ipv6)}
    order = sorted(auto_links, key=lambda i: (-len(topology.links[i].endpoints), i))
    problems: list[Exhausted] = []
    for index in order:
        link = topology.links[index]
        for family in (4, 6):
            if not enabled[family]:
                continue
            prefix = ipv4_prefix_for(len(link.endpoints), spec.p2p_prefix) if family == 4 \
                else IPV6_LINK_PREFIX
            if not _address_link(topology, link, family, prefix, pools[family]):
                problems.append(Exhausted(index, family, prefix))
    return problems


def _address_link(topology: Topology, link: Link, family: int, prefix: int, pool: Pool) -> bool:
    ifaces = [topology.nodes[e.node].interface(e.ifname) for e in link.endpoints
              if e.node in topology.nodes]
    present = [a for i in ifaces if i is not None for a in i.addresses
               if a.version == family and not a.ip.is_link_local]
    if present:
        network: IPNetwork = present[0].network
    else:
        bits = (32 if family == 4 else 128) - prefix
        try:
            start = pool.allocate(bits)
        except PoolExhausted:
            return False
        network = ipaddress.ip_network((start, prefix))
    taken = {a.ip for a in present}
    hosts = _host_addresses(network)
    for iface in ifaces:
        if iface is None or any(a.version == family and not a.ip.is_link_local
                                for a in iface.addresses):
            continue
        for ip in hosts:
            if ip not in taken:
                taken.add(ip)
                iface.addresses.append(ipaddress.ip_interface((ip, network.prefixlen)))
                break
        else:
            return False
    return True


def _host_addresses(network: IPNetwork) -> Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Usable addresses of a subnet in order, lazily (a /64 has 2**64)."""
    first = int(network.network_address)
    last = int(network.broadcast_address)
    if network.version == 4 and network.prefixlen < 31:
        first, last = first + 1, last - 1
    elif network.version == 6:
        first += 1  # ::0 is the subnet-router anycast address (RFC 4291 §2.6.1)
    if network.version == 4:
        return (ipaddress.IPv4Address(n) for n in range(first, last + 1))
    return (ipaddress.IPv6Address(n) for n in range(first, last + 1))
