"""Forwarding (BSD ip_forward, RFC 1812 §5.2/5.3; RFC 8200 for IPv6): TTL and hop-limit
decrement with the incremental checksum, Time Exceeded, no route, blackhole, reject, MTU
handling. Errors are compared with scapy-built golden frames."""

from __future__ import annotations

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    ICMP,
    IP,
    UDP,
    Ether,
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPv6,
    raw,
)

from appliance.core.router import Drop, Hold, Router

from routerkit import (
    H1,
    H1_LL,
    H1_MAC,
    H2,
    H2_MAC,
    R_MAC1,
    R_MAC2,
    Clock,
    Host,
    assert_frame,
    drops,
    learn,
    make_router,
    neighbor_advert,
    only_frame,
    transmits,
)

R1 = "198.51.100.1"
R1_6 = "2001:db8:1::1"


def _from_h1(l3: object) -> bytes:
    return raw(Ether(dst=R_MAC1, src=H1_MAC) / l3)


def test_forward_v4_decrements_ttl_incremental_checksum(r: Router, clock: Clock) -> None:
    pkt = IP(src=H1.ip4, dst=H2.ip4, ttl=64, id=4242, tos=0x10) / UDP(sport=5, dport=6) / b"data"
    acts = r.receive(1, _from_h1(pkt), clock.now)
    want = Ether(dst=H2_MAC, src=R_MAC2) / IP(src=H1.ip4, dst=H2.ip4, ttl=63, id=4242,
                                              tos=0x10) / UDP(sport=5, dport=6) / b"data"
    assert_frame(transmits(acts, 2)[0].frame, want)  # scapy recomputes the checksum in full
    assert r.stats.get("ip.forward") == 1


@pytest.mark.parametrize("ttl", [2, 3, 100, 255])
def test_incremental_checksum_many_ttls(r: Router, clock: Clock, ttl: int) -> None:
    pkt = IP(src=H1.ip4, dst=H2.ip4, ttl=ttl, id=ttl * 77) / ICMP()
    got = only_frame(r.receive(1, _from_h1(pkt), clock.now), 2)
    assert got[IP].ttl == ttl - 1
    fresh = got[IP].copy()
    del fresh.chksum  # scapy recomputes it from scratch
    assert IP(raw(fresh)).chksum == got[IP].chksum


def test_time_exceeded_quotes_original(r: Router, clock: Clock) -> None:
    pkt = IP(src=H1.ip4, dst=H2.ip4, ttl=1, id=11) / UDP(sport=33000, dport=33434) / (b"q" * 32)
    acts = r.receive(1, _from_h1(pkt), clock.now)
    got = only_frame(acts, 1)
    want = Ether(dst=H1_MAC, src=R_MAC1) / IP(src=R1, dst=H1.ip4, tos=0xC0, ttl=64,
                                              id=got[IP].id) / ICMP(type=11, code=0) / raw(pkt)
    assert_frame(transmits(acts)[0].frame, want)
    assert drops(acts) == ["ip.ttlexceeded"]
    assert r.stats.get("icmp.outhist.11") == 1 and r.stats.get("ip.forward") == 0


def test_no_route_net_unreachable(r: Router, clock: Clock) -> None:
    pkt = IP(src=H1.ip4, dst="203.0.114.9") / UDP()
    acts = r.receive(1, _from_h1(pkt), clock.now)
    got = only_frame(acts, 1)
    assert (got[ICMP].type, got[ICMP].code) == (3, 0) and got[IP].src == R1
    assert drops(acts) == ["ip.noroute"]


def test_blackhole_silent_reject_admin_prohibited(r: Router, clock: Clock) -> None:
    acts = r.receive(1, _from_h1(IP(src=H1.ip4, dst="192.0.2.200") / UDP()), clock.now)
    assert acts == [Drop("ip.blackhole")]
    acts = r.receive(1, _from_h1(IP(src=H1.ip4, dst="192.0.2.130") / UDP()), clock.now)
    got = only_frame(acts, 1)
    assert (got[ICMP].type, got[ICMP].code) == (3, 13)
    assert drops(acts) == ["ip.reject"]
    acts = r.receive(1, _from_h1(IPv6(src=H1.ip6, dst="2001:db8:77::1") / UDP()), clock.now)
    assert acts == [Drop("ip6.blackhole")]
    acts = r.receive(1, _from_h1(IPv6(src=H1.ip6, dst="2001:db8:66::1") / UDP()), clock.now)
    got = only_frame(acts, 1)
    assert (got[ICMPv6DestUnreach].type, got[ICMPv6DestUnreach].code) == (1, 1)


def test_frag_needed_with_next_hop_mtu(clock: Clock) -> None:
    r = make_router(interfaces=[
        {"name": "r1-a", "addresses": ["198.51.100.1/24", "2001:db8:1::1/64"]},
        {"name": "r1-b", "addresses": ["203.0.113.1/24", "2001:db8:2::1/64"], "mtu": 1280},
    ])
    learn(r, H1, clock.now)
    learn(r, H2, clock.now)
    pkt = IP(src=H1.ip4, dst=H2.ip4, flags="DF", id=3) / UDP(sport=1, dport=2) / (b"d" * 1400)
    acts = r.receive(1, _from_h1(pkt), clock.now)
    got = only_frame(acts, 1)
    want = Ether(dst=H1_MAC, src=R_MAC1) / IP(src=R1, dst=H1.ip4, tos=0xC0, ttl=64,
                                              id=got[IP].id) / ICMP(
        type=3, code=4, nexthopmtu=1280) / raw(pkt)[:548]
    assert_frame(transmits(acts)[0].frame, want)
    assert drops(acts) == ["ip.cantfrag"]

    # DF clear: fragmented to the 1280 MTU, every fragment decremented and valid.
    pkt = IP(src=H1.ip4, dst=H2.ip4, id=4) / UDP(sport=1, dport=2) / (b"e" * 1400)
    acts = r.receive(1, _from_h1(pkt), clock.now)
    frags = [Ether(t.frame)[IP] for t in transmits(acts, 2)]
    assert len(frags) == 2 and all(len(raw(f)) <= 1280 and f.ttl == 63 for f in frags)
    assert all(IP(raw(f)).chksum == f.chksum for f in frags)
    body = b"".join(raw(f.payload) for f in sorted(frags, key=lambda f: f.frag))
    assert body == raw(pkt[UDP])
    assert r.stats.get("ip.fragmented") == 1 and r.stats.get("ip.ofragments") == 2

    # IPv6 never fragments in transit: Packet Too Big with the MTU.
    pkt6 = IPv6(src=H1.ip6, dst=H2.ip6) / UDP(sport=1, dport=2) / (b"f" * 1400)
    acts = r.receive(1, _from_h1(pkt6), clock.now)
    got = only_frame(acts, 1)
    want6 = Ether(dst=H1_MAC, src=R_MAC1) / IPv6(src=R1_6, dst=H1.ip6, hlim=64) / (
        ICMPv6PacketTooBig(mtu=1280) / raw(pkt6)[:1232])
    assert_frame(transmits(acts)[0].frame, want6)
    assert drops(acts) == ["ip6.cantfrag"]


@pytest.mark.parametrize(("options", "pointer"), [
    (b"\x07\x00\x00\x00", 21),  # record route with length 0: points at the length
    (b"\x01\x01\x01\x44", 23),  # timestamp with no room for its length: points at its type
    (b"\x07\x09\x04\x00", 21),  # record route longer than the header
])
def test_bad_ip_options_parameter_problem(r: Router, clock: Clock, options: bytes,
                                          pointer: int) -> None:
    # RFC 1812 §5.2.5 / RFC 792: Parameter Problem code 0, the pointer (first byte of the
    # rest, counted from the start of the IP header) at the octet in error; never forwarded.
    pkt = IP(src=H1.ip4, dst=H2.ip4, options=options) / UDP(sport=1, dport=2)
    acts = r.receive(1, _from_h1(pkt), clock.now)
    got = only_frame(acts, 1)
    want = Ether(dst=H1_MAC, src=R_MAC1) / IP(src=R1, dst=H1.ip4, tos=0xC0, ttl=64,
                                              id=got[IP].id) / ICMP(
        type=12, code=0, ptr=pointer) / raw(pkt)
    assert_frame(transmits(acts)[0].frame, want)
    assert drops(acts) == ["ip.badoptions"]
    assert r.stats.get("ip.badoptions") == 1 and r.stats.get("ip.forward") == 0


def test_forward_v6_and_hop_limit(r: Router, clock: Clock) -> None:
    pkt = IPv6(src=H1.ip6, dst=H2.ip6, hlim=9, fl=0x12345) / ICMPv6EchoRequest(id=1, data=b"a")
    got = only_frame(r.receive(1, _from_h1(pkt), clock.now), 2)
    want = Ether(dst=H2_MAC, src=R_MAC2) / IPv6(src=H1.ip6, dst=H2.ip6, hlim=8, fl=0x12345) / (
        ICMPv6EchoRequest(id=1, data=b"a"))
    assert raw(got) == raw(want)
    assert r.stats.get("ip6.forward") == 1

    pkt = IPv6(src=H1.ip6, dst=H2.ip6, hlim=1) / UDP(sport=9, dport=33434)
    acts = r.receive(1, _from_h1(pkt), clock.now)
    want2 = Ether(dst=H1_MAC, src=R_MAC1) / IPv6(src=R1_6, dst=H1.ip6, hlim=64) / (
        ICMPv6TimeExceeded(code=0) / raw(pkt))
    assert_frame(transmits(acts)[0].frame, want2)
    assert drops(acts) == ["ip6.ttlexceeded"]

    acts = r.receive(1, _from_h1(IPv6(src=H1.ip6, dst="2001:db8:dead::1") / UDP()), clock.now)
    got = only_frame(acts, 1)
    assert (got[ICMPv6DestUnreach].code, drops(acts)) == (0, ["ip6.noroute"])


def test_no_time_exceeded_for_packets_to_router(r: Router, clock: Clock) -> None:
    got = only_frame(r.receive(1, _from_h1(IP(src=H1.ip4, dst=R1, ttl=0) / ICMP()), clock.now))
    assert got[ICMP].type == 0
    got = only_frame(r.receive(1, _from_h1(IPv6(src=H1.ip6, dst=R1_6, hlim=0)
                                           / ICMPv6EchoRequest()), clock.now))
    assert got.haslayer(ICMPv6EchoReply)
    assert r.stats.get("icmp.outhist.11") == 0 and r.stats.get("icmp6.outhist.3") == 0


def test_forwarding_off_not_forwarded(clock: Clock) -> None:
    r = make_router({"net.inet.ip.forwarding": 0, "net.inet6.ip6.forwarding": 0})
    learn(r, H1, clock.now)
    learn(r, H2, clock.now)
    acts = r.receive(1, _from_h1(IP(src=H1.ip4, dst=H2.ip4) / UDP()), clock.now)
    assert acts == [Drop("ip.cantforward")]
    acts = r.receive(1, _from_h1(IPv6(src=H1.ip6, dst=H2.ip6) / UDP()), clock.now)
    assert acts == [Drop("ip6.cantforward")]
    # the router still answers for itself
    assert transmits(r.receive(1, _from_h1(IP(src=H1.ip4, dst=R1) / ICMP()), clock.now))
    r.sysctl.set("net.inet.ip.forwarding", 1)
    assert transmits(r.receive(1, _from_h1(IP(src=H1.ip4, dst=H2.ip4) / UDP()), clock.now), 2)


def test_link_broadcast_and_link_local_never_forwarded(r: Router, clock: Clock) -> None:
    frame = raw(Ether(dst="ff:ff:ff:ff:ff:ff", src=H1_MAC) / IP(src=H1.ip4, dst=H2.ip4) / UDP())
    assert r.receive(1, frame, clock.now) == [Drop("ip.cantforward")]
    acts = r.receive(1, _from_h1(IPv6(src=H1.ip6, dst="fe80::99") / UDP()), clock.now)
    assert acts == [Drop("ip6.badscope")]
    # a link-local source may not leave its link: beyond scope
    learn(r, Host(1, H1_MAC, H1.ip4, H1_LL), clock.now)
    acts = r.receive(1, _from_h1(IPv6(src=H1_LL, dst=H2.ip6) / UDP()), clock.now)
    got = only_frame(acts, 1)
    assert (got[ICMPv6DestUnreach].code, got[IPv6].src) == (2, "fe80::ff:fe00:101")
    assert got[IPv6].dst == H1_LL and drops(acts) == ["ip6.badscope"]


def test_ttl_sysctl_sets_originated_ttl(r: Router, clock: Clock) -> None:
    r.sysctl.set("net.inet.ip.ttl", 33)
    r.sysctl.set("net.inet6.ip6.hlim", 44)
    got = only_frame(r.receive(1, _from_h1(IP(src=H1.ip4, dst=R1) / ICMP()), clock.now))
    assert got[IP].ttl == 33
    got = only_frame(r.receive(1, _from_h1(IP(src=H1.ip4, dst=H2.ip4, ttl=1) / UDP()),
                               clock.now))
    assert got[IP].ttl == 33
    got = only_frame(r.receive(1, _from_h1(IPv6(src=H1.ip6, dst=R1_6) / ICMPv6EchoRequest()),
                               clock.now))
    assert got[IPv6].hlim == 44


def test_unresolved_next_hop_holds_packet(router: Router, clock: Clock) -> None:
    learn(router, H1, clock.now)
    acts = router.receive(1, _from_h1(IP(src=H1.ip4, dst=H2.ip4) / UDP()), clock.now)
    assert acts[-1] == Hold("arp.queued")
    arp = only_frame(acts, 2)
    assert arp.dst == "ff:ff:ff:ff:ff:ff" and arp.pdst == H2.ip4 and arp.psrc == "203.0.113.1"


def test_icmp6_error_from_interface_without_global_address(clock: Clock) -> None:
    r = make_router(interfaces=[
        {"name": "r1-a", "addresses": ["198.51.100.1/24"]},  # link-local only for IPv6
        {"name": "r1-b", "addresses": ["203.0.113.1/24", "2001:db8:2::1/64"]},
    ], routes=[{"prefix": "2001:db8:1::/64", "interface": "r1-a"}])
    pkt = IPv6(src=H1.ip6, dst=H2.ip6, hlim=1) / UDP()
    acts = r.receive(1, _from_h1(pkt), clock.now)
    assert Hold("nd.queued") in acts  # h1 is not resolved yet: the error waits for it
    acts = r.receive(1, neighbor_advert(H1, 1), clock.now)
    frames = [Ether(t.frame) for t in transmits(acts, 1)]
    errors = [f for f in frames if f.haslayer(ICMPv6TimeExceeded)]
    assert errors and errors[0][IPv6].src == "2001:db8:2::1"
