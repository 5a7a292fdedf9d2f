"""The router core: frames and `now` in, actions out (sans-IO, h11 style).

Read top to bottom, this is the path of a frame:

1. `Router.receive` (this file) — Ethernet demux: our MAC, broadcast, or a multicast group we
   joined; then by EtherType to
2. `ipv4.py` — `_arp_input` (RFC 826) and `_ip4_input`: BSD `ip_input` verification order
   (seed 003, figure 8.12; RFC 1812 §5.2.2), local delivery or `_ip4_forward` (BSD
   `ip_forward`, figures 8.17-8.20);
3. `ipv6.py` — `_ip6_input`, the same for IPv6 (RFC 8200, RFC 4443), with Neighbor
   Discovery (RFC 4861) and ND redirects;
4. `egress.py` — `_emit4` / `_output4` / `_output6`, neighbor resolution and its queue
   (illumos `nce_queue_mp`, seed 000), fragmentation on egress, and the ICMP errors.

`Router` is those three parts (`IPv4Input`, `IPv6Input`, both built on `Egress`) plus what
this file holds: construction from a `RouterConfig`, the control-plane operations (routes,
addresses, static neighbors, link state, sysctls) and the timers (`tick`).

Results are values (`appliance.core.actions`): `Transmit(ifindex, frame)`, `Drop(reason)`,
`Deliver(reason)`, `Hold(reason)`. The reason of each is a `Stats` key that has already been
bumped, so every frame is accounted for.

Addresses on the packet path are packed bytes; routes are looked up with ints (`Fib.lookup_v4`
/ `lookup_v6`); no `ipaddress` objects are created per packet.
"""

from __future__ import annotations

import math
import random
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

from appliance.config import (
    ConfigError,
    InterfaceConfig,
    NeighborConfig,
    RouteConfig,
    RouterConfig,
)
from appliance.core import fragment
from appliance.core.actions import Action, Deliver, Drop, Hold, Transmit
from appliance.core.egress import ETHER_ARP, ETHER_IPV4, ETHER_IPV6, ZERO4, ZERO_MAC
from appliance.core.fib import Fib, Route, RouteOrigin, RouteType
from appliance.core.interfaces import Interface, make_interface
from appliance.core.ipv4 import IPv4Input
from appliance.core.ipv6 import IPv6Input
from appliance.core.neighbor import NeighborCache, NeighborTimers
from appliance.core.ratelimit import TokenBucket
from appliance.core.stats import Stats
from appliance.core.sysctl import Sysctl
from appliance.core.trace import Tracer
from appliance.packet.arp import ArpOp
from appliance.packet.ethernet import BROADCAST_MAC
from appliance.packet.icmp import IcmpType, TimeExceededCode
from appliance.packet.icmpv6 import Icmp6Type, TimeExceeded6Code
from appliance.packet.ipv6 import (
    ALL_NODES,
    UNSPECIFIED,
    ipv6_is_link_local,
    solicited_node_multicast,
)
from appliance.packet.nd import NdOption, NdOptionType, NeighborAdvertisement, NeighborSolicitation

__all__ = ["Action", "Deliver", "Drop", "Hold", "LinkChange", "LinkInfo", "Router", "Transmit"]


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


# sysctl names the router follows at run time
_ICMPLIM = "net.inet.icmp.icmplim"
_ERRPPS = "net.inet6.icmp6.errppslimit"
_MAXFRAG = "net.inet.ip.maxfragpackets"
_FRAGTTL = "net.inet.ip.fragttl"
_FRAGTTL6 = "net.inet6.ip6.fragttl"

_TIMER_KNOBS = {
    "net.link.ether.inet.max_age": ("reachable_time", 1.0),
    "net.link.ether.inet.maxhold": ("queue_len", None),
    "net.inet6.icmp6.nd6_delay": ("delay_first_probe", 1.0),
    "net.inet6.icmp6.nd6_retrans": ("retrans_timer", 0.001),
    "net.inet6.icmp6.nd6_mmaxtries": ("max_multicast_solicit", None),
    "net.inet6.icmp6.nd6_umaxtries": ("max_unicast_solicit", None),
    "net.inet6.icmp6.nd6_gctimer": ("gc_stale", 1.0),
}


class Router(IPv4Input, IPv6Input):
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
        self.reassembly = fragment.Reassembler(max_datagrams=self._sysctl_v[_MAXFRAG],
                                               timeout_v4=self._sysctl_v[_FRAGTTL],
                                               timeout_v6=self._sysctl_v[_FRAGTTL6])
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
                if not ipv6_is_link_local(a):
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

    def add_interface(self, ic: InterfaceConfig, link: LinkInfo, now: float) -> list[Action]:
        """Take a data interface at run time (a reload naming a new one): its connected and
        local routes enter the FIB and it announces itself as at start; the caller opens its
        ring. Its static routes and neighbors are added afterwards like any other."""
        if ic.name in self.by_name or link.ifindex in self.interfaces:
            raise ConfigError([f"interface {ic.name!r}: already one of the router's"])
        mtu = ic.mtu if ic.mtu is not None else link.mtu
        iface = make_interface(link.ifindex, ic.name, link.mac, mtu, list(ic.addresses),
                               ic.link_local)
        for packed in [*iface.v4_addrs, *(a for a in iface.v6_addrs
                                          if not ipv6_is_link_local(a))]:
            other = self.local4.get(packed) or self.local6.get(packed)
            if other is not None:
                raise ConfigError([f"interface {ic.name!r}: an address is already on "
                                   f"{other.name}"])
        self.interfaces[link.ifindex] = iface
        self.by_name[ic.name] = iface
        self._rebuild_local()
        addresses: list[IPv4Interface | IPv6Interface] = [*iface.ipv4, *iface.ipv6]
        for address in addresses:
            for route in self._address_routes(iface, address):
                if self.fib.get(route.prefix) is None or route.origin is RouteOrigin.LOCAL:
                    self.fib.add(route)
        return self._announce(iface)

    def remove_interface(self, name: str) -> LinkChange:
        """Give a data interface up at run time: every route out of it (connected, local,
        static; used or kept aside while its link was down) is withdrawn, its neighbors are
        flushed (queued packets dropped and counted), its addresses stop being ours."""
        iface = self.by_name.get(name)
        if iface is None:
            raise ConfigError([f"interface {name!r}: not one of the router's"])
        ifindex = iface.ifindex
        change = self.set_link(ifindex, False, 0.0) if iface.up else LinkChange(
            name, False, False, 0, 0, 0, [])
        gone = [route for _net, _len, route in [*self.fib.iter_v4(), *self.fib.iter_v6()]
                if route.ifindex == ifindex]
        for route in gone:
            self.fib.delete(route.prefix)
        parked = [prefix for prefix, route in self._linkdown.items() if route.ifindex == ifindex]
        for prefix in parked:
            del self._linkdown[prefix]
        self.neighbors.flush(ifindex, include_static=True)
        del self.interfaces[ifindex]
        del self.by_name[name]
        self._rebuild_local()
        return LinkChange(name, False, True, len(gone) + len(parked), change.neighbors,
                          change.dropped, [])

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
        elif name == _FRAGTTL:
            self.reassembly.timeout_v4 = value
        elif name == _FRAGTTL6:
            self.reassembly.timeout_v6 = value
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
                iface, ArpOp.REQUEST, BROADCAST_MAC, a, ZERO_MAC, a)))
            self.stats.bump("arp.txannounce")
        for a in v6:
            ns = NeighborSolicitation(a).pack(UNSPECIFIED, solicited_node_multicast(a))
            out.append(self._nd_frame(iface, UNSPECIFIED, solicited_node_multicast(a), ns))
            self.stats.bump("nd.txns")
        for a in v6:
            na = NeighborAdvertisement(True, False, True, a, (
                NdOption(NdOptionType.TARGET_LL, iface.mac),)).pack(a, ALL_NODES)
            out.append(self._nd_frame(iface, a, ALL_NODES, na))
            self.stats.bump("nd.txna")
        return out

    def neighbor_used(self, ifindex: int, addr: bytes, now: float) -> list[Action]:
        """The fast path forwarded a packet to a STALE neighbor (`FastPath.stale_neighbors()`):
        the cache steps it as if the slow path had sent it (STALE -> DELAY, RFC 4861 §7.3.3)."""
        return self._neighbor_events(self.neighbors.note_sent(ifindex, addr, now), now, None)

    def next_timer(self) -> float:
        """When `tick` next has work (a neighbor timer, a reassembly timeout); math.inf if
        none. The daemon sleeps until then (or its idle tick) instead of ticking 10 times a
        second for nothing."""
        reassembly = self.reassembly.next_deadline()
        return min(self.neighbors.next_deadline, math.inf if reassembly is None else reassembly)

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
                out += self._icmp6_error(iface, gone.first_fragment, False,
                                         Icmp6Type.TIME_EXCEEDED, TimeExceeded6Code.REASSEMBLY,
                                         ZERO4, now, None)
            else:
                out += self._icmp4_error(iface, gone.first_fragment, False,
                                         IcmpType.TIME_EXCEEDED, TimeExceededCode.REASSEMBLY,
                                         ZERO4, now, None)
        return out

    # --- 1. Ethernet demux ----------------------------------------------------------------

    def receive(self, ifindex: int, frame: bytes, now: float, punt: str | None = None
                ) -> list[Action]:
        """Process one received Ethernet frame (FCS not included). `punt` is the fast path's
        reason for handing the frame over, recorded in the trace."""
        self._counters["link.received"] += 1
        if type(frame) is not bytes:
            frame = bytes(frame)  # a ring slot (memoryview) must not outlive this call
        tracer = self.tracer
        rec = (tracer.begin(ifindex, now, frame)
               if tracer.enabled and tracer.wants(frame) else None)
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
        if ethertype == ETHER_IPV4:
            return self._ip4_input(iface, frame[14:], frame[6:12], l2_mcast, now, rec)
        if ethertype == ETHER_IPV6:
            return self._ip6_input(iface, frame[14:], frame[6:12], l2_mcast, now, rec)
        if ethertype == ETHER_ARP:
            return self._arp_input(iface, frame[14:], now, rec)
        return self._drop("link.badtype", rec)

