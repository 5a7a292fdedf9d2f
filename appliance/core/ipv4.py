"""IPv4 and ARP input: what the router does with a frame that carries IPv4 or ARP.

Read top to bottom:

1. `_arp_input` — answer requests for our addresses, learn by the RFC 826 merge rule.
2. `_ip4_input` — BSD `ip_input` verification order (seed 003, figure 8.12; RFC 1812
   §5.2.2), then "to forward or not to forward" (figure 8.14): our address or a broadcast ->
   `_ip4_local` (reassembly, ICMP echo, port / protocol unreachable); otherwise
   `_ip4_forward` (BSD `ip_forward`, figures 8.17-8.20): TTL, route, redirect rules, MTU,
   TTL decrement with the RFC 1624 incremental checksum, then egress (`_emit4`).

`IPv4Input` is one of the parts `Router` is made of; its state is declared in `Egress`.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from appliance.core.actions import Action, Drop, Hold, Transmit
from appliance.core.egress import ZERO4, Egress, route_text
from appliance.core.fib import RouteOrigin, RouteType
from appliance.packet.arp import Arp, ArpOp
from appliance.packet.checksum import (
    incremental_update,
    internet_checksum,
    ones_complement_sum,
)
from appliance.packet.errors import PacketError
from appliance.packet.icmp import (
    IcmpType,
    ParamProblemCode,
    RedirectCode,
    TimeExceededCode,
    UnreachCode,
    frag_needed_rest,
    param_problem_rest,
)
from appliance.packet.ipproto import IPProto
from appliance.packet.ipv4 import IPV4_DF, IPV4_MF

if TYPE_CHECKING:
    from appliance.core.interfaces import Interface
    from appliance.core.trace import TraceRecord

__all__ = ["IPv4Input"]

_ARP_OPS = frozenset(ArpOp)
_DF = IPV4_DF << 13  # the flags in the 16-bit flags + fragment offset word (RFC 791 §3.1)
_MF = IPV4_MF << 13
_OFFMASK = 0x1FFF
_BCAST4 = b"\xff\xff\xff\xff"
_ALL_HOSTS4 = b"\xe0\x00\x00\x01"  # 224.0.0.1 (RFC 1112 §4)

# sysctl names read on the IPv4 path
_FORWARDING = "net.inet.ip.forwarding"
_REDIRECT = "net.inet.ip.redirect"
_BMCASTECHO = "net.inet.icmp.bmcastecho"


class IPv4Input(Egress):
    """ARP and IPv4 input, local delivery and forwarding."""

    # --- 2. ARP (RFC 826) ------------------------------------------------------------------

    def _arp_input(self, iface: Interface, pkt: bytes, now: float, rec: TraceRecord | None
                   ) -> list[Action]:
        stats = self.stats
        stats.bump("arp.received")
        try:
            arp = Arp.parse(pkt)
        except PacketError:
            return self._drop("arp.badpkt", rec)  # not Ethernet/IPv4, or truncated
        op, sha, spa, tpa = arp.op, arp.sender_mac, arp.sender_ip, arp.target_ip
        if op not in _ARP_OPS or sha[0] & 1:
            return self._drop("arp.badpkt", rec)
        stats.bump("arp.rxrequests" if op == ArpOp.REQUEST else "arp.rxreplies")
        if spa in iface.v4_addrs:
            return self._drop("arp.dupips", rec)  # someone else claims our address
        for_us = tpa in iface.v4_addrs
        # RFC 826 "Packet reception": update the sender if we know it (merge_flag); if we
        # are the target and it was not known, add it. A sender of 0.0.0.0 (an RFC 5227
        # probe) teaches nothing.
        acts: list[Action] = []
        if spa != ZERO4 and iface.v4_on_link(spa):
            known = self.neighbors.lookup(iface.ifindex, spa) is not None
            if known or for_us:
                if op == ArpOp.REPLY:
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
        if op == ArpOp.REQUEST:
            acts.append(Transmit(iface.ifindex,
                                 self._arp_frame(iface, ArpOp.REPLY, sha, tpa, sha, spa)))
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
                acts = self._icmp4_error(iface, pkt, l2_mcast, IcmpType.PARAM_PROBLEM,
                                         ParamProblemCode.POINTER, param_problem_rest(bad), now,
                                         rec)
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
            acts = self._icmp4_error(iface, pkt, l2_mcast, IcmpType.DEST_UNREACH,
                                     UnreachCode.SRC_ROUTE_FAILED, ZERO4, now, rec)
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
        if ((pkt[6] << 8) | pkt[7]) & (_MF | _OFFMASK):
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
        if proto == IPProto.ICMP:
            return self._icmp4_input(iface, pkt, hlen, l2_mcast or bcast, now, rec)
        if proto == IPProto.TCP:
            return self._tcp4_input(pkt, hlen, l2_mcast or bcast, now, rec)
        if proto == IPProto.UDP:
            # No transport listens on the router: port unreachable (suppressed for
            # broadcasts by the error rules).
            acts = self._icmp4_error(iface, pkt, l2_mcast or bcast, IcmpType.DEST_UNREACH,
                                     UnreachCode.PORT, ZERO4, now, rec)
            return self._deliver("ip.delivered", rec, acts, bump=False)
        stats.bump("ip.noproto")
        acts = self._icmp4_error(iface, pkt, l2_mcast or bcast, IcmpType.DEST_UNREACH,
                                 UnreachCode.PROTOCOL, ZERO4, now, rec)
        acts.append(Drop("ip.noproto"))
        return acts

    def _tcp4_input(self, pkt: bytes, hlen: int, mcast: bool, now: float,
                    rec: TraceRecord | None) -> list[Action]:
        src, dst = pkt[12:16], pkt[16:20]
        reset = self._closed_port(src, dst, pkt[hlen:], mcast, now, rec)
        if not isinstance(reset, bytes):
            return reset
        acts = self._output4(self._ip4_header(dst, src, IPProto.TCP, len(reset)) + reset, now,
                             rec)
        return self._deliver("ip.delivered", rec, acts, bump=False)

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
        if icmp_type != IcmpType.ECHO_REQUEST:
            return self._deliver(f"icmp.inhist.{icmp_type}", rec, bump=False)
        if mcast and not self._sysctl_v[_BMCASTECHO]:
            return self._drop("icmp.bmcastecho", rec)
        # icmp_reflect: the reply goes back from the address the request was sent to (our
        # interface's address when it was a broadcast), with our default TTL.
        dst = pkt[16:20]
        src = dst if dst in self.local4 else iface.v4_source_for(pkt[12:16])
        if src is None:
            return self._drop("icmp.badaddr", rec)
        ck = internet_checksum(bytes((IcmpType.ECHO_REPLY, 0, 0, 0)) + msg[4:])
        reply = bytes((IcmpType.ECHO_REPLY, 0)) + ck.to_bytes(2, "big") + msg[4:]
        stats.bump("icmp.reflect")
        stats.bump("icmp.outhist.0")
        if rec is not None:
            rec.add("icmp", "echo reply")
        return self._output4(self._ip4_header(src, pkt[12:16], IPProto.ICMP, len(reply),
                                              tos=pkt[1]) + reply, now, rec)

    # --- 3b. IPv4 forwarding (BSD ip_forward, figures 8.17-8.20) ----------------------------

    def _ip4_forward(self, iface: Interface, pkt: bytes, hlen: int, src_mac: bytes,
                     l2_mcast: bool, now: float, rec: TraceRecord | None) -> list[Action]:
        stats = self.stats
        if not self._sysctl_v[_FORWARDING]:
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
            acts = self._icmp4_error(iface, pkt, l2_mcast, IcmpType.TIME_EXCEEDED,
                                     TimeExceededCode.TTL, ZERO4, now, rec)
            return self._drop("ip.ttlexceeded", rec, acts)
        route = self.fib.lookup_v4(int.from_bytes(dst, "big"))
        if rec is not None:
            rec.add("fib", f"{IPv4Address(dst)} -> {route_text(route)}")
        if route is None:
            acts = self._icmp4_error(iface, pkt, l2_mcast, IcmpType.DEST_UNREACH, UnreachCode.NET,
                                     ZERO4, now, rec)
            return self._drop("ip.noroute", rec, acts)
        rtype = route.type
        if rtype is not RouteType.UNICAST:
            if rtype is RouteType.BLACKHOLE:
                return self._drop("ip.blackhole", rec)
            acts = self._icmp4_error(iface, pkt, l2_mcast, IcmpType.DEST_UNREACH,
                                     UnreachCode.ADMIN_PROHIBITED, ZERO4, now, rec)
            return self._drop("ip.reject", rec, acts)
        out = self.interfaces[route.ifindex]  # type: ignore[index]
        nexthop = route.gateway.packed if route.gateway is not None else dst
        flags_off = (pkt[6] << 8) | pkt[7]
        if len(pkt) > out.mtu and flags_off & _DF:
            # RFC 1191 §4: Fragmentation Needed with the next-hop MTU.
            if rec is not None:
                rec.add("mtu", f"{len(pkt)} > {out.mtu}, DF set")
            acts = self._icmp4_error(iface, pkt, l2_mcast, IcmpType.DEST_UNREACH,
                                     UnreachCode.FRAG_NEEDED, frag_needed_rest(out.mtu), now, rec)
            return self._drop("ip.cantfrag", rec, acts)

        # Redirect (figure 8.19): in and out on the same interface, the source on that
        # subnet, a route not learned from a redirect and not the default route, no source
        # route, redirects enabled. Host redirect to the next hop; the packet still goes.
        redirect: list[Action] = []
        if (route.ifindex == iface.ifindex and self._sysctl_v[_REDIRECT]
                and route.origin is not RouteOrigin.REDIRECT
                and route.prefix.prefixlen != 0 and iface.v4_on_link(pkt[12:16])):
            redirect = self._icmp4_error(iface, pkt, l2_mcast, IcmpType.REDIRECT, RedirectCode.HOST,
                                         nexthop, now, rec)
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

