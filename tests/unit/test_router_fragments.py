"""The router's fragment rules for packets addressed to it (issue 10): RFC 7112 first
fragments without the whole header chain, and reassembly timers from sysctls, per queue."""

from __future__ import annotations

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    ICMP,
    IP,
    TCP,
    UDP,
    Ether,
    ICMPv6EchoRequest,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    raw,
)

from appliance.core.router import Action, Router

from routerkit import H1, H1_MAC, H2, R_MAC1, Clock, ends, learn, make_router, only_frame, transmits

R1 = "198.51.100.1"
R1_6 = "2001:db8:1::1"


@pytest.fixture
def r(router: Router, clock: Clock) -> Router:
    learn(router, H1, clock.now)
    return router


def frame6(*layers: object, dst: str = R1_6) -> bytes:
    pkt = IPv6(src=H1.ip6, dst=dst)
    for layer in layers:
        pkt = pkt / layer
    return raw(Ether(dst=R_MAC1, src=H1_MAC) / pkt)


def test_first_fragment_with_a_truncated_upper_header_gets_parameter_problem_3(
        r: Router, clock: Clock) -> None:
    # the first fragment carries 8 bytes of a TCP header: the chain ends inside it
    tcp = raw(TCP(sport=1, dport=2, flags="S"))[:8]
    acts = r.receive(1, frame6(IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=7), tcp),
                     clock.now)
    got = only_frame(acts, 1)
    assert (got[ICMPv6ParamProblem].code, got[ICMPv6ParamProblem].ptr) == (3, 0)
    assert ends(acts) == ["ip6.fragdropped"]
    assert r.stats.get("ip6.fragdropped") == 1 and r.stats.get("icmp6.outhist.4") == 1
    assert len(r.reassembly) == 0  # nothing held for the rest of that datagram


def test_first_fragment_whose_extension_chain_runs_off_the_end(r: Router, clock: Clock) -> None:
    # after the Fragment header a Destination Options header says it is 16 bytes; 8 follow
    dest = raw(IPv6ExtHdrDestOpt(nh=17, len=1))[:8]
    acts = r.receive(1, frame6(IPv6ExtHdrFragment(nh=60, offset=0, m=1, id=8), dest),
                     clock.now)
    assert only_frame(acts, 1)[ICMPv6ParamProblem].code == 3


def test_complete_first_fragment_is_held_and_a_later_one_is_not_judged(
        r: Router, clock: Clock) -> None:
    echo = raw(ICMPv6EchoRequest(id=1, seq=1, data=b"x" * 16))
    acts = r.receive(1, frame6(IPv6ExtHdrFragment(nh=58, offset=0, m=1, id=9), echo[:16]),
                     clock.now)
    assert transmits(acts) == [] and ends(acts) == ["ip6.fragments"]
    # a last fragment with 2 bytes of data is fragment data, not a header chain
    acts = r.receive(1, frame6(IPv6ExtHdrFragment(nh=6, offset=100, m=0, id=10), b"ab"),
                     clock.now)
    assert transmits(acts) == [] and ends(acts) == ["ip6.fragments"]
    assert r.stats.get("icmp6.outhist.4") == 0


def test_transit_first_fragment_is_forwarded_untouched(r: Router, clock: Clock) -> None:
    learn(r, H2, clock.now)
    tcp = raw(TCP(sport=1, dport=2, flags="S"))[:8]
    frame = frame6(IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=11), tcp, dst=H2.ip6)
    got = only_frame(r.receive(1, frame, clock.now), 2)
    assert raw(got[IPv6])[8:] == frame[14 + 8:] and got[IPv6].hlim == 63
    assert r.stats.get("icmp6.outhist.4") == 0


def first_fragment_v4(ident: int) -> bytes:
    return raw(Ether(dst=R_MAC1, src=H1_MAC)
               / IP(src=H1.ip4, dst=R1, id=ident, flags="MF", frag=0, proto=17)
               / raw(UDP(sport=1, dport=2, len=200))[:8] / (b"u" * 32))


def time_exceeded(acts: list[Action]) -> list[int]:
    """The IP ids quoted by the ICMP Time Exceeded messages among `acts`."""
    frames = [Ether(t.frame) for t in transmits(acts)]
    return [f[ICMP].payload.id for f in frames if ICMP in f and f[ICMP].type == 11]


def test_fragttl_sysctls_set_the_timers(clock: Clock) -> None:
    router = make_router(sysctl={"net.inet.ip.fragttl": 5, "net.inet6.ip6.fragttl": 7})
    learn(router, H1, clock.now)
    router.receive(1, first_fragment_v4(1), clock.now)
    echo = raw(ICMPv6EchoRequest(id=1, seq=1, data=b"x" * 16))
    router.receive(1, frame6(IPv6ExtHdrFragment(nh=58, offset=0, m=1, id=2), echo[:16]),
                   clock.now)
    assert transmits(router.tick(clock.now + 4.9)) == []
    acts = router.tick(clock.now + 5.1)
    got = only_frame(acts, 1)
    assert (got[ICMP].type, got[ICMP].code) == (11, 1)  # time exceeded in reassembly
    acts = router.tick(clock.now + 7.1)
    assert only_frame(acts, 1)[ICMPv6TimeExceeded].code == 1
    assert router.stats.get("ip.fragtimeout") == 1 and router.stats.get("ip6.fragtimeout") == 1


def test_a_changed_fragttl_applies_to_new_queues_each_keeps_its_own(
        r: Router, clock: Clock) -> None:
    """BSD ipq_ttl: a queue's lifetime is fixed when it starts."""
    r.receive(1, first_fragment_v4(1), clock.now)  # default 30 s
    r.sysctl.set("net.inet.ip.fragttl", 2)
    r.receive(1, first_fragment_v4(2), clock.now + 1)  # 2 s: expires at +3
    assert time_exceeded(r.tick(clock.now + 3.5)) == [2] and len(r.reassembly) == 1
    assert time_exceeded(r.tick(clock.now + 29)) == []
    assert time_exceeded(r.tick(clock.now + 30.5)) == [1] and len(r.reassembly) == 0


def test_fragttl_without_fragment_zero_expires_silently(r: Router, clock: Clock) -> None:
    r.sysctl.set("net.inet.ip.fragttl", 1)
    later = raw(Ether(dst=R_MAC1, src=H1_MAC)
                / IP(src=H1.ip4, dst=R1, id=3, flags=0, frag=5, proto=17) / (b"u" * 16))
    r.receive(1, later, clock.now)
    assert transmits(r.tick(clock.now + 1.5)) == []
    assert r.stats.get("ip.fragtimeout") == 1
