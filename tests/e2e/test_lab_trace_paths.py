"""`vrlab trace` where the path itself answers back: a Fragmentation Needed / Packet Too Big
on configs/pmtu.yaml, and a redirect on configs/redirect.yaml (a LAN segment: its ports are
captured with tcpdump on their taps). One lab per config, each used by one test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import CONFIGS, boot

from orchestrate.lab import Lab
from orchestrate.topology import load_topology
from orchestrate.trace.live import TraceRequest, trace_lab


@pytest.fixture(scope="module")
def pmtu(vm_image: Any) -> Iterator[Lab]:
    lab = boot(load_topology(CONFIGS / "pmtu.yaml"), "e2e-trace-pmtu", vm_image)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def redirect(vm_image: Any) -> Iterator[Lab]:
    lab = boot(load_topology(CONFIGS / "redirect.yaml"), "e2e-trace-redirect", vm_image)
    try:
        yield lab
    finally:
        lab.down()


def test_frag_needed_and_packet_too_big_named_at_r1(pmtu: Lab) -> None:
    """A 1400-byte ping with DF over the 1280-byte r1-r2 link: r1 answers Fragmentation
    Needed with the next-hop MTU (RFC 1191); IPv6 gets Packet Too Big (RFC 8201)."""
    for family, counters, words in (
            (4, ["ip.cantfrag", "icmp.outhist.3"], "fragmentation needed"),
            (6, ["ip6.cantfrag", "icmp6.outhist.2"], "packet too big")):
        journey, _ = trace_lab(pmtu, TraceRequest(pmtu.name, "h1", "h2", family=family,
                                                   size=1400, df=True))
        assert journey.outcome == "error", journey.explanation
        routers = journey.router_hops()
        assert [h.node for h in routers] == ["r1"], [h.node for h in journey.hops]
        r1 = routers[0]
        assert (r1.verdict, r1.failing_stage) == ("icmp-error", "mtu"), r1
        assert r1.counters == counters
        assert r1.path == "slow (toobig)"
        error = next(h for h in journey.hops if h.kind == "wire" and h.leg == "error")
        assert "mtu 1280" in error.what and error.sender == "r1:r1-h1", error
        assert f"r1 sent an ICMP error ({words}) at stage mtu" in journey.explanation
        assert not any(h.node == "r2" for h in journey.hops)  # it never got further


def test_redirect_names_r1_and_the_packet_still_goes(redirect: Lab) -> None:
    """h1's first packet to h2 goes to r1, whose route to h2 is r2 on the same LAN: r1
    forwards it back out the interface it came in on and sends h1 a redirect (RFC 1812
    §5.2.7.2); r2 delivers to h2, whose reply comes back by r2 straight to h1."""
    redirect.node("h1").exec("ip route flush cache", timeout=30)
    journey, _ = trace_lab(redirect, TraceRequest(redirect.name, "h1", "h2"))
    assert journey.outcome == "redirect+reply", journey.explanation
    r1 = journey.router_hops()[0]
    assert (r1.node, r1.verdict) == ("r1", "forwarded+redirect"), r1
    assert "ip.redirectsent" in r1.counters
    assert (r1.interface_in, r1.interface_out) == ("r1-lan", "r1-lan")
    assert r1.path == "slow (redirect)"
    assert "icmp" in [s.name for s in r1.stages]
    notice = [h for h in journey.hops if h.kind == "wire" and h.leg == "redirect"]
    assert len(notice) == 1 and notice[0].sender == "r1:r1-lan"
    assert notice[0].receiver == "h1:eth1" and "redirect" in notice[0].what
    # the probe then crossed r2 to h2, and the reply came back by r2 alone
    probe_routers = [h.node for h in journey.router_hops() if h.leg == "probe"]
    reply_routers = [h.node for h in journey.router_hops() if h.leg == "reply"]
    assert probe_routers == ["r1", "r2"] and reply_routers == ["r2"]
    assert journey.explanation.startswith("r1 forwarded the probe and sent a redirect")
