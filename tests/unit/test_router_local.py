"""Traffic addressed to the router itself: echo replies, unreachable ports and protocols,
reassembled pings. Every reply is compared with a golden frame built with scapy."""

from __future__ import annotations

import itertools

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    ICMP,
    IP,
    UDP,
    Ether,
    HBHOptUnknown,
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ParamProblem,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    PadN,
    fragment,
    fragment6,
    raw,
)

from appliance.core.router import Deliver, Router

from routerkit import (
    GW,
    H1,
    H1_LL,
    H1_MAC,
    R_LL1,
    R_MAC1,
    Clock,
    assert_frame,
    ends,
    learn,
    make_router,
    only_frame,
    transmits,
)

R1 = "198.51.100.1"
R1_6 = "2001:db8:1::1"
R2 = "203.0.113.1"  # the router's address on the other interface


@pytest.fixture
def r(router: Router, clock: Clock) -> Router:
    learn(router, H1, clock.now)
    return router


def test_echo_reply_v4(r: Router, clock: Clock) -> None:
    req = Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst=R1, ttl=17, id=99) / ICMP(
        id=0x1234, seq=7) / (b"ping" * 10)
    before = r.stats.snapshot()
    acts = r.receive(1, raw(req), clock.now)
    got = only_frame(acts, 1)
    want = Ether(dst=H1_MAC, src=R_MAC1) / IP(src=R1, dst=H1.ip4, ttl=64, id=got[IP].id) / ICMP(
        type=0, id=0x1234, seq=7) / (b"ping" * 10)
    assert_frame(transmits(acts)[0].frame, want)
    s = r.stats
    assert s.get("ip.total") == before["ip.total"] + 1
    assert s.get("ip.delivered") == before["ip.delivered"] + 1
    assert s.get("icmp.inhist.8") == before["icmp.inhist.8"] + 1
    assert s.get("icmp.outhist.0") == before["icmp.outhist.0"] + 1
    assert s.get("ip.localout") == before["ip.localout"] + 1


def test_echo_to_other_interface_address_and_ttl_1(r: Router, clock: Clock) -> None:
    # Weak host model: the address of r1-b answers on r1-a. TTL 1 is fine for us.
    req = Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst=R2, ttl=1) / ICMP(id=1, seq=1)
    got = only_frame(r.receive(1, raw(req), clock.now), 1)
    assert got[IP].src == R2 and got[IP].dst == H1.ip4 and got[ICMP].type == 0
    assert r.stats.get("icmp.outhist.11") == 0


def test_echo_reply_v6_global_and_link_local(r: Router, clock: Clock) -> None:
    for src, dst in ((H1.ip6, R1_6), (H1_LL, R_LL1)):
        if src == H1_LL:
            # the router learns h1's link-local address from an NS like any other
            learn(r, type(H1)(1, H1_MAC, H1.ip4, H1_LL), clock.now)
        req = Ether(dst=R_MAC1, src=H1_MAC) / IPv6(src=src, dst=dst, hlim=1) / ICMPv6EchoRequest(
            id=0x42, seq=3, data=b"x" * 56)
        acts = r.receive(1, raw(req), clock.now)
        want = Ether(dst=H1_MAC, src=R_MAC1) / IPv6(src=dst, dst=src, hlim=64) / ICMPv6EchoReply(
            id=0x42, seq=3, data=b"x" * 56)
        assert_frame(transmits(acts)[0].frame, want)
    assert r.stats.get("icmp6.outhist.129") == 2
    assert r.stats.get("ip6.delivered") >= 2


def test_udp_to_router_port_unreachable(r: Router, clock: Clock) -> None:
    req = Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst=R1, id=5) / UDP(
        sport=40000, dport=33434) / (b"u" * 600)
    acts = r.receive(1, raw(req), clock.now)
    got = only_frame(acts, 1)
    original = raw(req[IP])
    quote = original[: 576 - 28]  # RFC 1812 §4.3.2.3: as much as fits in 576 bytes
    want = Ether(dst=H1_MAC, src=R_MAC1) / IP(src=R1, dst=H1.ip4, ttl=64, tos=0xC0,
                                              id=got[IP].id) / ICMP(type=3, code=3) / quote
    assert_frame(transmits(acts)[0].frame, want)
    assert len(got[IP]) == 576
    assert "ip.delivered" in ends(acts)


def test_unknown_protocol_v4(r: Router, clock: Clock) -> None:
    req = Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst=R1, proto=253) / b"abcd"
    acts = r.receive(1, raw(req), clock.now)
    got = only_frame(acts, 1)
    assert (got[ICMP].type, got[ICMP].code) == (3, 2)
    assert ends(acts) == ["ip.noproto"] and r.stats.get("ip.noproto") == 1


def test_udp_v6_port_unreachable_and_unknown_next_header(r: Router, clock: Clock) -> None:
    req = Ether(dst=R_MAC1, src=H1_MAC) / IPv6(src=H1.ip6, dst=R1_6) / UDP(sport=1, dport=2)
    acts = r.receive(1, raw(req), clock.now)
    want = Ether(dst=H1_MAC, src=R_MAC1) / IPv6(src=R1_6, dst=H1.ip6, hlim=64) / (
        ICMPv6DestUnreach(code=4) / raw(req[IPv6]))
    assert_frame(transmits(acts)[0].frame, want)

    req = Ether(dst=R_MAC1, src=H1_MAC) / IPv6(src=H1.ip6, dst=R1_6, nh=253) / b"abcdefgh"
    acts = r.receive(1, raw(req), clock.now)
    want = Ether(dst=H1_MAC, src=R_MAC1) / IPv6(src=R1_6, dst=H1.ip6, hlim=64) / (
        ICMPv6ParamProblem(code=1, ptr=6) / raw(req[IPv6]))
    assert_frame(transmits(acts)[0].frame, want)
    assert r.stats.get("ip6.noproto") == 1


def test_icmp6_error_about_a_packet_to_us_comes_from_its_destination(r: Router,
                                                                     clock: Clock) -> None:
    # RFC 4443 §2.2 (a): a response to a packet sent to one of our unicast addresses comes
    # from that address, even when it belongs to another interface (weak host model).
    other = "2001:db8:2::1"  # r1-b's address, reached through r1-a
    req = Ether(dst=R_MAC1, src=H1_MAC) / IPv6(src=H1.ip6, dst=other) / UDP(sport=1, dport=9)
    acts = r.receive(1, raw(req), clock.now)
    want = Ether(dst=H1_MAC, src=R_MAC1) / IPv6(src=other, dst=H1.ip6, hlim=64) / (
        ICMPv6DestUnreach(code=4) / raw(req[IPv6]))
    assert_frame(transmits(acts)[0].frame, want)
    # about a packet to our link-local address from a global source: a link-local source
    # could not reach it off the link, so the interface's global address answers (RFC 4007)
    req = Ether(dst=R_MAC1, src=H1_MAC) / IPv6(src=H1.ip6, dst=R_LL1) / UDP(sport=1, dport=9)
    got = only_frame(r.receive(1, raw(req), clock.now), 1)
    assert got[IPv6].src == R1_6 and got[ICMPv6DestUnreach].code == 4


def _echo_with_option(otype: int, dst: str = R1_6, hop_by_hop: bool = False) -> Ether:
    header = IPv6ExtHdrHopByHop if hop_by_hop else IPv6ExtHdrDestOpt
    opts = [PadN(optdata=b"\x00\x00"), HBHOptUnknown(otype=otype, optdata=b"\x00\x00")]
    dst_mac = "33:33:00:00:00:01" if dst == "ff02::1" else R_MAC1
    return Ether(dst=dst_mac, src=H1_MAC) / IPv6(src=H1.ip6, dst=dst) / header(
        options=opts) / ICMPv6EchoRequest(id=5, seq=6, data=b"opt")


@pytest.mark.parametrize("hop_by_hop", [False, True], ids=["destination", "hop-by-hop"])
def test_unrecognised_ipv6_options_follow_their_action_bits(r: Router, clock: Clock,
                                                             hop_by_hop: bool) -> None:
    # RFC 8200 §4.2: the two high bits of an unrecognised option's type say what to do.
    # 00: skip the option; the echo is answered.
    acts = r.receive(1, raw(_echo_with_option(0x1E, hop_by_hop=hop_by_hop)), clock.now)
    assert only_frame(acts, 1)[ICMPv6EchoReply].data == b"opt"
    # 01: discard the packet silently.
    acts = r.receive(1, raw(_echo_with_option(0x5E, hop_by_hop=hop_by_hop)), clock.now)
    assert transmits(acts) == [] and ends(acts) == ["ip6.badoptions"]
    # 10: discard, Parameter Problem code 2 pointing at the option type (40 + 2 + PadN's 4),
    # even for a multicast destination.
    for dst in (R1_6, "ff02::1"):
        req = _echo_with_option(0x9E, dst, hop_by_hop)
        acts = r.receive(1, raw(req), clock.now)
        want = Ether(dst=H1_MAC, src=R_MAC1) / IPv6(src=R1_6, dst=H1.ip6, hlim=64) / (
            ICMPv6ParamProblem(code=2, ptr=46) / raw(req[IPv6]))
        assert_frame(transmits(acts)[0].frame, want)
        assert ends(acts) == ["ip6.badoptions"]
    # 11: the same, but never about a packet sent to a multicast address.
    acts = r.receive(1, raw(_echo_with_option(0xDE, hop_by_hop=hop_by_hop)), clock.now)
    assert Ether(transmits(acts)[0].frame)[ICMPv6ParamProblem].ptr == 46
    acts = r.receive(1, raw(_echo_with_option(0xDE, "ff02::1", hop_by_hop)), clock.now)
    assert transmits(acts) == [] and ends(acts) == ["ip6.badoptions"]
    assert r.stats.get("ip6.badoptions") == 5
    assert r.stats.get("icmp6.outhist.4") == 3
    # an option whose length runs past its header: dropped as malformed, no error
    bad = Ether(dst=R_MAC1, src=H1_MAC) / IPv6(src=H1.ip6, dst=R1_6, nh=0 if hop_by_hop else 60
                                               ) / bytes((58, 0, 0x1E, 10, 0, 0, 0, 0)) / (
        ICMPv6EchoRequest())
    acts = r.receive(1, raw(bad), clock.now)
    assert transmits(acts) == [] and ends(acts) == ["ip6.toosmall"]


def _echo_fragments(size: int, ident: int) -> list[bytes]:
    req = IP(src=H1.ip4, dst=R1, id=ident) / ICMP(id=9, seq=ident) / bytes(
        i % 251 for i in range(size))
    return [raw(Ether(dst=R_MAC1, src=H1_MAC) / f) for f in fragment(req, fragsize=512)]


def test_fragments_in_every_order_answered_by_one_echo_reply(clock: Clock) -> None:
    frags = _echo_fragments(1400, 1)
    assert len(frags) == 3
    for n, order in enumerate(itertools.permutations(frags)):
        r = make_router()
        learn(r, H1, clock.now)
        replies = []
        for frame in order:
            replies += transmits(r.receive(1, frame, clock.now))
        assert len(replies) == 1, f"order {n}"
        got = Ether(replies[0].frame)
        assert got[ICMP].type == 0 and got[ICMP].seq == 1
        assert raw(got[ICMP].payload) == bytes(i % 251 for i in range(1400))
        assert r.stats.get("ip.reassembled") == 1 and r.stats.get("ip.fragments") == 3


def test_big_ping_reply_is_fragmented(r: Router, clock: Clock) -> None:
    # A 3000-byte echo reassembled, answered with a reply that must be fragmented to 1500.
    req = IP(src=H1.ip4, dst=R1, id=77) / ICMP(id=1, seq=2) / (b"z" * 2972)
    frames = [raw(Ether(dst=R_MAC1, src=H1_MAC) / f) for f in fragment(req, fragsize=1480)]
    out = []
    for frame in frames:
        out += transmits(r.receive(1, frame, clock.now))
    assert len(out) == 3
    pieces = [Ether(t.frame)[IP] for t in out]
    assert all(len(raw(p)) <= 1500 for p in pieces)
    assert r.stats.get("ip.fragmented") == 1 and r.stats.get("ip.ofragments") == 3
    # reassemble what the router sent with a second router: one whole echo reply
    payload = b"".join(raw(p.payload) for p in sorted(pieces, key=lambda p: p.frag))
    assert payload[0] == 0 and payload[8:] == b"z" * 2972


def test_fragments_v6_every_order_one_reply(clock: Clock) -> None:
    data = bytes(i % 249 for i in range(1800))
    pkt = IPv6(src=H1.ip6, dst=R1_6) / IPv6ExtHdrFragment(id=0xABCD) / ICMPv6EchoRequest(
        id=5, seq=6, data=data)
    frags = [raw(Ether(dst=R_MAC1, src=H1_MAC) / f) for f in fragment6(pkt, 1000)]
    assert len(frags) == 2
    for order in itertools.permutations(frags):
        r = make_router()
        learn(r, H1, clock.now)
        out = []
        for frame in order:
            out += transmits(r.receive(1, frame, clock.now))
        # the 1808-byte reply exceeds 1500: the router fragments its own packet (RFC 8200 §4.5)
        assert len(out) == 2
        parts = [Ether(t.frame) for t in out]
        assert all(p[IPv6].nh == 44 for p in parts)
        body = b"".join(raw(p[IPv6ExtHdrFragment].payload) for p in sorted(
            parts, key=lambda p: p[IPv6ExtHdrFragment].offset))
        assert body[0] == 129 and body[8:] == data
        assert r.stats.get("ip6.reassembled") == 1


def test_echo_reply_not_sent_for_other_icmp(r: Router, clock: Clock) -> None:
    reply = Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst=R1) / ICMP(type=0, id=1)
    acts = r.receive(1, raw(reply), clock.now)
    assert transmits(acts) == [] and acts == [Deliver("icmp.inhist.0")]
    assert r.stats.get("icmp.inhist.0") == 1


def test_gateway_host_learned_too(r: Router, clock: Clock) -> None:
    learn(r, GW, clock.now)
    assert r.neighbors.lookup(1, bytes([198, 51, 100, 2])) is not None
