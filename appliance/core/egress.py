"""Egress: how the router sends what it forwards or originates, and the ICMP errors it emits.

- `_output4` / `_output6` route a packet the router built itself (ip_output); `_emit4`
  fragments an IPv4 packet for the outgoing MTU (DF is clear there: the caller checked);
  `_fragment_own_v6` is source fragmentation of the router's own IPv6 packets (routers never
  fragment IPv6 in transit, RFC 8200 §5).
- `_resolve_and_send`: the neighbor cache gives a MAC or queues the packet on an INCOMPLETE
  entry (illumos `nce_queue_mp`, seed 000); `_neighbor_events` turns its events into ARP
  requests / neighbor solicitations, released packets (`nce_resolv_ok`) and, when resolution
  fails, ICMP host / address unreachable for each queued packet.
- `_icmp4_error` / `_icmp6_error`: the suppression rules (`icmp_error`), the rate limit, the
  source address choice, then `_output4` / `_output6`.

`Egress` is one of the parts `Router` is made of (with `IPv4Input` and `IPv6Input`); it holds
no state of its own: the attributes declared below are set by `Router.__init__`.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING

from appliance.core import fragment, icmp_error
from appliance.core.actions import Action, Deliver, Drop, Hold, Transmit
from appliance.core.fib import Fib, Route, RouteType
from appliance.core.neighbor import (
    NeighborCache,
    QueueOverflow,
    Release,
    ResolutionFailed,
    Solicit,
)
from appliance.core.tcp_reset import closed_port_reset, with_checksum
from appliance.packet.arp import Arp, ArpOp
from appliance.packet.checksum import pseudo_header_v4, pseudo_header_v6
from appliance.packet.errors import PacketError
from appliance.packet.ethernet import BROADCAST_MAC, EtherType, ipv6_multicast_mac
from appliance.packet.icmp import IcmpType, UnreachCode
from appliance.packet.icmpv6 import Icmp6Type, Unreach6Code
from appliance.packet.ipproto import IPProto
from appliance.packet.ipv4 import IPv4Header
from appliance.packet.ipv6 import IPv6Header, ipv6_is_link_local, solicited_node_multicast
from appliance.packet.nd import NdOption, NdOptionType, NeighborSolicitation

if TYPE_CHECKING:
    from appliance.core.interfaces import Interface
    from appliance.core.ratelimit import TokenBucket
    from appliance.core.stats import Stats
    from appliance.core.trace import TraceRecord

__all__ = ["ETHER_ARP", "ETHER_IPV4", "ETHER_IPV6", "Egress", "addr_text", "route_text"]

# EtherTypes as the two bytes on the wire.
ETHER_IPV4 = EtherType.IPV4.to_bytes(2, "big")
ETHER_IPV6 = EtherType.IPV6.to_bytes(2, "big")
ETHER_ARP = EtherType.ARP.to_bytes(2, "big")

ND_HOP_LIMIT = 255  # RFC 4861 §7.1: ND messages are sent and accepted with hop limit 255
ZERO4 = b"\x00" * 4
"""The unused 4 bytes of most ICMP errors, and the unspecified IPv4 address."""
ZERO_MAC = b"\x00" * 6

# sysctl names read on the egress path
TTL = "net.inet.ip.ttl"
HLIM = "net.inet6.ip6.hlim"


class Egress:
    """The output half of the router; state is declared here, set by `Router.__init__`."""

    stats: Stats
    _counters: dict[str, int]
    _sysctl_v: dict[str, int]
    fib: Fib
    neighbors: NeighborCache
    interfaces: dict[int, Interface]
    local4: dict[bytes, Interface]
    local6: dict[bytes, Interface]
    _broadcasts4: set[bytes]
    _bucket4: TokenBucket
    _bucket6: TokenBucket
    _ip_id: int
    reassembly: fragment.Reassembler

    def _drop(self, reason: str, rec: TraceRecord | None, acts: list[Action] | None = None,
              *, bump: bool = True) -> list[Action]:
        return self._end(Drop(reason), "drop", reason, rec, acts, bump)

    def _deliver(self, reason: str, rec: TraceRecord | None, acts: list[Action] | None = None,
                 *, bump: bool = True) -> list[Action]:
        return self._end(Deliver(reason), "deliver", reason, rec, acts, bump)

    def _end(self, action: Action, stage: str, reason: str, rec: TraceRecord | None,
             acts: list[Action] | None, bump: bool) -> list[Action]:
        """A packet's last action (dropped or delivered here): counted under `reason`, traced,
        appended to what the packet already caused."""
        if bump:
            self.stats.bump(reason)
        if rec is not None:
            rec.add(stage, reason)
        if acts:
            acts.append(action)
            return acts
        return [action]


    def _closed_port(self, src: bytes, dst: bytes, segment: bytes, mcast: bool, now: float,
                     rec: TraceRecord | None) -> bytes | list[Action]:
        """TCP to one of our addresses (`src` -> `dst`, either family): every port is
        closed, so the reset to send, checksummed (`tcp_reset`), or the drop that ends the
        segment instead (bad segment, a reset, a broadcast, the rate limit)."""
        self.stats.bump("tcp.rcvtotal")
        if mcast:
            return self._drop("tcp.noport", rec)  # tcp_input: no reset to a broadcast
        pseudo = pseudo_header_v4 if len(src) == 4 else pseudo_header_v6
        answer = closed_port_reset(segment, pseudo(src, dst, IPProto.TCP, len(segment)))
        if answer.segment is None:
            return self._drop(answer.counter, rec)
        self.stats.bump("tcp.noport")
        if not (self._bucket4 if len(src) == 4 else self._bucket6).allow(now):
            return self._drop("tcp.rstlimited", rec)
        self.stats.bump("tcp.sndrst")
        if rec is not None:
            rec.add("tcp", f"closed port: reset to {addr_text(src)}")
        return with_checksum(answer.segment,
                             pseudo(dst, src, IPProto.TCP, len(answer.segment)))

    def _arp_frame(self, iface: Interface, op: ArpOp, dst_mac: bytes, sender_ip: bytes,
                   target_mac: bytes, target_ip: bytes) -> bytes:
        return (dst_mac + iface.mac + ETHER_ARP
                + Arp(op, iface.mac, sender_ip, target_mac, target_ip).pack())

    # --- IPv4 output ------------------------------------------------------------------------

    def _ip4_header(self, src: bytes, dst: bytes, proto: int, payload_len: int, tos: int = 0,
                    ttl: int | None = None) -> bytes:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return IPv4Header(tos, 20 + payload_len, self._ip_id, 0, 0,
                          self._sysctl_v[TTL] if ttl is None else ttl, proto, 0, src,
                          dst).pack()

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
                acts.extend(self._resolve_and_send(out, nexthop, piece, ETHER_IPV4, now, rec))
            return acts
        return self._resolve_and_send(out, nexthop, pkt, ETHER_IPV4, now, rec)

    def _resolve_and_send(self, out: Interface, nexthop: bytes, pkt: bytes, ethertype: bytes,
                          now: float, rec: TraceRecord | None) -> list[Action]:
        mac, events = self.neighbors.resolve(out.ifindex, nexthop, pkt, now)
        if rec is not None:
            entry = self.neighbors.lookup(out.ifindex, nexthop)
            rec.add("neighbor", f"{addr_text(nexthop)} "
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
            rec.add("queue", f"waiting for {addr_text(nexthop)} on {out.name}")
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
                    et = ETHER_IPV4 if p[0] >> 4 == 4 else ETHER_IPV6
                    acts.append(Transmit(iface.ifindex, ev.mac + iface.mac + et + p))
                if rec is not None:
                    rec.add("release", f"{len(ev.packets)} queued for {addr_text(ev.addr)}")
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
            return self._arp_frame(iface, ArpOp.REQUEST, unicast_mac or BROADCAST_MAC, sender,
                                   ZERO_MAC, addr)
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
        if len(addr) == 16 and ipv6_is_link_local(addr):
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
            return self._icmp4_error(iface, pkt, False, IcmpType.DEST_UNREACH, UnreachCode.HOST,
                                     ZERO4, now, rec)
        return self._icmp6_error(iface, pkt, False, Icmp6Type.DEST_UNREACH, Unreach6Code.ADDRESS,
                                 ZERO4, now, rec)

    # --- ICMP errors (RFC 1812 §4.3.2.7, RFC 4443 §2.4) -------------------------------------

    def _error_admitted(self, verdict: str | None, family: int, icmp_type: int, now: float,
                        rec: TraceRecord | None) -> bool:
        """The gate every ICMP/ICMPv6 error passes: not suppressed (RFC 1812 §4.3.2.7, RFC 4443
        §2.4(e): `verdict` names the rule that applied, or is None) and a token in the family's
        bucket (icmplim / errppslimit). A refused error is counted and traced."""
        if verdict is not None:
            counter = icmp_error.suppression_counter(verdict, family)
            if counter is not None:
                self.stats.bump(counter)
            if rec is not None:
                rec.add("icmp", f"type {icmp_type} suppressed: {verdict}")
            return False
        if not (self._bucket4 if family == 4 else self._bucket6).allow(now):
            self.stats.bump("icmp.ratelimited" if family == 4 else "icmp6.toofreq")
            if rec is not None:
                rec.add("icmp", f"type {icmp_type} rate limited")
            return False
        return True

    def _icmp4_error(self, iface: Interface, pkt: bytes, l2_mcast: bool, icmp_type: int,
                     code: int, rest: bytes, now: float, rec: TraceRecord | None
                     ) -> list[Action]:
        """icmp_error: apply the suppression rules and the rate limit, build the message
        quoting as much of `pkt` as fits in 576 bytes, send it from the inbound interface's
        address."""
        stats = self.stats
        if icmp_type != IcmpType.REDIRECT:
            stats.bump("icmp.error")  # BSD icmp_error: redirects are not counted as errors
        verdict = icmp_error.should_suppress_v4(pkt, link_multicast=l2_mcast,
                                                 broadcast_addresses=self._broadcasts4)
        if not self._error_admitted(verdict, 4, icmp_type, now, rec):
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
                                                    self._sysctl_v[TTL],
                                                    ident=self._next_ident()), now, rec)

    def _icmp6_error(self, iface: Interface, pkt: bytes, l2_mcast: bool, icmp_type: int,
                     code: int, rest: bytes, now: float, rec: TraceRecord | None
                     ) -> list[Action]:
        stats = self.stats
        stats.bump("icmp6.error")
        verdict = icmp_error.should_suppress_v6(pkt, icmp_type, code, link_multicast=l2_mcast)
        if not self._error_admitted(verdict, 6, icmp_type, now, rec):
            return []
        dst = pkt[8:24]
        to_us = pkt[24:40]
        if (to_us in self.local6 or to_us in iface.v6_addrs) and (
                not ipv6_is_link_local(to_us) or ipv6_is_link_local(dst)):
            # RFC 4443 §2.2 (a): about a packet sent to one of our unicast addresses, from
            # that address (unless it is link-local and the destination is not: RFC 4007)
            src = to_us
        else:
            src = iface.v6_source_for(dst)
        if ipv6_is_link_local(src) and not ipv6_is_link_local(dst) and self.local6:
            # the interface has no global address: a link-local source could not reach an
            # off-link destination (RFC 4443 §2.2), so use one of the router's others
            src = next(iter(self.local6))
        stats.bump(f"icmp6.outhist.{icmp_type}")
        if rec is not None:
            rec.add("icmp", f"type {icmp_type} code {code} to {IPv6Address(dst)}")
        return self._output6(icmp_error.icmp6_error(pkt, icmp_type, code, rest, src,
                                                    self._sysctl_v[HLIM]), iface, now, rec)

    def _nd_frame(self, iface: Interface, src: bytes, dst: bytes, icmp6: bytes,
                  dst_mac: bytes | None = None) -> Transmit:
        """An ND message with hop limit 255 (§7.1), sent straight to the link."""
        hdr = IPv6Header(0, 0, len(icmp6), IPProto.ICMPV6, ND_HOP_LIMIT, src, dst).pack()
        self.stats.bump("ip6.localout")
        if dst_mac is None:
            dst_mac = ipv6_multicast_mac(dst)
        return Transmit(iface.ifindex, dst_mac + iface.mac + ETHER_IPV6 + hdr + icmp6)


    # --- IPv6 output -------------------------------------------------------------------------

    def _output6(self, pkt: bytes, via: Interface, now: float, rec: TraceRecord | None
                 ) -> list[Action]:
        """Send a packet the router originated. Link-local and link-scope multicast
        destinations leave by `via` (the interface the cause arrived on)."""
        self.stats.bump("ip6.localout")
        dst = pkt[24:40]
        if dst[0] == 0xFF:
            return [Transmit(via.ifindex, ipv6_multicast_mac(dst) + via.mac + ETHER_IPV6 + pkt)]
        if ipv6_is_link_local(dst):
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
                acts.extend(self._resolve_and_send(out, nexthop, piece, ETHER_IPV6, now, rec))
            return acts
        return self._resolve_and_send(out, nexthop, pkt, ETHER_IPV6, now, rec)

    def _next_ident(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id



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
        header = (pkt[:4] + (8 + len(chunk)).to_bytes(2, "big") + bytes((IPProto.IPV6_FRAG,))
                  + pkt[7:40])
        pieces.append(header + frag_hdr + chunk)
    return pieces


def addr_text(addr: bytes) -> str:
    return str(IPv4Address(addr) if len(addr) == 4 else IPv6Address(addr))


def route_text(route: Route | None) -> str:
    if route is None:
        return "no route"
    if route.type is not RouteType.UNICAST:
        return f"{route.prefix} {route.type.value}"
    via = f" via {route.gateway}" if route.gateway is not None else " on-link"
    return f"{route.prefix}{via} ifindex {route.ifindex} ({route.origin.value})"
