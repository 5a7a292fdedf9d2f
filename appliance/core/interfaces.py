"""The router's interfaces: configured addresses plus what the packet path needs precomputed.

Addresses are kept twice: as `ipaddress` objects for the control plane (`routerctl show
interfaces`, connected routes) and as packed bytes in sets/dicts so that the per-packet path
only does `bytes in set` tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv6Address, IPv6Interface

from appliance.packet.ethernet import BROADCAST_MAC, ipv4_multicast_mac, ipv6_multicast_mac
from appliance.packet.ipv6 import (
    ALL_NODES,
    ALL_ROUTERS,
    link_local_from_mac,
    solicited_node_multicast,
)


@dataclass(eq=False)
class Interface:
    """One data interface of the router."""

    ifindex: int
    name: str
    mac: bytes
    mtu: int
    ipv4: list[IPv4Interface] = field(default_factory=list)
    ipv6: list[IPv6Interface] = field(default_factory=list)
    """Link-local first (derived from the MAC unless configured), then the configured ones."""

    # --- derived, rebuilt by refresh() ---------------------------------------------------
    v4_addrs: dict[bytes, IPv4Interface] = field(default_factory=dict)
    """Own IPv4 addresses, packed."""
    v4_nets: list[tuple[int, int, bytes]] = field(default_factory=list)
    """(network as int, mask as int, own address) per IPv4 address: on-link tests."""
    v4_broadcasts: set[bytes] = field(default_factory=set)
    """Directed broadcast addresses of the connected subnets (RFC 1812 §5.3.5.2)."""
    v6_addrs: dict[bytes, IPv6Interface] = field(default_factory=dict)
    """Own IPv6 addresses (link-local included), packed."""
    v6_nets: list[tuple[int, int, bytes]] = field(default_factory=list)
    link_local: bytes = b""
    v6_groups: set[bytes] = field(default_factory=set)
    """Multicast groups joined: all-nodes, all-routers, solicited-node of each address."""
    l2_groups: set[bytes] = field(default_factory=set)
    """Link-layer group addresses accepted: broadcast and the MACs of `v6_groups`."""

    # --- link state, set by Router.set_link ------------------------------------------------
    up: bool = True
    """Operationally up (administratively up and carrier). While down, the routes out of the
    interface are withdrawn from forwarding (see Router.set_link)."""
    link_changes: int = 0
    """Up/down transitions seen since start (Linux IFLA_CARRIER_CHANGES, roughly)."""
    changed_at: float | None = None
    """`now` of the last transition (None: never changed since start)."""

    def refresh(self) -> None:
        """Recompute the packed views after `ipv4`/`ipv6` changed."""
        self.v4_addrs = {a.ip.packed: a for a in self.ipv4}
        self.v4_nets = [
            (int(a.network.network_address), int(a.network.netmask), a.ip.packed)
            for a in self.ipv4
        ]
        self.v4_broadcasts = {
            a.network.broadcast_address.packed for a in self.ipv4 if a.network.prefixlen < 31
        }
        self.v6_addrs = {a.ip.packed: a for a in self.ipv6}
        self.v6_nets = [
            (int(a.network.network_address), int(a.network.netmask), a.ip.packed)
            for a in self.ipv6
            if not a.ip.is_link_local
        ]
        self.link_local = next((a.ip.packed for a in self.ipv6 if a.ip.is_link_local), b"")
        self.v6_groups = {ALL_NODES, ALL_ROUTERS}
        self.v6_groups.update(solicited_node_multicast(a) for a in self.v6_addrs)
        self.l2_groups = {BROADCAST_MAC}
        if self.ipv4:
            self.l2_groups.add(ipv4_multicast_mac(b"\xe0\x00\x00\x01"))  # all-hosts
        self.l2_groups.update(ipv6_multicast_mac(g) for g in self.v6_groups)

    def v4_source_for(self, dst: bytes) -> bytes | None:
        """Our IPv4 address on the subnet of `dst`, else the first one, else None."""
        d = int.from_bytes(dst, "big")
        for net, mask, own in self.v4_nets:
            if d & mask == net:
                return own
        return self.ipv4[0].ip.packed if self.ipv4 else None

    def v4_on_link(self, addr: bytes) -> bool:
        """True when `addr` is inside one of this interface's IPv4 subnets."""
        a = int.from_bytes(addr, "big")
        return any(a & mask == net for net, mask, _ in self.v4_nets)

    def v6_source_for(self, dst: bytes) -> bytes:
        """Our IPv6 address to use towards `dst`: link-local for link-local/multicast-link
        destinations, else a global one on the same prefix, else the first global, else the
        link-local (RFC 6724 rule 2, scope, in its simplest form)."""
        if (dst[0] == 0xFE and dst[1] & 0xC0 == 0x80) or (dst[0] == 0xFF and dst[1] & 0x0F <= 2):
            return self.link_local
        d = int.from_bytes(dst, "big")
        for net, mask, own in self.v6_nets:
            if d & mask == net:
                return own
        if self.v6_nets:
            return self.v6_nets[0][2]
        return self.link_local

    def v6_on_link(self, addr: bytes) -> bool:
        if addr[0] == 0xFE and addr[1] & 0xC0 == 0x80:
            return True
        a = int.from_bytes(addr, "big")
        return any(a & mask == net for net, mask, _ in self.v6_nets)


def make_interface(
    ifindex: int,
    name: str,
    mac: bytes,
    mtu: int,
    addresses: list[IPv4Interface | IPv6Interface],
    link_local: IPv6Address | None = None,
) -> Interface:
    """An Interface with its link-local address (configured, or EUI-64 from `mac`)."""
    ll = IPv6Interface(f"{link_local or IPv6Address(link_local_from_mac(mac))}/64")
    v4 = [a for a in addresses if isinstance(a, IPv4Interface)]
    v6 = [ll] + [a for a in addresses if isinstance(a, IPv6Interface) and a.ip != ll.ip]
    iface = Interface(ifindex, name, bytes(mac), mtu, v4, v6)
    iface.refresh()
    return iface
