"""Redirects: IPv4 host redirects under the BSD ip_forward rules (seed 003, figure 8.19) and
IPv6 ND Redirects (RFC 4861 §8.2). Each condition is shown holding and failing; the packet
is forwarded either way."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Any

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    ICMP,
    IP,
    UDP,
    Ether,
    ICMPv6ND_Redirect,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptRedirectedHdr,
    IPOption_LSRR,
    IPOption_RR,
    IPv6,
    raw,
)

from appliance.core.fib import Route, RouteOrigin
from appliance.core.router import Router

from routerkit import (
    GW,
    GW_MAC,
    H1,
    H1_MAC,
    H2,
    R_LL1,
    R_MAC1,
    Host,
    assert_frame,
    learn,
    make_router,
    transmits,
)

R1 = "198.51.100.1"
FAR = "192.0.2.5"  # behind GW, reached back out of r1-a
FAR6 = "2001:db8:9::5"


def _router(**kw: Any) -> Router:
    r = make_router(**kw)
    for host in (H1, GW, H2):
        learn(r, host, 1000.0)
    return r


def _send(r: Router, pkt: Any, ifindex: int = 1, src_mac: str = H1_MAC) -> tuple[list[Any],
                                                                                    list[Any]]:
    """(frames forwarded to GW, ICMP/ND redirects back) for one packet."""
    mac_here = R_MAC1 if ifindex == 1 else "02:00:00:00:01:02"
    acts = r.receive(ifindex, raw(Ether(dst=mac_here, src=src_mac) / pkt), 1000.0)
    frames = [Ether(t.frame) for t in transmits(acts)]
    to_gw = [f for f in frames if f.dst == GW_MAC]
    redirects = [f for f in frames if (f.haslayer(ICMP) and f[ICMP].type == 5)
                 or f.haslayer(ICMPv6ND_Redirect)]
    return to_gw, redirects


def test_ipv4_redirect_golden() -> None:
    r = _router()
    pkt = IP(src=H1.ip4, dst=FAR, id=321) / UDP(sport=1000, dport=2000) / b"payload!"
    to_gw, redirects = _send(r, pkt)
    assert len(to_gw) == 1 and to_gw[0][IP].ttl == 63  # still forwarded
    got = redirects[0]
    want = Ether(dst=H1_MAC, src=R_MAC1) / IP(src=R1, dst=H1.ip4, tos=0xC0, ttl=64,
                                              id=got[IP].id) / ICMP(
        type=5, code=1, gw=GW.ip4) / raw(pkt)
    assert_frame(raw(got), want)
    assert r.stats.get("ip.redirectsent") == 1 and r.stats.get("ip.forward") == 1
    # BSD icmp_error counts every call in icps_error except those for redirects
    assert r.stats.get("icmp.outhist.5") == 1 and r.stats.get("icmp.error") == 0


def test_ipv4_redirect_on_link_destination_names_destination() -> None:
    # 198.51.100.20 is on r1-a's own subnet: the better first hop is the destination itself.
    r = _router()
    learn(r, Host(1, "52:54:00:00:00:20", "198.51.100.20", "2001:db8:1::20"), 1000.0)
    acts = r.receive(1, raw(Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst="198.51.100.20")
                            / UDP()), 1000.0)
    redirect = [Ether(t.frame) for t in transmits(acts) if Ether(t.frame).dst == H1_MAC]
    assert redirect[0][ICMP].gw == "198.51.100.20"


NO_REDIRECT_CASES = {
    "in != out": dict(pkt=IP(src=H2.ip4, dst=FAR) / UDP(), ifindex=2, src_mac=H2.mac),
    "source not on the subnet": dict(pkt=IP(src="192.0.2.77", dst=FAR) / UDP()),
    "redirect sysctl off": dict(pkt=IP(src=H1.ip4, dst=FAR) / UDP(),
                                sysctl={"net.inet.ip.redirect": 0}),
    "default route": dict(pkt=IP(src=H1.ip4, dst=FAR) / UDP(),
                          routes=[{"prefix": "0.0.0.0/0", "via": "198.51.100.2"}]),
    "route learned from a redirect": dict(pkt=IP(src=H1.ip4, dst=FAR) / UDP(), learned=True),
}


@pytest.mark.parametrize("case", list(NO_REDIRECT_CASES))
def test_ipv4_no_redirect_when_a_rule_fails(case: str) -> None:
    spec = dict(NO_REDIRECT_CASES[case])
    kw = {k: spec.pop(k) for k in ("sysctl", "routes") if k in spec}
    r = _router(**kw)
    if spec.pop("learned", False):
        r.fib.add(Route(ip_network("192.0.2.0/25"), ifindex=1,
                        gateway=IPv4Address("198.51.100.2"), origin=RouteOrigin.REDIRECT))
    to_gw, redirects = _send(r, **spec)
    assert len(to_gw) == 1, "the packet is still forwarded"
    assert redirects == [] and r.stats.get("ip.redirectsent") == 0


def test_ipv4_source_route_no_redirect_but_record_route_does() -> None:
    r = _router()
    srcrt = IP(src=H1.ip4, dst=FAR, options=[IPOption_LSRR(routers=["192.0.2.9"])]) / UDP()
    acts = r.receive(1, raw(Ether(dst=R_MAC1, src=H1_MAC) / srcrt), 1000.0)
    frames = [Ether(t.frame) for t in transmits(acts)]
    assert [(f[ICMP].type, f[ICMP].code) for f in frames] == [(3, 5)]  # source route failed
    rr = IP(src=H1.ip4, dst=FAR, options=[IPOption_RR(routers=["0.0.0.0"])]) / UDP()
    to_gw, redirects = _send(r, rr)
    assert len(to_gw) == 1 and len(redirects) == 1


def test_nd_redirect_golden() -> None:
    r = _router()
    pkt = IPv6(src=H1.ip6, dst=FAR6, hlim=30) / UDP(sport=7, dport=8) / (b"r" * 16)
    assert len(raw(pkt)) % 8 == 0
    acts = r.receive(1, raw(Ether(dst=R_MAC1, src=H1_MAC) / pkt), 1000.0)
    frames = [Ether(t.frame) for t in transmits(acts)]
    to_gw = [f for f in frames if f.dst == GW_MAC]
    assert len(to_gw) == 1 and to_gw[0][IPv6].hlim == 29
    redirect = [t.frame for t in transmits(acts) if Ether(t.frame).dst == H1_MAC]
    want = (Ether(dst=H1_MAC, src=R_MAC1) / IPv6(src=R_LL1, dst=H1.ip6, hlim=255)
            / ICMPv6ND_Redirect(tgt=GW.ip6, dst=FAR6)
            / ICMPv6NDOptDstLLAddr(lladdr=GW_MAC)
            / ICMPv6NDOptRedirectedHdr(pkt=raw(pkt)))
    assert_frame(redirect[0], want)
    assert r.stats.get("ip6.redirectsent") == 1 and r.stats.get("icmp6.outhist.137") == 1


def test_nd_redirect_without_target_ll_when_unknown_and_big_packet_truncated() -> None:
    r = make_router()
    learn(r, H1, 1000.0)  # GW's link-layer address is not known
    pkt = IPv6(src=H1.ip6, dst=FAR6) / UDP() / (b"b" * 1400)
    acts = r.receive(1, raw(Ether(dst=R_MAC1, src=H1_MAC) / pkt), 1000.0)
    redirect = next(Ether(t.frame) for t in transmits(acts) if Ether(t.frame).dst == H1_MAC)
    assert not redirect.haslayer(ICMPv6NDOptDstLLAddr)
    assert len(raw(redirect[IPv6])) <= 1280
    assert raw(redirect[ICMPv6NDOptRedirectedHdr].pkt) == raw(pkt)[:len(
        raw(redirect[ICMPv6NDOptRedirectedHdr].pkt))]


NO_ND_REDIRECT_CASES = {
    "in != out": dict(pkt=IPv6(src=H2.ip6, dst=FAR6) / UDP(), ifindex=2, src_mac=H2.mac),
    "source not a neighbor": dict(pkt=IPv6(src="2001:db8:5::1", dst=FAR6) / UDP()),
    "redirect sysctl off": dict(pkt=IPv6(src=H1.ip6, dst=FAR6) / UDP(),
                                sysctl={"net.inet6.ip6.redirect": 0}),
    "gateway not link-local": dict(pkt=IPv6(src=H1.ip6, dst=FAR6) / UDP(), routes=[
        {"prefix": "2001:db8:9::/48", "via": "2001:db8:1::2"}]),
    "route learned from a redirect": dict(pkt=IPv6(src=H1.ip6, dst=FAR6) / UDP(), learned=True),
}


@pytest.mark.parametrize("case", list(NO_ND_REDIRECT_CASES))
def test_no_nd_redirect_when_a_rule_fails(case: str) -> None:
    spec = dict(NO_ND_REDIRECT_CASES[case])
    kw = {k: spec.pop(k) for k in ("sysctl", "routes") if k in spec}
    r = _router(**kw)
    if "routes" in kw:
        learn(r, Host(1, GW_MAC, GW.ip4, "2001:db8:1::2"), 1000.0)
    if spec.pop("learned", False):
        r.fib.add(Route(ip_network("2001:db8:9::/48"), ifindex=1,
                        gateway=IPv6Address("fe80::2"), origin=RouteOrigin.REDIRECT))
    to_gw, redirects = _send(r, **spec)
    assert len(to_gw) == 1, "the packet is still forwarded"
    assert redirects == [] and r.stats.get("ip6.redirectsent") == 0
