"""The router core: frames and `now` in, actions out (sans-IO, h11 style).

Read top to bottom, this is the path of a frame:

1. `receive` — Ethernet demux: our MAC, broadcast, or a multicast group we joined.
2. `_arp_input` — answer requests for our addresses, learn by the RFC 826 merge rule.
3. `_ip4_input` — BSD `ip_input` verification order (seed 003, figure 8.12; RFC 1812
   §5.2.2), then "to forward or not to forward" (figure 8.14): our address or a broadcast ->
   `_ip4_local`; otherwise `_ip4_forward` (BSD `ip_forward`, figures 8.17-8.20): TTL, route,
   redirect rules, MTU, TTL decrement with the RFC 1624 incremental checksum, neighbor.
4. `_ip6_input` — the same for IPv6 (RFC 8200, RFC 4443), with Neighbor Discovery
   (RFC 4861) in `_nd_solicit_input` / `_nd_advert_input` and ND redirects.
5. Egress goes through `_emit4` / `_emit6`: the neighbor cache gives a MAC or queues the
   packet on an INCOMPLETE entry (illumos `nce_queue_mp`, seed 000); its events become ARP
   requests / neighbor solicitations, released packets (`nce_resolv_ok`) and, when resolution
   fails, ICMP host / address unreachable for each queued packet.

Results are values. `Transmit(ifindex, frame)` sends a frame; `Drop(reason)` ends a frame
that the router refused; `Deliver(reason)` ends a frame the router consumed itself (an ARP
reply it learned from, an echo reply addressed to it); `Hold(reason)` says the frame is kept
(queued on an unresolved neighbor, or a fragment waiting for its datagram). The reason of
each is a `Stats` key that has already been bumped, so every frame is accounted for.

Addresses on the packet path are packed bytes; routes are looked up with ints (`Fib.lookup_v4`
/ `lookup_v6`); no `ipaddress` objects are created per packet.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_network,
)

from appliance.config import ConfigError, NeighborConfig, RouteConfig, RouterConfig
from appliance.core import fragment, icmp_error
from appliance.core.fib import Fib, Route, RouteOrigin, RouteType
from appliance.core.interfaces import Interface, make_interface
from appliance.core.neighbor import (
    NeighborCache,
    NeighborTimers,
    QueueOverflow,
    Release,
    ResolutionFailed,
    Solicit,
)
from appliance.core.ratelimit import TokenBucket
from appliance.core.stats import Stats
from appliance.core.sysctl import Sysctl
from appliance.core.trace import Tracer, TraceRecord
from appliance.packet.checksum import (
    incremental_update,
    internet_checksum,
    ones_complement_sum,
    pseudo_header_v6,
)
from appliance.packet.errors import PacketError
from appliance.packet.ethernet import BROADCAST_MAC, ipv6_multicast_mac
from appliance.packet.icmp import frag_needed_rest, param_problem_rest
from appliance.packet.ipv6 import ALL_NODES, solicited_node_multicast, walk_extension_headers
from appliance.packet.nd import (
    NdOption,
    NdOptionType,
    NeighborAdvertisement,
    NeighborSolicitation,
    Redirect,
    redirected_header_option,
    source_ll,
    target_ll,
)

__all__ = ["Action", "Deliver", "Drop", "Hold", "LinkChange", "LinkInfo", "Router", "Transmit"]


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


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What the I/O layer knows about a data interface."""

    ifindex: int
    mac: bytes
    mtu: int = 1500


@dataclass(frozen=True, slots=True)
class LinkChange:
    """What `Router.set_link` did (for the daemon's log line)."""

    interface: str
    up: bool
    changed: bool
    """False when the interface was already in that state (nothing done)."""
    routes: int
    """Routes withdrawn from forwarding (down) or put back (up)."""
    neighbors: int
    """Dynamic neighbor entries flushed (down)."""
    dropped: int
    """Packets that were queued on those entries, dropped and counted (arp/nd.dropped)."""
    actions: list[Action]
    """Frames to send: the announcements of an interface coming back up."""


# Ethernet types as the two bytes on the wire.
_ET_IP4 = b"\x08\x00"
_ET_IP6 = b"\x86\xdd"
_ET_ARP = b"\x08\x06"

_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6_FIXED = struct.Struct("!IHBB16s16s")
_ARP_ETH_IP4 = b"\x00\x01\x08\x00\x06\x04"  # htype 1, ptype 0x0800, hlen 6, plen 4

_PROTO_ICMP = 1
_PROTO_TCP = 6
_PROTO_UDP = 17
_PROTO_ICMP6 = 58
_NH_HOPOPTS = 0
_NH_ROUTING = 43
_NH_FRAGMENT = 44
_NH_DSTOPTS = 60

_IP4_DF = 0x4000
_IP4_MF = 0x2000
_IP4_OFFMASK = 0x1FFF

# ICMP types/codes used here (RFC 792, RFC 1812, RFC 4443, RFC 4861).
_ICMP_ECHOREPLY = 0
_ICMP_UNREACH = 3
_ICMP_REDIRECT = 5
_ICMP_ECHO = 8
_ICMP_TIMXCEED = 11
_ICMP_PARAMPROB = 12
_UNREACH_NET = 0
_UNREACH_HOST = 1
_UNREACH_PROTOCOL = 2
_UNREACH_PORT = 3
_UNREACH_NEEDFRAG = 4
_UNREACH_SRCFAIL = 5
_UNREACH_ADMIN = 13
_ICMP6_UNREACH = 1
_ICMP6_PACKET_TOO_BIG = 2
_ICMP6_TIME_EXCEEDED = 3
_ICMP6_PARAM_PROB = 4
_ICMP6_ECHO = 128
_ICMP6_ECHOREPLY = 129
_ICMP6_RS = 133
_ICMP6_RA = 134
_ICMP6_NS = 135
_ICMP6_NA = 136
_ICMP6_REDIRECT = 137
_UNREACH6_NOROUTE = 0
_UNREACH6_ADMIN = 1
_UNREACH6_BEYONDSCOPE = 2
_UNREACH6_ADDR = 3
_UNREACH6_PORT = 4
_PARAMPROB6_HEADER = 0
_PARAMPROB6_NEXTHEADER = 1
_PARAMPROB6_OPTION = 2

# What the two high bits of an unrecognised IPv6 option type ask for (RFC 8200 §4.2), and a
# malformed option list.
_OPT_SKIP = 0
_OPT_DISCARD = 1
_OPT_REPORT = 2
_OPT_REPORT_UNICAST = 3
_OPT_MALFORMED = -1

_ND_HOP_LIMIT = 255  # RFC 4861 §7.1: ND messages are sent and accepted with hop limit 255
_ZERO4 = b"\x00" * 4
_ZERO6 = b"\x00" * 16
_ZERO_MAC = b"\x00" * 6

# sysctl names read on the packet path
_FWD4 = "net.inet.ip.forwarding"
_FWD6 = "net.inet6.ip6.forwarding"
_REDIRECT4 = "net.inet.ip.redirect"
_REDIRECT6 = "net.inet6.ip6.redirect"
_TTL = "net.inet.ip.ttl"
_HLIM = "net.inet6.ip6.hlim"
_BMCASTECHO = "net.inet.icmp.bmcastecho"
_ICMPLIM = "net.inet.icmp.icmplim"
_ERRPPS = "net.inet6.icmp6.errppslimit"
_MAXFRAG = "net.inet.ip.maxfragpackets"

_TIMER_KNOBS = {
    "net.link.ether.inet.max_age": ("reachable_time", 1.0),
    "net.link.ether.inet.maxhold": ("queue_len", None),
    "net.inet6.icmp6.nd6_delay": ("delay_first_probe", 1.0),
    "net.inet6.icmp6.nd6_retrans": ("retrans_timer", 0.001),
    "net.inet6.icmp6.nd6_mmaxtries": ("max_multicast_solicit", None),
    "net.inet6.icmp6.nd6_umaxtries": ("max_unicast_solicit", None),
    "net.inet6.icmp6.nd6_gctimer": ("gc_stale", 1.0),
}


def _is_link_local6(addr: bytes) -> bool:
    return addr[0] == 0xFE and addr[1] & 0xC0 == 0x80


class Router:
    """An IPv4/IPv6 router with no sockets and no clock."""

    def __init__(
        self,
        config: RouterConfig,
        links: Mapping[str, LinkInfo],
        *,
        rng: random.Random | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config
        self.hostname = config.hostname
        self.stats = Stats()
        self._counters = self.stats.counters  # direct increments on the busiest lines
        self.sysctl = Sysctl(config.sysctl)
        self.tracer = tracer if tracer is not None else Tracer()
        self.fib = Fib()
        self.neighbors = NeighborCache(NeighborTimers(),
                                       rng if rng is not None else random.Random())
        self._sysctl_v = self.sysctl.values  # the dict itself: one lookup per read
        self._generation = 0
        self._ip_id = 0
        self.interfaces: dict[int, Interface] = {}
        self.by_name: dict[str, Interface] = {}
        self._linkdown: dict[IPv4Network | IPv6Network, Route] = {}
        """Routes out of an interface whose link is down: kept, not used (Router.set_link)."""

        problems: list[str] = []
        for ic in config.interfaces:
            link = links.get(ic.name)
            if link is None:
                problems.append(f"interface {ic.name!r}: no such link")
                continue
            if link.ifindex in self.interfaces:
                problems.append(f"interface {ic.name!r}: ifindex {link.ifindex} is also "
                                f"{self.interfaces[link.ifindex].name!r}")
                continue
            mtu = ic.mtu if ic.mtu is not None else link.mtu
            iface = make_interface(link.ifindex, ic.name, link.mac, mtu, list(ic.addresses),
                                   ic.link_local)
            self.interfaces[link.ifindex] = iface
            self.by_name[ic.name] = iface
        if problems:
            raise ConfigError(problems)
        self._rebuild_local()
        self._add_connected_routes()
        for rc in config.routes:
            try:
                self.add_route(rc)
            except ConfigError as e:
                problems.extend(e.problems)
        if problems:
            raise ConfigError(problems)
        for nc in config.neighbors:
            self.neighbors.add_static(self.by_name[nc.interface].ifindex, nc.address.packed,
                                      nc.mac, 0.0)

        self._bucket4 = TokenBucket(self._sysctl_v[_ICMPLIM])
        self._bucket6 = TokenBucket(self._sysctl_v[_ERRPPS])
        self.reassembly = fragment.Reassembler(max_datagrams=self._sysctl_v[_MAXFRAG])
        for name in _TIMER_KNOBS:
            self._apply_timer(name, self._sysctl_v[name])
        self.sysctl.subscribe(self._sysctl_changed)

    # --- control plane ------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Changes whenever the FIB, the neighbor cache, the interfaces or a forwarding
        sysctl change (each part's counter only grows, so the sum only grows)."""
        return (self._generation + self.fib.generation + self.neighbors.generation
                + self.sysctl.generation)

    def _rebuild_local(self) -> None:
        """Own addresses across interfaces (BSD: the weak host model, figure 8.14)."""
        self.local4: dict[bytes, Interface] = {}
        self.local6: dict[bytes, Interface] = {}
        self._broadcasts4: set[bytes] = set()
        for iface in self.interfaces.values():
            for a in iface.v4_addrs:
                self.local4[a] = iface
            self._broadcasts4 |= iface.v4_broadcasts
            for a in iface.v6_addrs:
                if not _is_link_local6(a):
                    self.local6[a] = iface
        self._generation += 1

    def _add_connected_routes(self) -> None:
        routes: list[Route] = []
        for iface in self.interfaces.values():
            for a4 in iface.ipv4:
                routes.extend(self._address_routes(iface, a4))
            for a6 in iface.ipv6:
                routes.extend(self._address_routes(iface, a6))
        self.fib.add_many(routes)

    @staticmethod
    def _address_routes(iface: Interface, a: IPv4Interface | IPv6Interface) -> list[Route]:
        """The CONNECTED route of an address's subnet and the LOCAL host route of the address
        (none for link-local: fe80::/64 exists on every interface, scoped, never in the FIB)."""
        if isinstance(a, IPv6Interface) and a.ip.is_link_local:
            return []
        host: IPv4Network | IPv6Network = (IPv4Network(f"{a.ip}/32") if a.version == 4
                                           else IPv6Network(f"{a.ip}/128"))
        return [Route(a.network, ifindex=iface.ifindex, origin=RouteOrigin.CONNECTED),
                Route(host, ifindex=iface.ifindex, origin=RouteOrigin.LOCAL)]

    def add_route(self, rc: RouteConfig) -> None:
        """Add (or replace) a static route; raises ConfigError if it cannot be installed.
        Connected and local routes belong to the interfaces and are not replaced. A route out
        of an interface whose link is down is accepted but kept out of forwarding until the
        link comes back (Linux: flagged linkdown)."""
        old = self.fib.get(rc.prefix) or self._linkdown.get(rc.prefix)
        if old is not None and old.origin in (RouteOrigin.CONNECTED, RouteOrigin.LOCAL):
            raise ConfigError([f"route {rc.prefix}: would replace the {old.origin.value} route"])
        route = self._route_from_config(rc)
        self._linkdown.pop(rc.prefix, None)
        out = self.interfaces.get(route.ifindex) if route.ifindex is not None else None
        if out is not None and not out.up:
            self.fib.delete(rc.prefix)  # replaced, as Fib.add would replace it
            self._linkdown[rc.prefix] = route
            self._generation += 1
        else:
            self.fib.add(route)

    def _route_from_config(self, rc: RouteConfig) -> Route:
        where = f"route {rc.prefix}"
        if rc.type == "blackhole":
            return Route(rc.prefix, RouteType.BLACKHOLE)
        if rc.type == "reject":
            return Route(rc.prefix, RouteType.REJECT)
        if rc.via_interface is not None:
            iface = self.by_name.get(rc.via_interface)
            if iface is None:
                raise ConfigError([f"{where}: no interface {rc.via_interface!r}"])
            return Route(rc.prefix, ifindex=iface.ifindex, gateway=rc.via)
        if rc.via is None:
            raise ConfigError([f"{where}: needs a gateway or an interface"])
        # A gateway must be on a connected subnet (no recursive routes), link up or not.
        hit = self._lookup_any(rc.via)
        if hit is None or hit.origin is not RouteOrigin.CONNECTED or hit.ifindex is None:
            raise ConfigError([f"{where}: gateway {rc.via} is not on a connected subnet"])
        return Route(rc.prefix, ifindex=hit.ifindex, gateway=rc.via)

    def _lookup_any(self, addr: IPv4Address | IPv6Address) -> Route | None:
        """Longest prefix match over the FIB and the link-down routes (for configuration
        checks; forwarding only ever looks at the FIB)."""
        hit = self.fib.lookup(addr)
        for route in self._linkdown.values():
            if addr in route.prefix and (hit is None
                                         or route.prefix.prefixlen > hit.prefix.prefixlen):
                hit = route
        return hit

    def delete_route(self, prefix: IPv4Network | IPv6Network | str) -> Route | None:
        """Remove the static route for exactly `prefix`; returns it (None if there was none).
        Connected and local routes go with their interface address: ConfigError."""
        network = ip_network(prefix) if isinstance(prefix, str) else prefix
        old = self.fib.get(network) or self._linkdown.get(network)
        if old is not None and old.origin in (RouteOrigin.CONNECTED, RouteOrigin.LOCAL):
            raise ConfigError([f"route {network}: the {old.origin.value} route stays with its "
                               "interface address"])
        parked = self._linkdown.pop(network, None)
        return self.fib.delete(network) or parked

    def linkdown_routes(self) -> list[Route]:
        """Routes kept but not used because their interface's link is down, sorted like
        `Fib.routes()` (IPv4 first, then by network and prefix length)."""
        return sorted(self._linkdown.values(),
                      key=lambda r: (r.prefix.version, r.prefix.network_address,
                                     r.prefix.prefixlen))

    # --- link state (carrier) -------------------------------------------------------------

    def set_link(self, ifindex: int, up: bool, now: float) -> LinkChange:
        """The link of interface `ifindex` went down (carrier lost or administratively down)
        or came back.

        Down: every route out of the interface (its connected subnets, static routes whose
        next hop is there) leaves the FIB and is kept aside, so lookups fall through to what
        else matches (a shorter prefix, or no route: ICMP net / no-route unreachable), as
        Linux does with `ignore_routes_with_linkdown`; the fast path reloads its FIB on the
        generation change and cannot keep forwarding out of a dead link. The interface's own
        LOCAL host routes stay: its addresses remain the router's (weak host model). Dynamic
        neighbor entries on it are flushed, their queued packets dropped and counted
        (`arp.dropped` / `nd.dropped`); static (permanent) entries stay.

        Up: the routes come back (a route added for the same prefix meanwhile wins) and the
        interface announces itself again as at start (gratuitous ARP, DAD probe, unsolicited
        NA), returned in `LinkChange.actions`."""
        iface = self.interfaces[ifindex]
        if iface.up == up:
            return LinkChange(iface.name, up, False, 0, 0, 0, [])
        iface.up = up
        iface.link_changes += 1
        iface.changed_at = now
        self._generation += 1
        if not up:
            gone = [route for _net, _len, route in [*self.fib.iter_v4(), *self.fib.iter_v6()]
                    if route.ifindex == ifindex and route.origin is not RouteOrigin.LOCAL]
            for route in gone:
                self.fib.delete(route.prefix)
                self._linkdown[route.prefix] = route
            flushed = dropped = 0
            for entry in list(self.neighbors.entries()):
                if entry.ifindex != ifindex or entry.permanent:
                    continue
                flushed += 1
                if entry.queue:
                    dropped += len(entry.queue)
                    self.stats.bump("arp.dropped" if len(entry.addr) == 4 else "nd.dropped",
                                    len(entry.queue))
            self.neighbors.flush(ifindex)
            return LinkChange(iface.name, False, True, len(gone), flushed, dropped, [])
        back = [route for route in self._linkdown.values() if route.ifindex == ifindex]
        for route in back:
            del self._linkdown[route.prefix]
            if self.fib.get(route.prefix) is None:
                self.fib.add(route)
        return LinkChange(iface.name, True, True, len(back), 0, 0, self._announce(iface))

    # --- run-time configuration changes (SIGHUP reload, appliance.control.reload) -----------------

    def add_address(self, ifindex: int, address: IPv4Interface | IPv6Interface, now: float
                    ) -> list[Action]:
        """Add an address to an interface: its connected and local routes (the connected one
        kept aside while the link is down) and, link up, its announcement."""
        iface = self.interfaces[ifindex]
        for other in self.interfaces.values():
            if address.ip.packed in other.v4_addrs or address.ip.packed in other.v6_addrs:
                raise ConfigError([f"address {address.ip} is already on {other.name}"])
        if isinstance(address, IPv4Interface):
            iface.ipv4.append(address)
        else:
            iface.ipv6.append(address)
        iface.refresh()
        self._rebuild_local()
        for route in self._address_routes(iface, address):
            if route.origin is RouteOrigin.CONNECTED and not iface.up:
                self._linkdown[route.prefix] = route
            elif self.fib.get(route.prefix) is None or route.origin is RouteOrigin.LOCAL:
                self.fib.add(route)
        return self._announce(iface, [address]) if iface.up else []

    def remove_address(self, ifindex: int, address: IPv4Interface | IPv6Interface
                       ) -> list[Route]:
        """Remove an address from an interface with its local route, its subnet's connected
        route (unless another address of the interface is on that subnet) and every static
        route whose gateway it made reachable (Linux fib_sync_down_addr); returns those."""
        iface = self.interfaces[ifindex]
        own: list[IPv4Interface] | list[IPv6Interface] = (
            iface.ipv4 if isinstance(address, IPv4Interface) else iface.ipv6)
        if address not in own:
            raise ConfigError([f"{iface.name} has no address {address}"])
        if iface.ipv6 and address == iface.ipv6[0]:
            raise ConfigError([f"{iface.name}: the link-local address {address} stays"])
        own.remove(address)  # type: ignore[arg-type]
        iface.refresh()
        self._rebuild_local()
        for route in self._address_routes(iface, address):
            if route.origin is RouteOrigin.CONNECTED and any(
                    a.network == address.network for a in own):
                continue
            for table_route in (self.fib.get(route.prefix), self._linkdown.get(route.prefix)):
                if table_route == route:
                    self._drop_route(route)
        orphans: list[Route] = []
        for route in [*(r for _n, _l, r in self.fib.iter_v4()),
                      *(r for _n, _l, r in self.fib.iter_v6()), *self._linkdown.values()]:
            if (route.origin is RouteOrigin.STATIC and route.gateway is not None
                    and route.ifindex == ifindex
                    and not (iface.v4_on_link(route.gateway.packed) if route.gateway.version == 4
                             else iface.v6_on_link(route.gateway.packed))):
                orphans.append(route)
        for route in orphans:
            self._drop_route(route)
        return orphans

    def _drop_route(self, route: Route) -> None:
        if self._linkdown.get(route.prefix) == route:
            del self._linkdown[route.prefix]
            self._generation += 1
        elif self.fib.get(route.prefix) == route:
            self.fib.delete(route.prefix)

    def add_static_neighbor(self, nc: NeighborConfig, now: float) -> list[Action]:
        """A permanent neighbor entry (`neighbors:` in the config); packets queued on an
        unresolved entry it replaces leave at once."""
        iface = self.by_name.get(nc.interface)
        if iface is None:
            raise ConfigError([f"neighbor {nc.address}: no interface {nc.interface!r}"])
        return self._neighbor_events(
            self.neighbors.add_static(iface.ifindex, nc.address.packed, nc.mac, now), now, None)

    def delete_static_neighbor(self, nc: NeighborConfig) -> bool:
        """Remove a permanent neighbor entry; False if there was none."""
        iface = self.by_name.get(nc.interface)
        if iface is None:
            return False
        entry = self.neighbors.lookup(iface.ifindex, nc.address.packed)
        if entry is None or not entry.permanent:
            return False
        self.neighbors.delete(iface.ifindex, nc.address.packed)
        return True

    def _sysctl_changed(self, name: str, value: int) -> None:
        if name == _ICMPLIM:
            self._bucket4.set_rate(value)
        elif name == _ERRPPS:
            self._bucket6.set_rate(value)
        elif name == _MAXFRAG:
            self.reassembly.max_datagrams = value
        elif name in _TIMER_KNOBS:
            self._apply_timer(name, value)
            self._generation += 1

    def _apply_timer(self, name: str, value: int) -> None:
        attr, scale = _TIMER_KNOBS[name]
        setattr(self.neighbors.timers, attr, value * scale if scale is not None else value)

    # --- timers ---------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Announce ourselves on every interface whose link is up (`_announce`)."""
        out: list[Action] = []
        for iface in self.interfaces.values():
            if iface.up:
                out.extend(self._announce(iface))
        return out

    def _announce(self, iface: Interface,
                  addresses: Iterable[IPv4Interface | IPv6Interface] | None = None
                  ) -> list[Action]:
        """Gratuitous ARP for each IPv4 address; for each IPv6 address a DAD probe (RFC 4862
        §5.4.2) and an unsolicited NA to all-nodes (RFC 4861 §7.2.6). All of the interface's
        addresses, or only `addresses` (one just added)."""
        if addresses is None:
            v4 = list(iface.v4_addrs)
            v6 = list(iface.v6_addrs)
        else:
            chosen = list(addresses)
            v4 = [a.ip.packed for a in chosen if isinstance(a, IPv4Interface)]
            v6 = [a.ip.packed for a in chosen if isinstance(a, IPv6Interface)]
        out: list[Action] = []
        for a in v4:
            # RFC 5227 §3 ARP announcement: sender = target = our address.
            out.append(Transmit(iface.ifindex, self._arp_frame(
                iface, 1, BROADCAST_MAC, a, _ZERO_MAC, a)))
            self.stats.bump("arp.txannounce")
        for a in v6:
            ns = NeighborSolicitation(a).pack(_ZERO6, solicited_node_multicast(a))
            out.append(self._nd_frame(iface, _ZERO6, solicited_node_multicast(a), ns))
            self.stats.bump("nd.txns")
        for a in v6:
            na = NeighborAdvertisement(True, False, True, a, (
                NdOption(NdOptionType.TARGET_LL, iface.mac),)).pack(a, ALL_NODES)
            out.append(self._nd_frame(iface, a, ALL_NODES, na))
            self.stats.bump("nd.txna")
        return out

    def tick(self, now: float) -> list[Action]:
        """Run timers: neighbor retransmissions and failures, reassembly timeouts."""
        out = self._neighbor_events(self.neighbors.tick(now), now, None)
        for gone in self.reassembly.expire(now):
            # RFC 792 / RFC 8200 §4.5: Time Exceeded (reassembly) only if the first fragment
            # arrived; the fragments held count as dropped after timeout.
            self.stats.bump(gone.counter, gone.fragments)
            if gone.first_fragment is None:
                continue
            iface = self._iface_towards(gone.src)
            if iface is None:
                continue
            if gone.version == 6:
                out += self._icmp6_error(iface, gone.first_fragment, False, _ICMP6_TIME_EXCEEDED,
                                         1, _ZERO4, now, None)
            else:
                out += self._icmp4_error(iface, gone.first_fragment, False, _ICMP_TIMXCEED, 1,
                                         _ZERO4, now, None)
        return out

    # --- 1. Ethernet demux ----------------------------------------------------------------

    def receive(self, ifindex: int, frame: bytes, now: float, punt: str | None = None
                ) -> list[Action]:
        """Process one received Ethernet frame (FCS not included). `punt` is the fast path's
        reason for handing the frame over, recorded in the trace."""
        self._counters["link.received"] += 1
        if type(frame) is not bytes:
            frame = bytes(frame)  # a ring slot (memoryview) must not outlive this call
        rec = self.tracer.begin(ifindex, now) if self.tracer.enabled else None
        if rec is not None:
            rec.add("rx", f"{len(frame)} bytes")
            if punt is not None:
                rec.add("punt", punt)
        iface = self.interfaces.get(ifindex)
        if iface is None:
            return self._drop("link.badif", rec)
        if len(frame) < 14:
            return self._drop("link.tooshort", rec)
        dst = frame[0:6]
        l2_mcast = False
        if dst != iface.mac:
            if not dst[0] & 1:
                return self._drop("link.notforus", rec)
            if dst not in iface.l2_groups:
                return self._drop("link.notmember", rec)
            l2_mcast = True
        ethertype = frame[12:14]
        if ethertype == _ET_IP4:
            return self._ip4_input(iface, frame[14:], frame[6:12], l2_mcast, now, rec)
        if ethertype == _ET_IP6:
            return self._ip6_input(iface, frame[14:], frame[6:12], l2_mcast, now, rec)
        if ethertype == _ET_ARP:
            return self._arp_input(iface, frame[14:], now, rec)
        return self._drop("link.badtype", rec)

    def _drop(self, reason: str, rec: TraceRecord | None, acts: list[Action] | None = None,
              *, bump: bool = True) -> list[Action]:
        if bump:
            self.stats.bump(reason)
        if rec is not None:
            rec.add("drop", reason)
        if acts:
            acts.append(Drop(reason))
            return acts
        return [Drop(reason)]

    def _deliver(self, reason: str, rec: TraceRecord | None, acts: list[Action] | None = None,
                 *, bump: bool = True) -> list[Action]:
        if bump:
            self.stats.bump(reason)
        if rec is not None:
            rec.add("deliver", reason)
        if acts:
            acts.append(Deliver(reason))
            return acts
        return [Deliver(reason)]

    # --- 2. ARP (RFC 826) ------------------------------------------------------------------

    def _arp_frame(self, iface: Interface, op: int, dst_mac: bytes, sender_ip: bytes,
                   target_mac: bytes, target_ip: bytes) -> bytes:
        return (dst_mac + iface.mac + _ET_ARP + _ARP_ETH_IP4 + op.to_bytes(2, "big")
                + iface.mac + sender_ip + target_mac + target_ip)

    def _arp_input(self, iface: Interface, pkt: bytes, now: float, rec: TraceRecord | None
                   ) -> list[Action]:
        stats = self.stats
        stats.bump("arp.received")
        if len(pkt) < 28 or pkt[0:6] != _ARP_ETH_IP4:
            return self._drop("arp.badpkt", rec)
        op = (pkt[6] << 8) | pkt[7]
        sha, spa, tpa = pkt[8:14], pkt[14:18], pkt[24:28]
        if op not in (1, 2) or sha[0] & 1:
            return self._drop("arp.badpkt", rec)
        stats.bump("arp.rxrequests" if op == 1 else "arp.rxreplies")
        if spa in iface.v4_addrs:
            return self._drop("arp.dupips", rec)  # someone else claims our address
        for_us = tpa in iface.v4_addrs
        # RFC 826 "Packet reception": update the sender if we know it (merge_flag); if we
        # are the target and it was not known, add it. A sender of 0.0.0.0 (an RFC 5227
        # probe) teaches nothing.
        acts: list[Action] = []
        if spa != _ZERO4 and iface.v4_on_link(spa):
            known = self.neighbors.lookup(iface.ifindex, spa) is not None
            if known or for_us:
                if op == 2:
                    events = self.neighbors.received_advert(
                        iface.ifindex, spa, sha, solicited=True, override=True, is_router=False,
                        now=now)
                else:
                    events = self.neighbors.received_solicit_or_request(
                        iface.ifindex, spa, sha, now)
                if rec is not None:
                    rec.add("neighbor", f"learned {IPv4Address(spa)} is {sha.hex(':')}")
                acts = self._neighbor_events(events, now, rec)
        if not for_us:
            return self._deliver("arp.ignored", rec, acts)
        if op == 1:
            acts.append(Transmit(iface.ifindex, self._arp_frame(iface, 2, sha, tpa, sha, spa)))
            stats.bump("arp.txreplies")
            if rec is not None:
                rec.add("tx", f"arp reply {IPv4Address(tpa)} is-at {iface.mac.hex(':')}")
            return acts
        return self._deliver("arp.rxreplies", rec, acts)

    # --- 3. IPv4 input (BSD ip_input, RFC 1812 §5.2.2) --------------------------------------

    def _ip4_input(self, iface: Interface, pkt: bytes, src_mac: bytes, l2_mcast: bool,
                   now: float, rec: TraceRecord | None) -> list[Action]:
        self._counters["ip.total"] += 1
        n = len(pkt)
        if n < 20:
            return self._drop("ip.toosmall", rec)
        if pkt[0] >> 4 != 4:
            return self._drop("ip.badvers", rec)
        hlen = (pkt[0] & 0x0F) << 2
        if hlen < 20 or hlen > n:
            return self._drop("ip.badhlen", rec)
        if ones_complement_sum(pkt[:hlen]) != 0xFFFF:
            return self._drop("ip.badsum", rec)
        ip_len = (pkt[2] << 8) | pkt[3]
        if ip_len < hlen:
            return self._drop("ip.badlen", rec)
        if n < ip_len:
            return self._drop("ip.tooshort", rec)
        if n > ip_len:
            pkt = pkt[:ip_len]  # Ethernet padding of short frames (figure 8.12)
        src = pkt[12:16]
        dst = pkt[16:20]
        # RFC 1812 §5.3.7: no packet from a martian source (multicast, limited broadcast,
        # class E, loopback); BSD counts them as "datagrams with bad address in header".
        s0 = src[0]
        if s0 >= 224 or s0 == 127 or dst[0] == 127 or src in iface.v4_broadcasts:
            return self._drop("ip.badaddr", rec)
        if rec is not None:
            rec.add("verify", f"ipv4 {IPv4Address(src)} > {IPv4Address(dst)} len {ip_len} "
                    f"ttl {pkt[8]} proto {pkt[9]}")
        srcrt = False
        if hlen > 20:
            bad, srcrt = self._ip4_options(pkt, hlen)
            if bad:
                acts = self._icmp4_error(iface, pkt, l2_mcast, _ICMP_PARAMPROB, 0,
                                         param_problem_rest(bad), now, rec)
                return self._drop("ip.badoptions", rec, acts)

        # To forward or not to forward (figure 8.14): any of our addresses (weak host
        # model), the limited broadcast or a directed broadcast of a connected subnet.
        if dst in self.local4:
            return self._ip4_local(iface, pkt, hlen, l2_mcast, False, now, rec)
        # Directed broadcasts of any of our subnets end here too: they are never forwarded
        # (RFC 2644; BSD ip_output refuses them without IP_ALLOWBROADCAST).
        if dst in (_BCAST4, _ALL_HOSTS4) or dst in self._broadcasts4:
            return self._ip4_local(iface, pkt, hlen, l2_mcast, True, now, rec)
        if dst[0] & 0xF0 == 0xE0:
            return self._drop("ip.notmember", rec)  # no multicast routing
        if srcrt:
            # net.inet.ip.sourceroute is 0: a source-routed packet in transit is refused
            # with "source route failed" (BSD ip_dooptions).
            acts = self._icmp4_error(iface, pkt, l2_mcast, _ICMP_UNREACH, _UNREACH_SRCFAIL,
                                     _ZERO4, now, rec)
            return self._drop("ip.cantforward", rec, acts)
        return self._ip4_forward(iface, pkt, hlen, src_mac, l2_mcast, now, rec)

    @staticmethod
    def _ip4_options(pkt: bytes, hlen: int) -> tuple[int, bool]:
        """Walk the options: (offset of a malformed option or 0, source route present)."""
        i = 20
        srcrt = False
        while i < hlen:
            kind = pkt[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            if i + 1 >= hlen:
                return i, srcrt
            olen = pkt[i + 1]
            if olen < 2 or i + olen > hlen:
                return i + 1, srcrt
            if kind in (0x83, 0x89):  # LSRR, SSRR (RFC 791 §3.1)
                srcrt = True
            i += olen
        return 0, srcrt

    # --- 3a. IPv4 local delivery ---------------------------------------------------------------

    def _ip4_local(self, iface: Interface, pkt: bytes, hlen: int, l2_mcast: bool,
                   bcast: bool, now: float, rec: TraceRecord | None) -> list[Action]:
        stats = self.stats
        if ((pkt[6] << 8) | pkt[7]) & (_IP4_MF | _IP4_OFFMASK):
            result = self.reassembly.add_v4(pkt, now)
            for key, count in result.counters.items():
                stats.bump(key, count)
            if result.datagram is None:
                if rec is not None:
                    rec.add("reassembly", result.detail or ("held" if result.held else "dropped"))
                if result.drop is not None:
                    return [Drop(result.drop)]
                return [Hold("ip.fragments")]
            pkt = result.datagram
            hlen = (pkt[0] & 0x0F) << 2
            if rec is not None:
                rec.add("reassembly", f"datagram of {len(pkt)} bytes")
        stats.bump("ip.delivered")
        proto = pkt[9]
        if rec is not None:
            rec.add("local", f"proto {proto}{' (broadcast)' if bcast else ''}")
        if proto == _PROTO_ICMP:
            return self._icmp4_input(iface, pkt, hlen, l2_mcast or bcast, now, rec)
        if proto in (_PROTO_UDP, _PROTO_TCP):
            # No transport listens on the router: port unreachable (suppressed for
            # broadcasts by the error rules).
            acts = self._icmp4_error(iface, pkt, l2_mcast or bcast, _ICMP_UNREACH,
                                     _UNREACH_PORT, _ZERO4, now, rec)
            return self._deliver("ip.delivered", rec, acts, bump=False)
        stats.bump("ip.noproto")
        acts = self._icmp4_error(iface, pkt, l2_mcast or bcast, _ICMP_UNREACH, _UNREACH_PROTOCOL,
                                 _ZERO4, now, rec)
        acts.append(Drop("ip.noproto"))
        return acts

    def _icmp4_input(self, iface: Interface, pkt: bytes, hlen: int, mcast: bool, now: float,
                     rec: TraceRecord | None) -> list[Action]:
        stats = self.stats
        msg = pkt[hlen:]
        if len(msg) < 8:
            return self._drop("icmp.tooshort", rec)
        if ones_complement_sum(msg) != 0xFFFF:
            return self._drop("icmp.checksum", rec)
        icmp_type = msg[0]
        stats.bump(f"icmp.inhist.{icmp_type}")
        if icmp_type != _ICMP_ECHO:
            return self._deliver(f"icmp.inhist.{icmp_type}", rec, bump=False)
        if mcast and not self._sysctl_v[_BMCASTECHO]:
            return self._drop("icmp.bmcastecho", rec)
        # icmp_reflect: the reply goes back from the address the request was sent to (our
        # interface's address when it was a broadcast), with our default TTL.
        dst = pkt[16:20]
        src = dst if dst in self.local4 else iface.v4_source_for(pkt[12:16])
        if src is None:
            return self._drop("icmp.badaddr", rec)
        ck = internet_checksum(bytes((_ICMP_ECHOREPLY, 0, 0, 0)) + msg[4:])
        reply = bytes((_ICMP_ECHOREPLY, 0)) + ck.to_bytes(2, "big") + msg[4:]
        stats.bump("icmp.reflect")
        stats.bump("icmp.outhist.0")
        if rec is not None:
            rec.add("icmp", "echo reply")
        return self._output4(self._ip4_header(src, pkt[12:16], _PROTO_ICMP, len(reply),
                                              tos=pkt[1]) + reply, now, rec)

    # --- 3b. IPv4 forwarding (BSD ip_forward, figures 8.17-8.20) ----------------------------

    def _ip4_forward(self, iface: Interface, pkt: bytes, hlen: int, src_mac: bytes,
                     l2_mcast: bool, now: float, rec: TraceRecord | None) -> list[Action]:
        stats = self.stats
        if not self._sysctl_v[_FWD4]:
            return self._drop("ip.cantforward", rec)
        dst = pkt[16:20]
        d0 = dst[0]
        # in_canforward: not from a link-layer broadcast, not to net 0, loopback or class E.
        if l2_mcast or d0 == 0 or d0 >= 240:
            return self._drop("ip.cantforward", rec)
        if pkt[12] == 0:
            return self._drop("ip.badaddr", rec)  # RFC 1812 §5.3.7: no source in net 0
        ttl = pkt[8]
        if ttl <= 1:
            if rec is not None:
                rec.add("ttl", f"ttl {ttl} expires in transit")
            acts = self._icmp4_error(iface, pkt, l2_mcast, _ICMP_TIMXCEED, 0, _ZERO4, now, rec)
            return self._drop("ip.ttlexceeded", rec, acts)
        route = self.fib.lookup_v4(int.from_bytes(dst, "big"))
        if rec is not None:
            rec.add("fib", f"{IPv4Address(dst)} -> {_route_text(route)}")
        if route is None:
            acts = self._icmp4_error(iface, pkt, l2_mcast, _ICMP_UNREACH, _UNREACH_NET, _ZERO4,
                                     now, rec)
            return self._drop("ip.noroute", rec, acts)
        rtype = route.type
        if rtype is not RouteType.UNICAST:
            if rtype is RouteType.BLACKHOLE:
                return self._drop("ip.blackhole", rec)
            acts = self._icmp4_error(iface, pkt, l2_mcast, _ICMP_UNREACH, _UNREACH_ADMIN, _ZERO4,
                                     now, rec)
            return self._drop("ip.reject", rec, acts)
        out = self.interfaces[route.ifindex]  # type: ignore[index]
        nexthop = route.gateway.packed if route.gateway is not None else dst
        flags_off = (pkt[6] << 8) | pkt[7]
        if len(pkt) > out.mtu and flags_off & _IP4_DF:
            # RFC 1191 §4: Fragmentation Needed with the next-hop MTU.
            if rec is not None:
                rec.add("mtu", f"{len(pkt)} > {out.mtu}, DF set")
            acts = self._icmp4_error(iface, pkt, l2_mcast, _ICMP_UNREACH, _UNREACH_NEEDFRAG,
                                     frag_needed_rest(out.mtu), now, rec)
            return self._drop("ip.cantfrag", rec, acts)

        # Redirect (figure 8.19): in and out on the same interface, the source on that
        # subnet, a route not learned from a redirect and not the default route, no source
        # route, redirects enabled. Host redirect to the next hop; the packet still goes.
        redirect: list[Action] = []
        if (route.ifindex == iface.ifindex and self._sysctl_v[_REDIRECT4]
                and route.origin is not RouteOrigin.REDIRECT
                and route.prefix.prefixlen != 0 and iface.v4_on_link(pkt[12:16])):
            redirect = self._icmp4_error(iface, pkt, l2_mcast, _ICMP_REDIRECT, 1, nexthop, now,
                                         rec)
            if redirect:
                stats.bump("ip.redirectsent")

        # TTL decrement with the incremental checksum (RFC 1624 eqn. 3; RFC 1812 §5.3.1).
        old_word = (ttl << 8) | pkt[9]
        ck = incremental_update((pkt[10] << 8) | pkt[11], old_word, old_word - 0x100)
        fwd = pkt[:8] + bytes((ttl - 1, pkt[9])) + ck.to_bytes(2, "big") + pkt[12:]
        if rec is not None:
            rec.add("ttl", f"ttl {ttl} -> {ttl - 1}")
        stats.bump("ip.forward")
        acts = self._emit4(out, nexthop, fwd, now, rec)
        acts.extend(redirect)
        return acts

    # --- IPv4 output ------------------------------------------------------------------------

    def _ip4_header(self, src: bytes, dst: bytes, proto: int, payload_len: int, tos: int = 0,
                    ttl: int | None = None) -> bytes:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        hdr = _IP4.pack(0x45, tos, 20 + payload_len, self._ip_id, 0,
                        self._sysctl_v[_TTL] if ttl is None else ttl, proto, 0, src, dst)
        ck = internet_checksum(hdr)
        return hdr[:10] + ck.to_bytes(2, "big") + hdr[12:]

    def _output4(self, pkt: bytes, now: float, rec: TraceRecord | None) -> list[Action]:
        """Send a packet the router originated (ip_output): route it and emit it."""
        self.stats.bump("ip.localout")
        dst = pkt[16:20]
        route = self.fib.lookup_v4(int.from_bytes(dst, "big"))
        if route is None or route.type is not RouteType.UNICAST or route.ifindex is None:
            return self._drop("ip.noroute", rec)
        nexthop = route.gateway.packed if route.gateway is not None else dst
        return self._emit4(self.interfaces[route.ifindex], nexthop, pkt, now, rec)

    def _emit4(self, out: Interface, nexthop: bytes, pkt: bytes, now: float,
               rec: TraceRecord | None) -> list[Action]:
        """Fragment if needed (DF is clear here, the caller checked), then resolve and send."""
        if len(pkt) > out.mtu:
            try:
                pieces = fragment.fragment_ipv4(pkt, out.mtu)
            except (fragment.CannotFragment, PacketError):
                return self._drop("ip.cantfrag", rec)
            self.stats.bump("ip.fragmented")
            self.stats.bump("ip.ofragments", len(pieces))
            if rec is not None:
                rec.add("fragment", f"{len(pieces)} fragments for mtu {out.mtu}")
            acts: list[Action] = []
            for piece in pieces:
                acts.extend(self._resolve_and_send(out, nexthop, piece, _ET_IP4, now, rec))
            return acts
        return self._resolve_and_send(out, nexthop, pkt, _ET_IP4, now, rec)

    def _resolve_and_send(self, out: Interface, nexthop: bytes, pkt: bytes, ethertype: bytes,
                          now: float, rec: TraceRecord | None) -> list[Action]:
        mac, events = self.neighbors.resolve(out.ifindex, nexthop, pkt, now)
        if rec is not None:
            entry = self.neighbors.lookup(out.ifindex, nexthop)
            rec.add("neighbor", f"{_addr_text(nexthop)} "
                    f"{entry.state.value if entry is not None else 'none'}")
        acts = self._neighbor_events(events, now, rec) if events else []
        if mac is not None:
            if rec is not None:
                rec.add("tx", f"{out.name} to {mac.hex(':')}")
            acts.append(Transmit(out.ifindex, mac + out.mac + ethertype + pkt))
            return acts
        reason = "arp.queued" if len(nexthop) == 4 else "nd.queued"
        self.stats.bump(reason)
        if rec is not None:
            rec.add("queue", f"waiting for {_addr_text(nexthop)} on {out.name}")
        acts.append(Hold(reason))
        return acts

    # --- neighbor events -> frames ----------------------------------------------------------

    def _neighbor_events(self, events: Iterable[object], now: float, rec: TraceRecord | None
                         ) -> list[Action]:
        acts: list[Action] = []
        for ev in events:
            if isinstance(ev, Solicit):
                iface = self.interfaces.get(ev.ifindex)
                if iface is not None:
                    frame = self._solicit_frame(iface, ev.addr, ev.unicast_mac)
                    if frame is not None:
                        acts.append(Transmit(iface.ifindex, frame))
            elif isinstance(ev, Release):
                iface = self.interfaces.get(ev.ifindex)
                if iface is None:
                    continue
                for p in ev.packets:
                    et = _ET_IP4 if p[0] >> 4 == 4 else _ET_IP6
                    acts.append(Transmit(iface.ifindex, ev.mac + iface.mac + et + p))
                if rec is not None:
                    rec.add("release", f"{len(ev.packets)} queued for {_addr_text(ev.addr)}")
            elif isinstance(ev, ResolutionFailed):
                v4 = len(ev.addr) == 4
                self.stats.bump("arp.timeouts" if v4 else "nd.timeouts")
                if ev.packets:
                    self.stats.bump("arp.dropped" if v4 else "nd.dropped", len(ev.packets))
                for p in ev.packets:
                    acts.extend(self._unreachable_for_queued(p, now, rec))
            elif isinstance(ev, QueueOverflow):
                self.stats.bump("arp.dropped" if len(ev.addr) == 4 else "nd.dropped")
        return acts

    def _solicit_frame(self, iface: Interface, addr: bytes, unicast_mac: bytes | None
                       ) -> bytes | None:
        if len(addr) == 4:
            sender = iface.v4_source_for(addr)
            if sender is None:
                return None
            self.stats.bump("arp.txrequests")
            return self._arp_frame(iface, 1, unicast_mac or BROADCAST_MAC, sender, _ZERO_MAC,
                                   addr)
        # RFC 4861 §7.2.2: to the solicited-node group (or unicast when probing), from our
        # link-local address, with our link-layer address.
        dst = addr if unicast_mac is not None else solicited_node_multicast(addr)
        src = iface.link_local
        ns = NeighborSolicitation(addr, (NdOption(NdOptionType.SOURCE_LL, iface.mac),)).pack(
            src, dst)
        self.stats.bump("nd.txns")
        return self._nd_frame(iface, src, dst, ns, unicast_mac).frame

    def _iface_towards(self, addr: bytes) -> Interface | None:
        """The interface that routes back to `addr` (for errors about packets whose inbound
        interface was not kept: queued on a neighbor, or held in reassembly)."""
        if len(addr) == 16 and _is_link_local6(addr):
            return None
        route = (self.fib.lookup_v4(int.from_bytes(addr, "big")) if len(addr) == 4
                 else self.fib.lookup_v6(int.from_bytes(addr, "big")))
        if route is None or route.ifindex is None:
            return None
        return self.interfaces.get(route.ifindex)

    def _unreachable_for_queued(self, pkt: bytes, now: float, rec: TraceRecord | None
                                ) -> list[Action]:
        """Host / address unreachable for a packet whose next hop never answered, from the
        interface that routes back to the packet's source."""
        v4 = pkt[0] >> 4 == 4
        iface = self._iface_towards(pkt[12:16] if v4 else pkt[8:24])
        if iface is None:
            return []
        if v4:
            return self._icmp4_error(iface, pkt, False, _ICMP_UNREACH, _UNREACH_HOST, _ZERO4,
                                     now, rec)
        return self._icmp6_error(iface, pkt, False, _ICMP6_UNREACH, _UNREACH6_ADDR, _ZERO4,
                                 now, rec)

    # --- ICMP errors (RFC 1812 §4.3.2.7, RFC 4443 §2.4) -------------------------------------

    def _icmp4_error(self, iface: Interface, pkt: bytes, l2_mcast: bool, icmp_type: int,
                     code: int, rest: bytes, now: float, rec: TraceRecord | None
                     ) -> list[Action]:
        """icmp_error: apply the suppression rules and the rate limit, build the message
        quoting as much of `pkt` as fits in 576 bytes, send it from the inbound interface's
        address."""
        stats = self.stats
        if icmp_type != _ICMP_REDIRECT:
            stats.bump("icmp.error")  # BSD icmp_error: redirects are not counted as errors
        verdict = icmp_error.should_suppress_v4(pkt, link_multicast=l2_mcast,
                                                 broadcast_addresses=self._broadcasts4)
        if verdict is not None:
            counter = icmp_error.suppression_counter(verdict, 4)
            if counter is not None:
                stats.bump(counter)
            if rec is not None:
                rec.add("icmp", f"type {icmp_type} suppressed: {verdict}")
            return []
        if not self._bucket4.allow(now):
            stats.bump("icmp.ratelimited")
            if rec is not None:
                rec.add("icmp", f"type {icmp_type} rate limited")
            return []
        src = iface.v4_source_for(pkt[12:16])
        if src is None:
            src = next(iter(self.local4), None)
            if src is None:
                return []
        stats.bump(f"icmp.outhist.{icmp_type}")
        if rec is not None:
            rec.add("icmp", f"type {icmp_type} code {code} to {IPv4Address(pkt[12:16])}")
        return self._output4(icmp_error.icmp4_error(pkt, icmp_type, code, rest, src,
                                                    self._sysctl_v[_TTL],
                                                    ident=self._next_ident()), now, rec)

    def _icmp6_error(self, iface: Interface, pkt: bytes, l2_mcast: bool, icmp_type: int,
                     code: int, rest: bytes, now: float, rec: TraceRecord | None
                     ) -> list[Action]:
        stats = self.stats
        stats.bump("icmp6.error")
        verdict = icmp_error.should_suppress_v6(pkt, icmp_type, code, link_multicast=l2_mcast)
        if verdict is not None:
            counter = icmp_error.suppression_counter(verdict, 6)
            if counter is not None:
                stats.bump(counter)
            if rec is not None:
                rec.add("icmp", f"type {icmp_type} suppressed: {verdict}")
            return []
        if not self._bucket6.allow(now):
            stats.bump("icmp6.toofreq")
            if rec is not None:
                rec.add("icmp", f"type {icmp_type} rate limited")
            return []
        dst = pkt[8:24]
        to_us = pkt[24:40]
        if (to_us in self.local6 or to_us in iface.v6_addrs) and (
                not _is_link_local6(to_us) or _is_link_local6(dst)):
            # RFC 4443 §2.2 (a): about a packet sent to one of our unicast addresses, from
            # that address (unless it is link-local and the destination is not: RFC 4007)
            src = to_us
        else:
            src = iface.v6_source_for(dst)
        if _is_link_local6(src) and not _is_link_local6(dst) and self.local6:
            # the interface has no global address: a link-local source could not reach an
            # off-link destination (RFC 4443 §2.2), so use one of the router's others
            src = next(iter(self.local6))
        stats.bump(f"icmp6.outhist.{icmp_type}")
        if rec is not None:
            rec.add("icmp", f"type {icmp_type} code {code} to {IPv6Address(dst)}")
        return self._output6(icmp_error.icmp6_error(pkt, icmp_type, code, rest, src,
                                                    self._sysctl_v[_HLIM]), iface, now, rec)

    # --- 4. IPv6 input (RFC 8200) -------------------------------------------------------------

    def _ip6_input(self, iface: Interface, pkt: bytes, src_mac: bytes, l2_mcast: bool,
                   now: float, rec: TraceRecord | None) -> list[Action]:
        self._counters["ip6.total"] += 1
        n = len(pkt)
        if n < 40:
            return self._drop("ip6.toosmall", rec)
        if pkt[0] >> 4 != 6:
            return self._drop("ip6.badvers", rec)
        plen = (pkt[4] << 8) | pkt[5]
        if plen == 0 and pkt[6] == _NH_HOPOPTS:
            return self._drop("ip6.badoptions", rec)  # jumbograms are not supported
        if n - 40 < plen:
            return self._drop("ip6.tooshort", rec)
        if n - 40 > plen:
            pkt = pkt[:40 + plen]
        src = pkt[8:24]
        dst = pkt[24:40]
        # RFC 4291 §2.5.2/2.5.3, FreeBSD ip6_input: multicast or loopback sources, loopback
        # or unspecified destinations and IPv4-mapped addresses violate scope rules.
        if (src[0] == 0xFF or src == _LOOPBACK6 or dst in (_LOOPBACK6, _ZERO6)
                or src[:12] == _MAPPED or dst[:12] == _MAPPED):
            return self._drop("ip6.badscope", rec)
        if rec is not None:
            rec.add("verify", f"ipv6 {IPv6Address(src)} > {IPv6Address(dst)} plen {plen} "
                    f"hlim {pkt[7]} nh {pkt[6]}")
        if dst in self.local6 or dst in iface.v6_addrs:
            return self._ip6_local(iface, pkt, src_mac, l2_mcast, False, now, rec)
        if dst[0] == 0xFF:
            if dst in iface.v6_groups:
                return self._ip6_local(iface, pkt, src_mac, l2_mcast, True, now, rec)
            return self._drop("ip6.notmember", rec)  # no multicast routing
        if src == _ZERO6:
            return self._drop("ip6.badscope", rec)  # :: may only talk to us (DAD)
        return self._ip6_forward(iface, pkt, src_mac, l2_mcast, now, rec)

    # --- 4a. IPv6 local delivery ---------------------------------------------------------------

    @staticmethod
    def _ip6_options(pkt: bytes, off: int) -> tuple[int, int]:
        """Walk the options of the Hop-by-Hop or Destination Options header at `off` (which
        lies inside `pkt`): (offset of the first unrecognised option whose action is not
        "skip", its action) or (0, _OPT_SKIP); (offset, _OPT_MALFORMED) when an option runs
        past the header. Pad1 and PadN are the only options the router acts on itself."""
        end = off + (pkt[off + 1] + 1) * 8
        i = off + 2
        while i < end:
            kind = pkt[i]
            if kind == 0:  # Pad1
                i += 1
                continue
            if i + 1 >= end or i + 2 + pkt[i + 1] > end:
                return i, _OPT_MALFORMED
            if kind != 1 and kind >> 6 != _OPT_SKIP:
                return i, kind >> 6
            i += 2 + pkt[i + 1]
        return 0, _OPT_SKIP

    def _ip6_local(self, iface: Interface, pkt: bytes, src_mac: bytes, l2_mcast: bool,
                   mcast: bool, now: float, rec: TraceRecord | None) -> list[Action]:
        stats = self.stats
        try:
            walk = walk_extension_headers(pkt[6], pkt, 40)
        except PacketError:
            return self._drop("ip6.tooshort", rec)
        for nh, off in walk.headers:
            if nh in (_NH_HOPOPTS, _NH_DSTOPTS):
                where, action = self._ip6_options(pkt, off)
                if action == _OPT_MALFORMED:
                    return self._drop("ip6.toosmall", rec)  # FreeBSD ip6_process_hopopts
                if action != _OPT_SKIP:
                    # RFC 8200 §4.2: an option we do not know whose type says "discard";
                    # Parameter Problem code 2 at its type byte unless it says "silently"
                    # (01), or "not for multicast" (11) and the packet was.
                    acts: list[Action] = []
                    if action == _OPT_REPORT or (action == _OPT_REPORT_UNICAST
                                                 and not (l2_mcast or mcast)):
                        acts = self._icmp6_error(iface, pkt, l2_mcast or mcast,
                                                 _ICMP6_PARAM_PROB, _PARAMPROB6_OPTION,
                                                 where.to_bytes(4, "big"), now, rec)
                    return self._drop("ip6.badoptions", rec, acts)
            if nh == _NH_ROUTING and pkt[off + 3] != 0:
                # We know no routing header type: with segments left, RFC 8200 §4.4 says
                # Parameter Problem code 0 pointing at the routing type.
                acts = self._icmp6_error(iface, pkt, l2_mcast or mcast, _ICMP6_PARAM_PROB,
                                         _PARAMPROB6_HEADER, (off + 2).to_bytes(4, "big"), now,
                                         rec)
                return self._drop("ip6.badoptions", rec, acts)
        if walk.fragment is not None:
            result = self.reassembly.add_v6(pkt, now)
            for key, count in result.counters.items():
                stats.bump(key, count)
            if result.param_problem_pointer is not None:
                # RFC 8200 §4.5: a fragment whose length is not a multiple of 8, or that
                # reaches past 65535 bytes: Parameter Problem code 0.
                acts = self._icmp6_error(iface, pkt, l2_mcast or mcast, _ICMP6_PARAM_PROB,
                                         _PARAMPROB6_HEADER,
                                         result.param_problem_pointer.to_bytes(4, "big"), now, rec)
                acts.append(Drop(result.drop or "ip6.fragdropped"))
                return acts
            if result.datagram is None:
                if rec is not None:
                    rec.add("reassembly", result.detail or ("held" if result.held else "dropped"))
                if result.drop is not None:
                    return [Drop(result.drop)]
                return [Hold("ip6.fragments")]
            pkt = result.datagram
            try:
                walk = walk_extension_headers(pkt[6], pkt, 40)
            except PacketError:
                return self._drop("ip6.tooshort", rec)
            if rec is not None:
                rec.add("reassembly", f"datagram of {len(pkt)} bytes")
        stats.bump("ip6.delivered")
        proto = walk.upper_protocol
        if rec is not None:
            rec.add("local", f"next header {proto}{' (multicast)' if mcast else ''}")
        if proto == _PROTO_ICMP6:
            return self._icmp6_input(iface, pkt, walk.upper_offset, src_mac, l2_mcast, mcast,
                                     now, rec)
        if proto in (_PROTO_UDP, _PROTO_TCP):
            acts = self._icmp6_error(iface, pkt, l2_mcast or mcast, _ICMP6_UNREACH,
                                     _UNREACH6_PORT, _ZERO4, now, rec)
            return [*acts, Deliver("ip6.delivered")]
        if proto == 59:  # No Next Header (RFC 8200 §4.7): nothing to do
            return [Deliver("ip6.delivered")]
        stats.bump("ip6.noproto")
        # Parameter Problem code 1, pointer at the Next Header field naming the protocol.
        pointer = 6 if not walk.headers else walk.headers[-1][1]
        acts = self._icmp6_error(iface, pkt, l2_mcast or mcast, _ICMP6_PARAM_PROB,
                                 _PARAMPROB6_NEXTHEADER, pointer.to_bytes(4, "big"), now, rec)
        acts.append(Drop("ip6.noproto"))
        return acts

    def _icmp6_input(self, iface: Interface, pkt: bytes, off: int, src_mac: bytes,
                     l2_mcast: bool, mcast: bool, now: float, rec: TraceRecord | None
                     ) -> list[Action]:
        stats = self.stats
        msg = pkt[off:]
        src = pkt[8:24]
        dst = pkt[24:40]
        if len(msg) < 8:
            return self._drop("icmp6.tooshort", rec)
        if ones_complement_sum(msg, pseudo_header_v6(src, dst, _PROTO_ICMP6, len(msg))) != 0xFFFF:
            return self._drop("icmp6.checksum", rec)
        icmp_type = msg[0]
        stats.bump(f"icmp6.inhist.{icmp_type}")
        if icmp_type == _ICMP6_ECHO:
            if src == _ZERO6:
                return self._drop("ip6.badscope", rec)
            # RFC 4443 §4.2: reply from the address the request was sent to, or for a
            # multicast request from a unicast address of the interface.
            reply_src = dst if not mcast else iface.v6_source_for(src)
            reply = bytes((_ICMP6_ECHOREPLY, 0, 0, 0)) + msg[4:]
            ck = internet_checksum(reply, pseudo_header_v6(reply_src, src, _PROTO_ICMP6,
                                                           len(reply)))
            reply = reply[:2] + ck.to_bytes(2, "big") + reply[4:]
            stats.bump("icmp6.reflect")
            stats.bump("icmp6.outhist.129")
            if rec is not None:
                rec.add("icmp", "echo reply")
            hdr = _IP6_FIXED.pack(0x60000000, len(reply), _PROTO_ICMP6, self._sysctl_v[_HLIM],
                                  reply_src, src)
            return self._output6(hdr + reply, iface, now, rec)
        if icmp_type == _ICMP6_NS:
            return self._nd_solicit_input(iface, pkt, msg, src_mac, now, rec)
        if icmp_type == _ICMP6_NA:
            return self._nd_advert_input(iface, pkt, msg, now, rec)
        if icmp_type in (_ICMP6_RS, _ICMP6_RA, _ICMP6_REDIRECT):
            return self._deliver("nd.ignoredmsg", rec)  # we send no RAs and route statically
        return self._deliver(f"icmp6.inhist.{icmp_type}", rec, bump=False)

    # --- Neighbor Discovery (RFC 4861) -----------------------------------------------------

    def _nd_solicit_input(self, iface: Interface, pkt: bytes, msg: bytes, src_mac: bytes,
                          now: float, rec: TraceRecord | None) -> list[Action]:
        stats = self.stats
        src = pkt[8:24]
        dst = pkt[24:40]
        stats.bump("nd.rxns")
        # §7.1.1 validity: hop limit 255, code 0, 24+ bytes, target not multicast, options
        # well formed; from :: only to a solicited-node group and without a source LL option.
        try:
            ns = NeighborSolicitation.parse(msg)
        except PacketError:
            return self._drop("icmp6.badns", rec)
        sll = source_ll(ns.options)
        if (pkt[7] != _ND_HOP_LIMIT or ns.target[0] == 0xFF
                or (src == _ZERO6 and (dst[:13] != _SOLICITED_PREFIX or sll is not None))):
            return self._drop("icmp6.badns", rec)
        if ns.target not in iface.v6_addrs:
            return self._deliver("nd.ignored", rec)
        opts = (NdOption(NdOptionType.TARGET_LL, iface.mac),)
        if src == _ZERO6:
            # DAD probe for one of our addresses (RFC 4862 §5.4.3): defend it with an NA to
            # all-nodes, Solicited clear.
            stats.bump("nd.dad")
            na = NeighborAdvertisement(True, False, True, ns.target, opts).pack(ns.target,
                                                                                ALL_NODES)
            stats.bump("nd.txna")
            stats.bump("icmp6.outhist.136")
            return [self._nd_frame(iface, ns.target, ALL_NODES, na)]
        acts = self._neighbor_events(
            self.neighbors.received_solicit_or_request(iface.ifindex, src, sll, now), now, rec)
        # §7.2.4: solicited NA to the source, Router, Solicited and Override set.
        na = NeighborAdvertisement(True, True, True, ns.target, opts).pack(ns.target, src)
        stats.bump("nd.txna")
        stats.bump("icmp6.outhist.136")
        if rec is not None:
            rec.add("tx", f"neighbor advertisement for {IPv6Address(ns.target)}")
        acts.append(self._nd_frame(iface, ns.target, src, na, sll or src_mac))
        return acts

    def _nd_advert_input(self, iface: Interface, pkt: bytes, msg: bytes, now: float,
                         rec: TraceRecord | None) -> list[Action]:
        stats = self.stats
        stats.bump("nd.rxna")
        try:
            na = NeighborAdvertisement.parse(msg)
        except PacketError:
            return self._drop("icmp6.badna", rec)
        # §7.1.2 validity: hop limit 255, target not multicast, Solicited clear if the
        # destination is multicast.
        if pkt[7] != _ND_HOP_LIMIT or na.target[0] == 0xFF or (pkt[24] == 0xFF and na.solicited):
            return self._drop("icmp6.badna", rec)
        if na.target in iface.v6_addrs:
            return self._drop("nd.dupaddr", rec)  # someone else defends our address
        events = self.neighbors.received_advert(
            iface.ifindex, na.target, target_ll(na.options), solicited=na.solicited,
            override=na.override, is_router=na.router, now=now)
        if rec is not None:
            entry = self.neighbors.lookup(iface.ifindex, na.target)
            rec.add("neighbor", f"{IPv6Address(na.target)} "
                    f"{entry.state.value if entry else 'unknown'}")
        acts = self._neighbor_events(events, now, rec)
        acts.append(Deliver("nd.rxna"))
        return acts

    def _nd_frame(self, iface: Interface, src: bytes, dst: bytes, icmp6: bytes,
                  dst_mac: bytes | None = None) -> Transmit:
        """An ND message with hop limit 255 (§7.1), sent straight to the link."""
        hdr = _IP6_FIXED.pack(0x60000000, len(icmp6), _PROTO_ICMP6, _ND_HOP_LIMIT, src, dst)
        self.stats.bump("ip6.localout")
        if dst_mac is None:
            dst_mac = ipv6_multicast_mac(dst)
        return Transmit(iface.ifindex, dst_mac + iface.mac + _ET_IP6 + hdr + icmp6)

    # --- 4b. IPv6 forwarding (RFC 8200, FreeBSD ip6_forward) ------------------------------------

    def _ip6_forward(self, iface: Interface, pkt: bytes, src_mac: bytes, l2_mcast: bool,
                     now: float, rec: TraceRecord | None) -> list[Action]:
        stats = self.stats
        if not self._sysctl_v[_FWD6]:
            return self._drop("ip6.cantforward", rec)
        src = pkt[8:24]
        dst = pkt[24:40]
        if l2_mcast:
            return self._drop("ip6.cantforward", rec)
        if _is_link_local6(dst):
            return self._drop("ip6.badscope", rec)  # link-local is never forwarded
        hlim = pkt[7]
        if hlim <= 1:
            if rec is not None:
                rec.add("ttl", f"hop limit {hlim} expires in transit")
            acts = self._icmp6_error(iface, pkt, l2_mcast, _ICMP6_TIME_EXCEEDED, 0, _ZERO4, now,
                                     rec)
            return self._drop("ip6.ttlexceeded", rec, acts)
        route = self.fib.lookup_v6(int.from_bytes(dst, "big"))
        if rec is not None:
            rec.add("fib", f"{IPv6Address(dst)} -> {_route_text(route)}")
        if route is None:
            acts = self._icmp6_error(iface, pkt, l2_mcast, _ICMP6_UNREACH, _UNREACH6_NOROUTE,
                                     _ZERO4, now, rec)
            return self._drop("ip6.noroute", rec, acts)
        if route.type is not RouteType.UNICAST:
            if route.type is RouteType.BLACKHOLE:
                return self._drop("ip6.blackhole", rec)
            acts = self._icmp6_error(iface, pkt, l2_mcast, _ICMP6_UNREACH, _UNREACH6_ADMIN,
                                     _ZERO4, now, rec)
            return self._drop("ip6.reject", rec, acts)
        out = self.interfaces[route.ifindex]  # type: ignore[index]
        if _is_link_local6(src) and out is not iface:
            # RFC 4007 §9: a link-local source cannot leave its link.
            acts = self._icmp6_error(iface, pkt, l2_mcast, _ICMP6_UNREACH,
                                     _UNREACH6_BEYONDSCOPE, _ZERO4, now, rec)
            return self._drop("ip6.badscope", rec, acts)
        if len(pkt) > out.mtu:
            # RFC 8200 §5: routers never fragment; Packet Too Big with the link MTU.
            if rec is not None:
                rec.add("mtu", f"{len(pkt)} > {out.mtu}")
            acts = self._icmp6_error(iface, pkt, l2_mcast, _ICMP6_PACKET_TOO_BIG, 0,
                                     out.mtu.to_bytes(4, "big"), now, rec)
            return self._drop("ip6.cantfrag", rec, acts)
        nexthop = route.gateway.packed if route.gateway is not None else dst

        # RFC 4861 §8.2: redirect when the packet leaves by the interface it came in on, its
        # source is a neighbor, and a better first hop (the gateway's link-local address,
        # or the destination itself when on-link) exists.
        redirect: list[Action] = []
        if (out is iface and self._sysctl_v[_REDIRECT6]
                and route.origin is not RouteOrigin.REDIRECT and iface.v6_on_link(src)
                and (route.gateway is None or _is_link_local6(nexthop))):
            redirect = self._nd_redirect(iface, pkt, nexthop, dst, src_mac, now, rec)

        fwd = pkt[:7] + bytes((hlim - 1,)) + pkt[8:]
        if rec is not None:
            rec.add("ttl", f"hop limit {hlim} -> {hlim - 1}")
        stats.bump("ip6.forward")
        acts = self._resolve_and_send(out, nexthop, fwd, _ET_IP6, now, rec)
        acts.extend(redirect)
        return acts

    def _nd_redirect(self, iface: Interface, pkt: bytes, target: bytes, dst: bytes,
                     src_mac: bytes, now: float, rec: TraceRecord | None) -> list[Action]:
        """An ND Redirect (RFC 4861 §4.5, §8.2) from our link-local address to the source:
        target link-layer option when the target is resolved, and the redirected header."""
        if not self._bucket6.allow(now):
            self.stats.bump("icmp6.toofreq")
            return []
        src = pkt[8:24]
        options: list[NdOption] = []
        entry = self.neighbors.lookup(iface.ifindex, target)
        if entry is not None and entry.mac is not None:
            options.append(NdOption(NdOptionType.TARGET_LL, entry.mac))
        # The whole redirect within the minimum MTU: 40 (IPv6) + 40 (redirect) + options.
        room = 1280 - 40 - 40 - sum(8 for _ in options)
        options.append(redirected_header_option(pkt, room))
        msg = Redirect(target, dst, tuple(options)).pack(iface.link_local, src)
        hdr = _IP6_FIXED.pack(0x60000000, len(msg), _PROTO_ICMP6, _ND_HOP_LIMIT,
                              iface.link_local, src)
        self.stats.bump("ip6.redirectsent")
        self.stats.bump("icmp6.outhist.137")
        self.stats.bump("ip6.localout")
        if rec is not None:
            rec.add("icmp", f"redirect {IPv6Address(dst)} via {IPv6Address(target)}")
        return [Transmit(iface.ifindex, src_mac + iface.mac + _ET_IP6 + hdr + msg)]

    # --- IPv6 output -------------------------------------------------------------------------

    def _output6(self, pkt: bytes, via: Interface, now: float, rec: TraceRecord | None
                 ) -> list[Action]:
        """Send a packet the router originated. Link-local and link-scope multicast
        destinations leave by `via` (the interface the cause arrived on)."""
        self.stats.bump("ip6.localout")
        dst = pkt[24:40]
        if dst[0] == 0xFF:
            return [Transmit(via.ifindex, ipv6_multicast_mac(dst) + via.mac + _ET_IP6 + pkt)]
        if _is_link_local6(dst):
            out, nexthop = via, dst
        else:
            route = self.fib.lookup_v6(int.from_bytes(dst, "big"))
            if route is None or route.type is not RouteType.UNICAST or route.ifindex is None:
                return self._drop("ip6.noroute", rec)
            out = self.interfaces[route.ifindex]
            nexthop = route.gateway.packed if route.gateway is not None else dst
        if len(pkt) > out.mtu:
            pieces = _fragment_own_v6(pkt, out.mtu, self._next_ident())
            self.stats.bump("ip6.fragmented")
            self.stats.bump("ip6.ofragments", len(pieces))
            acts: list[Action] = []
            for piece in pieces:
                acts.extend(self._resolve_and_send(out, nexthop, piece, _ET_IP6, now, rec))
            return acts
        return self._resolve_and_send(out, nexthop, pkt, _ET_IP6, now, rec)

    def _next_ident(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id


_BCAST4 = b"\xff\xff\xff\xff"
_ALL_HOSTS4 = b"\xe0\x00\x00\x01"  # 224.0.0.1 (RFC 1112 §4)
_LOOPBACK6 = b"\x00" * 15 + b"\x01"
_MAPPED = b"\x00" * 10 + b"\xff\xff"
_SOLICITED_PREFIX = b"\xff\x02" + b"\x00" * 9 + b"\x01\xff"


def _fragment_own_v6(pkt: bytes, mtu: int, ident: int) -> list[bytes]:
    """Source fragmentation (RFC 8200 §4.5) of a packet the router built itself: a bare
    40-byte header and its payload (routers never fragment packets in transit)."""
    payload = pkt[40:]
    step = (mtu - 48) & ~7
    pieces: list[bytes] = []
    for start in range(0, len(payload), step):
        chunk = payload[start:start + step]
        more = start + step < len(payload)
        frag_hdr = bytes((pkt[6], 0)) + ((start | more).to_bytes(2, "big")
                                          + ident.to_bytes(4, "big"))
        header = (pkt[:4] + (8 + len(chunk)).to_bytes(2, "big") + bytes((_NH_FRAGMENT,))
                  + pkt[7:40])
        pieces.append(header + frag_hdr + chunk)
    return pieces


def _addr_text(addr: bytes) -> str:
    return str(IPv4Address(addr) if len(addr) == 4 else IPv6Address(addr))


def _route_text(route: Route | None) -> str:
    if route is None:
        return "no route"
    if route.type is not RouteType.UNICAST:
        return f"{route.prefix} {route.type.value}"
    via = f" via {route.gateway}" if route.gateway is not None else " on-link"
    return f"{route.prefix}{via} ifindex {route.ifindex} ({route.origin.value})"
