"""ICMP error discipline: the RFC 1812 §4.3.2.7 / RFC 4443 §2.4(e) suppression rules, the
token bucket behind net.inet.icmp.icmplim / net.inet6.icmp6.errppslimit, the reassembly
sysctl, the generation number and the packet trace."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    ICMP,
    IP,
    UDP,
    Ether,
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    IPv6,
    fragment,
    raw,
)

from appliance.config import ConfigError, RouteConfig
from appliance.core.router import Router

from routerkit import H1, H1_MAC, H2, R_MAC1, Clock, ends, learn, make_router, transmits

R1 = "198.51.100.1"


def _frame(l3: Any, dst: str = R_MAC1) -> bytes:
    return raw(Ether(dst=dst, src=H1_MAC) / l3)


NO_ROUTE = "203.0.114.1"  # inside no route of the fixture: net unreachable unless suppressed

SUPPRESSED_V4 = {
    "about an ICMP error": (IP(src=H1.ip4, dst="192.0.2.140") / ICMP(type=3, code=1)
                            / IP(src="192.0.2.140", dst=H1.ip4) / UDP(), R_MAC1, "icmp.oldicmp"),
    "link-layer broadcast": (IP(src=H1.ip4, dst="192.0.2.140") / UDP(), "ff:ff:ff:ff:ff:ff",
                             None),
    "non-initial fragment": (IP(src=H1.ip4, dst="192.0.2.140", frag=10) / (b"x" * 16), R_MAC1,
                             None),
    # (0.0.0.0 is never forwarded, RFC 1812 §5.3.7: shown on a port unreachable to us)
    "source 0.0.0.0": (IP(src="0.0.0.0", dst=R1) / UDP(), R_MAC1, "icmp.badaddr"),
    "broadcast source": (IP(src="198.51.100.255", dst="192.0.2.140") / UDP(), R_MAC1, None),
    # to our addresses: no port unreachable for a broadcast or multicast destination, even
    # when the frame itself was link-unicast
    "broadcast destination": (IP(src=H1.ip4, dst="198.51.100.255") / UDP(), R_MAC1, None),
    "multicast destination": (IP(src=H1.ip4, dst="224.0.0.1") / UDP(), R_MAC1, None),
}


@pytest.mark.parametrize("case", list(SUPPRESSED_V4))
def test_ipv4_error_suppression(r: Router, clock: Clock, case: str) -> None:
    pkt, l2, counter = SUPPRESSED_V4[case]
    before = r.stats.snapshot()
    acts = r.receive(1, _frame(pkt, l2), clock.now)
    assert transmits(acts) == [] and ends(acts)
    assert r.stats.get("icmp.outhist.3") == before["icmp.outhist.3"]
    if counter is not None:
        assert r.stats.get(counter) == before[counter] + 1
    # the same packet, made acceptable, does get its error: the rule was the reason
    ok = r.receive(1, _frame(IP(src=H1.ip4, dst="192.0.2.140") / UDP()), clock.now)
    assert len(transmits(ok)) == 1


def test_informational_icmp_does_get_errors(r: Router, clock: Clock) -> None:
    acts = r.receive(1, _frame(IP(src=H1.ip4, dst="192.0.2.140") / ICMP(type=8)), clock.now)
    assert Ether(transmits(acts)[0].frame)[ICMP].type == 3


SUPPRESSED_V6 = {
    "about an ICMPv6 error": (IPv6(src=H1.ip6, dst="2001:db8:66::1") / ICMPv6DestUnreach()
                              / IPv6(src="2001:db8:66::1", dst=H1.ip6), R_MAC1),
    "link-layer multicast": (IPv6(src=H1.ip6, dst="2001:db8:66::1") / UDP(), "33:33:00:00:00:01"),
    "unspecified source": (IPv6(src="::", dst="2001:db8:66::1") / UDP(), R_MAC1),
    "multicast destination": (IPv6(src=H1.ip6, dst="ff02::1") / UDP(), R_MAC1),
}


@pytest.mark.parametrize("case", list(SUPPRESSED_V6))
def test_ipv6_error_suppression(r: Router, clock: Clock, case: str) -> None:
    pkt, l2 = SUPPRESSED_V6[case]
    acts = r.receive(1, _frame(pkt, l2), clock.now)
    assert transmits(acts) == [] and ends(acts)
    assert r.stats.get("icmp6.outhist.1") == 0
    ok = r.receive(1, _frame(IPv6(src=H1.ip6, dst="2001:db8:66::1") / UDP()), clock.now)
    assert len(transmits(ok)) == 1


def test_packet_too_big_names_the_mtu(clock: Clock) -> None:
    r = make_router(interfaces=[
        {"name": "r1-a", "addresses": ["198.51.100.1/24", "2001:db8:1::1/64"]},
        {"name": "r1-b", "addresses": ["203.0.113.1/24", "2001:db8:2::1/64"], "mtu": 1280},
    ])
    learn(r, H1, clock.now)
    acts = r.receive(1, _frame(IPv6(src=H1.ip6, dst=H2.ip6) / (b"p" * 1300)), clock.now)
    ptb = Ether(transmits(acts)[0].frame)
    assert ptb.haslayer("ICMPv6 Packet Too Big") and ptb["ICMPv6 Packet Too Big"].mtu == 1280


def test_icmplim_rate_limits_errors(clock: Clock) -> None:
    r = make_router({"net.inet.icmp.icmplim": 5})
    learn(r, H1, clock.now)
    sent = 0
    for _ in range(20):
        sent += len(transmits(r.receive(1, _frame(IP(src=H1.ip4, dst="192.0.2.140") / UDP()),
                                        clock.now)))
    assert sent == 5 and r.stats.get("icmp.ratelimited") == 15
    clock.advance(1.0)  # one second refills five tokens
    sent = sum(len(transmits(r.receive(1, _frame(IP(src=H1.ip4, dst="192.0.2.140") / UDP()),
                                       clock.now))) for _ in range(20))
    assert sent == 5
    # echo replies are not errors: never limited
    replies = sum(len(transmits(r.receive(1, _frame(IP(src=H1.ip4, dst=R1) / ICMP()),
                                          clock.now))) for _ in range(20))
    assert replies == 20
    r.sysctl.set("net.inet.icmp.icmplim", 0)  # 0 = no limit, as on FreeBSD
    sent = sum(len(transmits(r.receive(1, _frame(IP(src=H1.ip4, dst="192.0.2.140") / UDP()),
                                       clock.now))) for _ in range(50))
    assert sent == 50


def test_errppslimit_rate_limits_icmp6(clock: Clock) -> None:
    r = make_router({"net.inet6.icmp6.errppslimit": 3})
    learn(r, H1, clock.now)
    sent = sum(len(transmits(r.receive(1, _frame(IPv6(src=H1.ip6, dst="2001:db8:66::1") / UDP()),
                                       clock.now))) for _ in range(10))
    assert sent == 3 and r.stats.get("icmp6.toofreq") == 7
    r.sysctl.set("net.inet6.icmp6.errppslimit", 10)
    clock.advance(1.0)
    sent = sum(len(transmits(r.receive(1, _frame(IPv6(src=H1.ip6, dst="2001:db8:66::1") / UDP()),
                                       clock.now))) for _ in range(20))
    assert sent == 10


def test_maxfragpackets(clock: Clock) -> None:
    big = IP(src=H1.ip4, dst=R1, id=5) / ICMP(id=1) / (b"f" * 1000)
    frames = [_frame(f) for f in fragment(big, fragsize=600)]
    r = make_router({"net.inet.ip.maxfragpackets": 0})
    learn(r, H1, clock.now)
    out = [a for f in frames for a in r.receive(1, f, clock.now)]
    assert transmits(out) == [] and r.stats.get("ip.fragdropped") == 2
    r.sysctl.set("net.inet.ip.maxfragpackets", 10)
    out = [a for f in frames for a in r.receive(1, f, clock.now)]
    assert len(transmits(out)) == 1
    # with room for one datagram, a second one evicts the first
    r.sysctl.set("net.inet.ip.maxfragpackets", 1)
    other = IP(src=H1.ip4, dst=R1, id=6) / ICMP(id=2) / (b"g" * 1000)
    r.receive(1, frames[0], clock.now)
    r.receive(1, _frame(fragment(other, fragsize=600)[0]), clock.now)
    assert transmits(r.receive(1, frames[1], clock.now)) == []


def test_reassembly_timeout_time_exceeded(r: Router, clock: Clock) -> None:
    big = IP(src=H1.ip4, dst=R1, id=9) / ICMP(id=1) / (b"t" * 1000)
    first = fragment(big, fragsize=600)[0]
    r.receive(1, _frame(first), clock.now)
    out = []
    for _ in range(40):
        out += [Ether(t.frame) for t in transmits(r.tick(clock.advance(1.0)), 1)
                if Ether(t.frame).haslayer(ICMP)]
    assert [(f[ICMP].type, f[ICMP].code) for f in out] == [(11, 1)]
    assert r.stats.get("ip.fragtimeout") == 1


def test_generation_moves_on_every_relevant_change(r: Router, clock: Clock) -> None:
    seen = {r.generation}

    def moved() -> None:
        g = r.generation
        assert g not in seen
        seen.add(g)

    r.add_route(RouteConfig(ip_network("192.0.2.0/28"), None, "r1-b"))
    moved()
    with pytest.raises(ConfigError, match="connected"):
        r.add_route(RouteConfig(ip_network("203.0.113.0/24"), None, "r1-a"))
    with pytest.raises(ConfigError, match="local"):
        r.delete_route("198.51.100.1/32")
    r.delete_route("192.0.2.0/28")
    moved()
    r.sysctl.set("net.inet.ip.forwarding", 0)
    moved()
    r.sysctl.set("net.inet6.ip6.redirect", 0)
    moved()
    r.receive(2, raw(Ether(dst="ff:ff:ff:ff:ff:ff", src="52:54:00:00:00:44") / (
        __import__("scapy.all").all.ARP(op=1, hwsrc="52:54:00:00:00:44", psrc="203.0.113.44",
                                        pdst="203.0.113.1"))), clock.now)
    moved()  # a new neighbor entry
    g = r.generation
    r.sysctl.set("net.inet.ip.ttl", 9)  # does not concern the fast path
    assert r.generation == g


def test_trace_records_stages(r: Router, clock: Clock) -> None:
    r.tracer.enabled = True
    r.receive(1, _frame(IP(src=H1.ip4, dst=H2.ip4) / UDP()), clock.now)
    r.receive(1, _frame(IP(src=H1.ip4, dst="192.0.2.200") / UDP()), clock.now)
    r.receive(1, _frame(IPv6(src=H1.ip6, dst=H2.ip6, hlim=1) / ICMPv6EchoRequest()), clock.now)
    recs = r.tracer.records()
    assert len(recs) == 3
    assert [s.stage for s in recs[0].stages] == ["rx", "verify", "fib", "ttl", "neighbor", "tx"]
    assert recs[0].stages[4].detail == "203.0.113.10 DELAY"  # STALE, now used: DELAY
    assert "203.0.113.0/24" in recs[0].stages[2].detail
    assert [s.stage for s in recs[1].stages][-1] == "drop"
    assert recs[1].stages[-1].detail == "ip.blackhole"
    stages = [s.stage for s in recs[2].stages]
    assert stages[:3] == ["rx", "verify", "ttl"] and "icmp" in stages
    assert all(s.time == clock.now for rec in recs for s in rec.stages)
    r.receive(1, _frame(IP(src=H1.ip4, dst=H2.ip4, ttl=1) / UDP()), clock.now, punt="PUNT_TTL")
    assert [(s.stage, s.detail) for s in r.tracer.records(1)[0].stages[:2]] == [
        ("rx", "42 bytes"), ("punt", "PUNT_TTL")]
    r.tracer.enabled = False
    r.receive(1, _frame(IP(src=H1.ip4, dst=H2.ip4) / UDP()), clock.now)
    assert len(r.tracer.records()) == 4
