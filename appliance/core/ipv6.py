"""IPv6 input and Neighbor Discovery: what the router does with a frame that carries IPv6.

Read top to bottom:

1. `_ip6_input` — RFC 8200 and FreeBSD `ip6_input` checks (version, length, scope rules),
   then our address or a group we joined -> `_ip6_local`; otherwise `_ip6_forward`.
2. `_ip6_local` — extension headers (options by their action bits, routing headers,
   fragments and reassembly), then ICMPv6 (`_icmp6_input`: echo, Neighbor Discovery),
   port unreachable for UDP/TCP, Parameter Problem for an unknown next header.
3. Neighbor Discovery (RFC 4861): `_nd_solicit_input`, `_nd_advert_input`.
4. `_ip6_forward` (FreeBSD `ip6_forward`): hop limit, route, scope, MTU (Packet Too Big, never
   fragmented in transit), ND redirect (`_nd_redirect`), then egress.

`IPv6Input` is one of the parts `Router` is made of; its state is declared in `Egress`.
"""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import TYPE_CHECKING

from appliance.core.actions import Action, Deliver, Drop, Hold, Transmit
from appliance.core.egress import ETHER_IPV6, HLIM, ND_HOP_LIMIT, ZERO4, Egress, route_text
from appliance.core.fib import RouteOrigin, RouteType
from appliance.packet.checksum import internet_checksum, ones_complement_sum, pseudo_header_v6
from appliance.packet.errors import PacketError
from appliance.packet.icmpv6 import Icmp6Type, ParamProblem6Code, TimeExceeded6Code, Unreach6Code
from appliance.packet.ipproto import IPProto
from appliance.packet.ipv6 import (
    ALL_NODES,
    LOOPBACK,
    UNSPECIFIED,
    IPv6Header,
    ipv6_is_link_local,
    walk_extension_headers,
)
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

if TYPE_CHECKING:
    from appliance.core.interfaces import Interface
    from appliance.core.trace import TraceRecord

__all__ = ["IPv6Input"]

# What the two high bits of an unrecognised IPv6 option type ask for (RFC 8200 §4.2), and a
# malformed option list.
_OPT_SKIP = 0
_OPT_DISCARD = 1
_OPT_REPORT = 2
_OPT_REPORT_UNICAST = 3
_OPT_MALFORMED = -1

_MAPPED = b"\x00" * 10 + b"\xff\xff"  # ::ffff:0:0/96, IPv4-mapped (RFC 4291 §2.5.5.2)
_SOLICITED_PREFIX = b"\xff\x02" + b"\x00" * 9 + b"\x01\xff"  # ff02::1:ff00:0/104

# sysctl names read on the IPv6 path
_FORWARDING = "net.inet6.ip6.forwarding"
_REDIRECT = "net.inet6.ip6.redirect"


class IPv6Input(Egress):
    """IPv6 input, local delivery, Neighbor Discovery and forwarding."""

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
        if plen == 0 and pkt[6] == IPProto.HOPOPTS:
            return self._drop("ip6.badoptions", rec)  # jumbograms are not supported
        if n - 40 < plen:
            return self._drop("ip6.tooshort", rec)
        if n - 40 > plen:
            pkt = pkt[:40 + plen]
        src = pkt[8:24]
        dst = pkt[24:40]
        # RFC 4291 §2.5.2/2.5.3, FreeBSD ip6_input: multicast or loopback sources, loopback
        # or unspecified destinations and IPv4-mapped addresses violate scope rules.
        if (src[0] == 0xFF or src == LOOPBACK or dst in (LOOPBACK, UNSPECIFIED)
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
        if src == UNSPECIFIED:
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
            if _holds_first_fragment_header(pkt):
                return self._incomplete_chain(iface, pkt, l2_mcast or mcast, now, rec)
            return self._drop("ip6.tooshort", rec)
        if (walk.fragment is not None and walk.fragment.offset == 0
                and walk.upper_offset + _UPPER_HEADER.get(walk.upper_protocol, 0) > len(pkt)):
            return self._incomplete_chain(iface, pkt, l2_mcast or mcast, now, rec)
        for nh, off in walk.headers:
            if nh in (IPProto.HOPOPTS, IPProto.IPV6_DSTOPTS):
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
                                                 Icmp6Type.PARAM_PROBLEM, ParamProblem6Code.OPTION,
                                                 where.to_bytes(4, "big"), now, rec)
                    return self._drop("ip6.badoptions", rec, acts)
            if nh == IPProto.IPV6_ROUTE and pkt[off + 3] != 0:
                # We know no routing header type: with segments left, RFC 8200 §4.4 says
                # Parameter Problem code 0 pointing at the routing type.
                acts = self._icmp6_error(iface, pkt, l2_mcast or mcast, Icmp6Type.PARAM_PROBLEM,
                                         ParamProblem6Code.HEADER, (off + 2).to_bytes(4, "big"),
                                         now, rec)
                return self._drop("ip6.badoptions", rec, acts)
        if walk.fragment is not None:
            result = self.reassembly.add_v6(pkt, now)
            for key, count in result.counters.items():
                stats.bump(key, count)
            if result.param_problem_pointer is not None:
                # RFC 8200 §4.5: a fragment whose length is not a multiple of 8, or that
                # reaches past 65535 bytes: Parameter Problem code 0.
                acts = self._icmp6_error(iface, pkt, l2_mcast or mcast, Icmp6Type.PARAM_PROBLEM,
                                         ParamProblem6Code.HEADER,
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
        if proto == IPProto.ICMPV6:
            return self._icmp6_input(iface, pkt, walk.upper_offset, src_mac, l2_mcast, mcast,
                                     now, rec)
        if proto == IPProto.TCP:
            return self._tcp6_input(iface, pkt, walk.upper_offset, l2_mcast or mcast, now, rec)
        if proto == IPProto.UDP:
            acts = self._icmp6_error(iface, pkt, l2_mcast or mcast, Icmp6Type.DEST_UNREACH,
                                     Unreach6Code.PORT, ZERO4, now, rec)
            return [*acts, Deliver("ip6.delivered")]
        if proto == IPProto.IPV6_NONXT:  # No Next Header (RFC 8200 §4.7): nothing to do
            return [Deliver("ip6.delivered")]
        stats.bump("ip6.noproto")
        # Parameter Problem code 1, pointer at the Next Header field naming the protocol.
        pointer = 6 if not walk.headers else walk.headers[-1][1]
        acts = self._icmp6_error(iface, pkt, l2_mcast or mcast, Icmp6Type.PARAM_PROBLEM,
                                 ParamProblem6Code.NEXT_HEADER, pointer.to_bytes(4, "big"), now,
                                 rec)
        acts.append(Drop("ip6.noproto"))
        return acts

    def _incomplete_chain(self, iface: Interface, pkt: bytes, mcast: bool, now: float,
                          rec: TraceRecord | None) -> list[Action]:
        """RFC 7112 §5: a first fragment addressed to us that does not hold every header up
        to and including the upper-layer header is dropped with Parameter Problem code 3
        (pointer 0). Transit first fragments are forwarded untouched (`_ip6_forward` never
        looks past the fixed header), as the issue asks and RFC 7112 §5 allows."""
        self.stats.bump("ip6.fragments")
        if rec is not None:
            rec.add("reassembly", "first fragment without the whole header chain (RFC 7112)")
        acts = self._icmp6_error(iface, pkt, mcast, Icmp6Type.PARAM_PROBLEM,
                                 ParamProblem6Code.INCOMPLETE_CHAIN, ZERO4, now, rec)
        return self._drop("ip6.fragdropped", rec, acts)

    def _tcp6_input(self, iface: Interface, pkt: bytes, off: int, mcast: bool, now: float,
                    rec: TraceRecord | None) -> list[Action]:
        src, dst = pkt[8:24], pkt[24:40]
        reset = self._closed_port(src, dst, pkt[off:], mcast, now, rec)
        if not isinstance(reset, bytes):
            return reset
        hdr = IPv6Header(0, 0, len(reset), IPProto.TCP, self._sysctl_v[HLIM], dst, src).pack()
        return [*self._output6(hdr + reset, iface, now, rec), Deliver("ip6.delivered")]

    def _icmp6_input(self, iface: Interface, pkt: bytes, off: int, src_mac: bytes,
                     l2_mcast: bool, mcast: bool, now: float, rec: TraceRecord | None
                     ) -> list[Action]:
        stats = self.stats
        msg = pkt[off:]
        src = pkt[8:24]
        dst = pkt[24:40]
        if len(msg) < 8:
            return self._drop("icmp6.tooshort", rec)
        if ones_complement_sum(msg, pseudo_header_v6(src, dst, IPProto.ICMPV6, len(msg))) != 0xFFFF:
            return self._drop("icmp6.checksum", rec)
        icmp_type = msg[0]
        stats.bump(f"icmp6.inhist.{icmp_type}")
        if icmp_type == Icmp6Type.ECHO_REQUEST:
            if src == UNSPECIFIED:
                return self._drop("ip6.badscope", rec)
            # RFC 4443 §4.2: reply from the address the request was sent to, or for a
            # multicast request from a unicast address of the interface.
            reply_src = dst if not mcast else iface.v6_source_for(src)
            reply = bytes((Icmp6Type.ECHO_REPLY, 0, 0, 0)) + msg[4:]
            ck = internet_checksum(reply, pseudo_header_v6(reply_src, src, IPProto.ICMPV6,
                                                           len(reply)))
            reply = reply[:2] + ck.to_bytes(2, "big") + reply[4:]
            stats.bump("icmp6.reflect")
            stats.bump("icmp6.outhist.129")
            if rec is not None:
                rec.add("icmp", "echo reply")
            hdr = IPv6Header(0, 0, len(reply), IPProto.ICMPV6, self._sysctl_v[HLIM], reply_src,
                             src).pack()
            return self._output6(hdr + reply, iface, now, rec)
        if icmp_type == Icmp6Type.NEIGHBOR_SOLICIT:
            return self._nd_solicit_input(iface, pkt, msg, src_mac, now, rec)
        if icmp_type == Icmp6Type.NEIGHBOR_ADVERT:
            return self._nd_advert_input(iface, pkt, msg, now, rec)
        if icmp_type in (Icmp6Type.ROUTER_SOLICIT, Icmp6Type.ROUTER_ADVERT, Icmp6Type.REDIRECT):
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
        if (pkt[7] != ND_HOP_LIMIT or ns.target[0] == 0xFF
                or (src == UNSPECIFIED and (dst[:13] != _SOLICITED_PREFIX or sll is not None))):
            return self._drop("icmp6.badns", rec)
        if ns.target not in iface.v6_addrs:
            return self._deliver("nd.ignored", rec)
        opts = (NdOption(NdOptionType.TARGET_LL, iface.mac),)
        if src == UNSPECIFIED:
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
        if pkt[7] != ND_HOP_LIMIT or na.target[0] == 0xFF or (pkt[24] == 0xFF and na.solicited):
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


    # --- 4b. IPv6 forwarding (RFC 8200, FreeBSD ip6_forward) ------------------------------------

    def _ip6_forward(self, iface: Interface, pkt: bytes, src_mac: bytes, l2_mcast: bool,
                     now: float, rec: TraceRecord | None) -> list[Action]:
        stats = self.stats
        if not self._sysctl_v[_FORWARDING]:
            return self._drop("ip6.cantforward", rec)
        src = pkt[8:24]
        dst = pkt[24:40]
        if l2_mcast:
            return self._drop("ip6.cantforward", rec)
        if ipv6_is_link_local(dst):
            return self._drop("ip6.badscope", rec)  # link-local is never forwarded
        hlim = pkt[7]
        if hlim <= 1:
            if rec is not None:
                rec.add("ttl", f"hop limit {hlim} expires in transit")
            acts = self._icmp6_error(iface, pkt, l2_mcast, Icmp6Type.TIME_EXCEEDED,
                                     TimeExceeded6Code.HOP_LIMIT, ZERO4, now, rec)
            return self._drop("ip6.ttlexceeded", rec, acts)
        route = self.fib.lookup_v6(int.from_bytes(dst, "big"))
        if rec is not None:
            rec.add("fib", f"{IPv6Address(dst)} -> {route_text(route)}")
        if route is None:
            acts = self._icmp6_error(iface, pkt, l2_mcast, Icmp6Type.DEST_UNREACH,
                                     Unreach6Code.NO_ROUTE, ZERO4, now, rec)
            return self._drop("ip6.noroute", rec, acts)
        if route.type is not RouteType.UNICAST:
            if route.type is RouteType.BLACKHOLE:
                return self._drop("ip6.blackhole", rec)
            acts = self._icmp6_error(iface, pkt, l2_mcast, Icmp6Type.DEST_UNREACH,
                                     Unreach6Code.ADMIN_PROHIBITED, ZERO4, now, rec)
            return self._drop("ip6.reject", rec, acts)
        out = self.interfaces[route.ifindex]  # type: ignore[index]
        if ipv6_is_link_local(src) and out is not iface:
            # RFC 4007 §9: a link-local source cannot leave its link.
            acts = self._icmp6_error(iface, pkt, l2_mcast, Icmp6Type.DEST_UNREACH,
                                     Unreach6Code.BEYOND_SCOPE, ZERO4, now, rec)
            return self._drop("ip6.badscope", rec, acts)
        if len(pkt) > out.mtu:
            # RFC 8200 §5: routers never fragment; Packet Too Big with the link MTU.
            if rec is not None:
                rec.add("mtu", f"{len(pkt)} > {out.mtu}")
            acts = self._icmp6_error(iface, pkt, l2_mcast, Icmp6Type.PACKET_TOO_BIG, 0,
                                     out.mtu.to_bytes(4, "big"), now, rec)
            return self._drop("ip6.cantfrag", rec, acts)
        nexthop = route.gateway.packed if route.gateway is not None else dst

        # RFC 4861 §8.2: redirect when the packet leaves by the interface it came in on, its
        # source is a neighbor, and a better first hop (the gateway's link-local address,
        # or the destination itself when on-link) exists.
        redirect: list[Action] = []
        if (out is iface and self._sysctl_v[_REDIRECT]
                and route.origin is not RouteOrigin.REDIRECT and iface.v6_on_link(src)
                and (route.gateway is None or ipv6_is_link_local(nexthop))):
            redirect = self._nd_redirect(iface, pkt, nexthop, dst, src_mac, now, rec)

        fwd = pkt[:7] + bytes((hlim - 1,)) + pkt[8:]
        if rec is not None:
            rec.add("ttl", f"hop limit {hlim} -> {hlim - 1}")
        stats.bump("ip6.forward")
        acts = self._resolve_and_send(out, nexthop, fwd, ETHER_IPV6, now, rec)
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
        hdr = IPv6Header(0, 0, len(msg), IPProto.ICMPV6, ND_HOP_LIMIT, iface.link_local,
                         src).pack()
        self.stats.bump("ip6.redirectsent")
        self.stats.bump("icmp6.outhist.137")
        self.stats.bump("ip6.localout")
        if rec is not None:
            rec.add("icmp", f"redirect {IPv6Address(dst)} via {IPv6Address(target)}")
        return [Transmit(iface.ifindex, src_mac + iface.mac + ETHER_IPV6 + hdr + msg)]


# The upper-layer headers RFC 7112 asks the first fragment to hold whole: the bytes each
# needs (Linux ipv6_frag_thdr_truncated counts the same: tcphdr, udphdr, icmp6hdr).
_UPPER_HEADER: dict[int, int] = {IPProto.TCP: 20, IPProto.UDP: 8, IPProto.ICMPV6: 8}


def _holds_first_fragment_header(pkt: bytes) -> bool:
    """Whether the header chain of `pkt` (which runs past the packet somewhere) has a
    Fragment header with offset 0 before the point where it breaks off: a first fragment
    whose chain is incomplete (RFC 7112), rather than a packet that is merely short."""
    nh, off, n = pkt[6], 40, len(pkt)
    while off + 8 <= n:
        if nh == IPProto.IPV6_FRAG:
            return (pkt[off + 2] << 8 | pkt[off + 3]) & 0xFFF8 == 0
        if nh not in (IPProto.HOPOPTS, IPProto.IPV6_ROUTE, IPProto.IPV6_DSTOPTS):
            return False
        nh, off = pkt[off], off + (pkt[off + 1] + 1) * 8
    return False
