"""ARP and Neighbor Discovery: answers (scapy goldens), the RFC 826 merge rule, RFC 4861
validity checks, DAD, and the illumos NCE behaviour of seed 000: packets queue on an
INCOMPLETE entry while the solicitation is out and leave when the advertisement arrives; when
resolution fails each queued packet gets host/address unreachable."""

from __future__ import annotations

import random

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    ARP,
    ICMP,
    IP,
    UDP,
    Ether,
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPerror,
    IPv6,
    UDPerror,
    raw,
)

from appliance.config import parse_router_config
from appliance.core.neighbor_states import NeighborState
from appliance.core.router import Deliver, Drop, Hold, LinkInfo, Router

from fakelink import FakeNetwork
from routerkit import (
    GW_MAC,
    H1,
    H1_MAC,
    H2,
    H2_MAC,
    R_LL1,
    R_MAC1,
    R_MAC2,
    ROUTER_IP4,
    Clock,
    arp_reply,
    assert_frame,
    learn,
    mac,
    make_router,
    neighbor_advert,
    only_frame,
    transmits,
)

R1 = "198.51.100.1"
R1_6 = "2001:db8:1::1"
H1_IP = bytes([198, 51, 100, 10])
H2_IP = bytes([203, 0, 113, 10])


def test_arp_reply_golden(router: Router, clock: Clock) -> None:
    req = Ether(dst="ff:ff:ff:ff:ff:ff", src=H1_MAC) / ARP(op=1, hwsrc=H1_MAC, psrc=H1.ip4,
                                                            pdst=R1)
    acts = router.receive(1, raw(req), clock.now)
    want = Ether(dst=H1_MAC, src=R_MAC1) / ARP(op=2, hwsrc=R_MAC1, psrc=R1, hwdst=H1_MAC,
                                               pdst=H1.ip4)
    assert_frame(transmits(acts)[0].frame, want)
    entry = router.neighbors.lookup(1, H1_IP)
    assert entry is not None and entry.mac == mac(H1_MAC) and entry.state is NeighborState.STALE
    assert router.stats.get("arp.rxrequests") == 1 and router.stats.get("arp.txreplies") == 1


def test_arp_merge_rule(router: Router, clock: Clock) -> None:
    # Not for us and unknown sender: nothing learned (RFC 826: only the target adds).
    other = Ether(dst="ff:ff:ff:ff:ff:ff", src=H1_MAC) / ARP(op=1, hwsrc=H1_MAC, psrc=H1.ip4,
                                                              pdst="198.51.100.77")
    assert router.receive(1, raw(other), clock.now) == [Deliver("arp.ignored")]
    assert router.neighbors.lookup(1, H1_IP) is None
    # Known sender: updated even when the request is for someone else (merge_flag).
    learn(router, H1, clock.now)
    moved = Ether(dst="ff:ff:ff:ff:ff:ff", src="52:54:00:00:00:99") / ARP(
        op=1, hwsrc="52:54:00:00:00:99", psrc=H1.ip4, pdst="198.51.100.77")
    router.receive(1, raw(moved), clock.now)
    entry = router.neighbors.lookup(1, H1_IP)
    assert entry is not None and entry.mac == mac("52:54:00:00:00:99")
    # Someone claiming our own address is counted and not learned.
    dup = Ether(dst="ff:ff:ff:ff:ff:ff", src=H1_MAC) / ARP(op=1, hwsrc=H1_MAC, psrc=R1, pdst=R1)
    assert router.receive(1, raw(dup), clock.now) == [Drop("arp.dupips")]


def test_neighbor_advertisement_golden(router: Router, clock: Clock) -> None:
    for target, dst, l2 in ((R1_6, "ff02::1:ff00:1", "33:33:ff:00:00:01"),
                            (R_LL1, "ff02::1:ff00:101", "33:33:ff:00:01:01")):
        ns = (Ether(dst=l2, src=H1_MAC) / IPv6(src=H1.ip6, dst=dst, hlim=255)
              / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=H1_MAC))
        acts = router.receive(1, raw(ns), clock.now)
        want = (Ether(dst=H1_MAC, src=R_MAC1) / IPv6(src=target, dst=H1.ip6, hlim=255)
                / ICMPv6ND_NA(R=1, S=1, O=1, tgt=target) / ICMPv6NDOptDstLLAddr(lladdr=R_MAC1))
        assert_frame(transmits(acts)[0].frame, want)
    entry = router.neighbors.lookup(1, bytes.fromhex("20010db8000100000000000000000010"))
    assert entry is not None and entry.mac == mac(H1_MAC)
    assert router.stats.get("nd.txna") == 2


def test_dad_probe_defended_to_all_nodes(router: Router, clock: Clock) -> None:
    probe = (Ether(dst="33:33:ff:00:00:01", src=H1_MAC) / IPv6(src="::", dst="ff02::1:ff00:1",
                                                               hlim=255)
             / ICMPv6ND_NS(tgt=R1_6))
    acts = router.receive(1, raw(probe), clock.now)
    want = (Ether(dst="33:33:00:00:00:01", src=R_MAC1) / IPv6(src=R1_6, dst="ff02::1", hlim=255)
            / ICMPv6ND_NA(R=1, S=0, O=1, tgt=R1_6) / ICMPv6NDOptDstLLAddr(lladdr=R_MAC1))
    assert_frame(transmits(acts)[0].frame, want)
    assert router.stats.get("nd.dad") == 1
    assert router.neighbors.lookup(1, bytes(16)) is None


@pytest.mark.parametrize("bad", ["hlim", "mcast target", "dad with sll", "dad to unicast"])
def test_ns_validity_checks(router: Router, clock: Clock, bad: str) -> None:
    src, dst, hlim, tgt = H1.ip6, "ff02::1:ff00:1", 255, R1_6
    opts = ICMPv6NDOptSrcLLAddr(lladdr=H1_MAC)
    if bad == "hlim":
        hlim = 64
    elif bad == "mcast target":
        tgt = "ff02::1"
    elif bad == "dad with sll":
        src = "::"
    else:
        src, dst, opts = "::", R1_6, None
    pkt = IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6ND_NS(tgt=tgt)
    if opts is not None:
        pkt = pkt / opts
    l2 = R_MAC1 if dst == R1_6 else "33:33:ff:00:00:01"
    acts = router.receive(1, raw(Ether(dst=l2, src=H1_MAC) / pkt), clock.now)
    assert acts == [Drop("icmp6.badns")]


def test_na_validity_and_start_announcements(router: Router, clock: Clock) -> None:
    bad = (Ether(dst=R_MAC1, src=H2_MAC) / IPv6(src=H2.ip6, dst=R1_6, hlim=64)
           / ICMPv6ND_NA(tgt=H2.ip6, S=1) / ICMPv6NDOptDstLLAddr(lladdr=H2_MAC))
    assert router.receive(1, raw(bad), clock.now) == [Drop("icmp6.badna")]
    acts = router.start(clock.now)
    frames = [Ether(t.frame) for t in transmits(acts, 1)]
    garp = [f for f in frames if f.haslayer(ARP)]
    assert len(garp) == 1 and garp[0].psrc == garp[0].pdst == R1
    dad = [f for f in frames if f.haslayer(ICMPv6ND_NS)]
    assert {f[ICMPv6ND_NS].tgt for f in dad} == {R1_6, R_LL1}
    assert all(f[IPv6].src == "::" and f[IPv6].hlim == 255 for f in dad)
    unsolicited = [f for f in frames if f.haslayer(ICMPv6ND_NA)]
    assert all(f[IPv6].dst == "ff02::1" and f[ICMPv6ND_NA].S == 0 for f in unsolicited)


def test_queue_then_release_in_order_v4(router: Router, clock: Clock) -> None:
    learn(router, H1, clock.now)
    out = []
    for seq in range(3):
        pkt = Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst=H2.ip4) / ICMP(seq=seq)
        acts = router.receive(1, raw(pkt), clock.now)
        assert acts[-1] == Hold("arp.queued")
        out += transmits(acts)
    # one ARP request for the three packets (RFC 1122 §2.3.2.2 / RFC 4861 §7.2.2)
    assert len(out) == 1 and Ether(out[0].frame)[ARP].pdst == H2.ip4
    acts = router.receive(2, arp_reply(H2, 2), clock.now)
    sent = [Ether(t.frame) for t in transmits(acts, 2)]
    assert [f[ICMP].seq for f in sent] == [0, 1, 2]
    assert all(f.dst == H2_MAC and f.src == R_MAC2 and f[IP].ttl == 63 for f in sent)
    entry = router.neighbors.lookup(2, H2_IP)
    assert entry is not None and entry.state is NeighborState.REACHABLE


def test_resolution_failure_host_unreachable_for_each(router: Router, clock: Clock) -> None:
    learn(router, H1, clock.now)
    for seq in range(2):
        router.receive(1, raw(Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst=H2.ip4) / UDP(
            sport=seq + 1)), clock.now)
    errors = []
    requests = 0
    for _ in range(10):
        for t in transmits(router.tick(clock.advance(1.0))):
            f = Ether(t.frame)
            if f.haslayer(ARP):
                requests += t.ifindex == 2  # (h1's entry is probed on r1-a meanwhile)
            else:
                errors.append(f)
    assert requests == 2  # 3 solicitations in all (MAX_MULTICAST_SOLICIT), the first at once
    assert [(f[ICMP].type, f[ICMP].code) for f in errors] == [(3, 1), (3, 1)]
    assert [f[UDPerror].sport for f in errors] == [1, 2]
    assert all(f[IP].src == "198.51.100.1" and f.dst == H1_MAC for f in errors)
    assert router.stats.get("arp.dropped") == 2 and router.stats.get("arp.timeouts") == 1


def test_queue_and_release_v6(router: Router, clock: Clock) -> None:
    learn(router, H1, clock.now)
    pkt = Ether(dst=R_MAC1, src=H1_MAC) / IPv6(src=H1.ip6, dst=H2.ip6) / ICMPv6EchoRequest(seq=5)
    acts = router.receive(1, raw(pkt), clock.now)
    ns = only_frame(acts, 2)
    assert ns.dst == "33:33:ff:00:00:10" and ns[IPv6].dst == "ff02::1:ff00:10"
    assert ns[ICMPv6ND_NS].tgt == H2.ip6 and ns[ICMPv6NDOptSrcLLAddr].lladdr == R_MAC2
    assert ns[IPv6].hlim == 255 and ns[IPv6].src == "fe80::ff:fe00:102"
    acts = router.receive(2, neighbor_advert(H2, 2), clock.now)
    got = only_frame(acts, 2)
    assert got.dst == H2_MAC and got[ICMPv6EchoRequest].seq == 5 and got[IPv6].hlim == 63


def test_resolution_failure_v6_address_unreachable(router: Router, clock: Clock) -> None:
    learn(router, H1, clock.now)
    router.receive(1, raw(Ether(dst=R_MAC1, src=H1_MAC) / IPv6(src=H1.ip6, dst=H2.ip6) / UDP()),
                   clock.now)
    errors = []
    for _ in range(10):
        errors += [f for t in transmits(router.tick(clock.advance(1.0)), 1)
                   if (f := Ether(t.frame)).haslayer(ICMPv6DestUnreach)]
    assert [(f[ICMPv6DestUnreach].type, f[ICMPv6DestUnreach].code) for f in errors] == [(1, 3)]
    assert errors[0][IPv6].src == R1_6
    assert router.stats.get("nd.dropped") == 1


def test_neighbor_timer_sysctls(router: Router, clock: Clock) -> None:
    router.sysctl.set("net.inet6.icmp6.nd6_mmaxtries", 5)
    router.sysctl.set("net.inet6.icmp6.nd6_retrans", 500)
    learn(router, H1, clock.now)
    router.receive(1, raw(Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst=H2.ip4) / UDP()),
                   clock.now)
    requests = 0
    for _ in range(20):
        requests += sum(1 for t in transmits(router.tick(clock.advance(0.5)), 2))
    assert requests == 4  # 5 solicitations, 0.5 s apart: the first went out at once
    gen = router.generation
    router.sysctl.set("net.link.ether.inet.max_age", 7)
    assert router.neighbors.timers.reachable_time == 7 and router.generation != gen
    router.sysctl.set("net.link.ether.inet.maxhold", 2)
    for _ in range(4):
        router.receive(1, raw(Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst="203.0.113.77")
                              / UDP()), clock.now)
    assert router.stats.get("arp.dropped") >= 2  # the queue holds 2: the oldest were dropped


# --- two routers over a fake link --------------------------------------------------------------

R2_MAC1 = "02:00:00:00:02:01"
R2_MAC2 = "02:00:00:00:02:02"
H3_MAC = "52:54:00:00:00:30"


def _two_routers() -> FakeNetwork:
    r1 = make_router(routes=[
        {"prefix": "192.0.2.0/24", "via": "203.0.113.2"},
        {"prefix": "2001:db8:3::/64", "via": "fe80::ff:fe00:201%r1-b"},
    ])
    r2 = Router(parse_router_config({
        "hostname": "r2",
        "interfaces": [
            {"name": "r2-a", "addresses": ["203.0.113.2/24", "2001:db8:2::2/64"]},
            {"name": "r2-b", "addresses": ["192.0.2.1/24", "2001:db8:3::1/64"]},
        ],
        "routes": [
            {"prefix": "198.51.100.0/24", "via": "203.0.113.1"},
            {"prefix": "2001:db8:1::/64", "via": "2001:db8:2::1"},
        ],
    }, "r2"), {"r2-a": LinkInfo(1, mac(R2_MAC1)), "r2-b": LinkInfo(2, mac(R2_MAC2))},
        rng=random.Random(2))
    net = FakeNetwork()
    net.add("r1", r1)
    net.add("r2", r2)
    net.connect(("r1", 2), ("r2", 1))
    learn(r1, H1, 1000.0)
    return net


def test_two_routers_first_packets_not_lost() -> None:
    net = _two_routers()
    now = 1000.0
    for seq in (1, 2, 3):
        net.inject(("r1", 1), raw(Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst="192.0.2.10")
                                  / ICMP(seq=seq)), now)
    # r1 resolved r2 over the link (ARP request, reply, release); r2 now waits for h3.
    arp_out = [Ether(f) for f in net.take(("r2", 2))]
    assert len(arp_out) == 1 and arp_out[0][ARP].pdst == "192.0.2.10"
    assert [Ether(f).haslayer(ARP) for _, _, f in net.wire][:2] == [True, True]
    reply = Ether(dst=R2_MAC2, src=H3_MAC) / ARP(op=2, hwsrc=H3_MAC, psrc="192.0.2.10",
                                                 hwdst=R2_MAC2, pdst="192.0.2.1")
    net.inject(("r2", 2), raw(reply), now)
    delivered = [Ether(f) for f in net.take(("r2", 2))]
    assert [f[ICMP].seq for f in delivered] == [1, 2, 3]
    assert all(f[IP].ttl == 62 and f.dst == H3_MAC for f in delivered)


def test_two_routers_v6_link_local_next_hop() -> None:
    net = _two_routers()
    now = 1000.0
    net.inject(("r1", 1), raw(Ether(dst=R_MAC1, src=H1_MAC) / IPv6(src=H1.ip6, dst="2001:db8:3::10")
                              / ICMPv6EchoRequest(seq=9)), now)
    ns = [Ether(f) for f in net.take(("r2", 2))]
    assert len(ns) == 1 and ns[0][ICMPv6ND_NS].tgt == "2001:db8:3::10"
    na = (Ether(dst=R2_MAC2, src=H3_MAC) / IPv6(src="2001:db8:3::10", dst="fe80::ff:fe00:202",
                                                hlim=255)
          / ICMPv6ND_NA(S=1, O=1, tgt="2001:db8:3::10") / ICMPv6NDOptDstLLAddr(lladdr=H3_MAC))
    net.inject(("r2", 2), raw(na), now)
    got = [Ether(f) for f in net.take(("r2", 2))]
    assert len(got) == 1 and got[0][ICMPv6EchoRequest].seq == 9 and got[0][IPv6].hlim == 62


def test_two_routers_failure_host_unreachable_back_to_sender() -> None:
    net = _two_routers()
    now = 1000.0
    net.inject(("r1", 1), raw(Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst="192.0.2.99")
                              / UDP(sport=4444, dport=33434)), now)
    for _ in range(10):
        now += 1.0
        net.tick(now)
    back = [Ether(f) for f in net.take(("r1", 1)) if Ether(f).haslayer(ICMP)]
    assert len(back) == 1
    err = back[0]
    assert (err[ICMP].type, err[ICMP].code) == (3, 1)
    assert err[IP].src == "203.0.113.2" and err[IP].dst == H1.ip4 and err[IP].ttl == 63
    assert err[IPerror].dst == "192.0.2.99" and err[UDPerror].sport == 4444


STATIC = [{"address": H2.ip4, "mac": H2_MAC, "interface": "r1-b"},
          {"address": H2.ip6, "mac": H2_MAC, "interface": "r1-b"}]


def test_static_neighbors_forward_without_resolution(clock: Clock) -> None:
    router = make_router(neighbors=STATIC)
    learn(router, H1, clock.now)
    for pkt in (IP(src=H1.ip4, dst=H2.ip4) / ICMP(seq=7),
                IPv6(src=H1.ip6, dst=H2.ip6) / ICMPv6EchoRequest(seq=7)):
        acts = router.receive(1, raw(Ether(dst=R_MAC1, src=H1_MAC) / pkt), clock.now)
        out = only_frame(acts, 2)  # forwarded at once: no ARP request, no NS, nothing queued
        assert out.dst == H2_MAC and out.src == R_MAC2
    # permanent: no reachable-time expiry, no probes, an ARP reply for another MAC ignored
    clock.advance(3600)
    router.tick(clock.now)
    router.receive(2, raw(Ether(dst=R_MAC2, src=GW_MAC) / ARP(
        op=2, hwsrc=GW_MAC, psrc=H2.ip4, hwdst=R_MAC2, pdst=ROUTER_IP4[2])), clock.now)
    entry = router.neighbors.lookup(2, H2_IP)
    assert entry is not None and entry.permanent and entry.mac == mac(H2_MAC)
    assert entry.state is NeighborState.REACHABLE


def test_ticking_only_when_next_timer_says_keeps_every_timer(router: Router,
                                                             clock: Clock) -> None:
    """The daemon sleeps until `Router.next_timer()` (or its idle tick) instead of ticking 10
    times a second: a resolution that fails still sends its solicitations and its errors when
    the router is ticked only at the times next_timer() gives, and nothing fires before."""
    learn(router, H1, clock.now)
    start = clock.now
    router.receive(1, raw(Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst=H2.ip4) / UDP(
        sport=7)), clock.now)
    due = router.next_timer()
    assert due == pytest.approx(start + 1.0)  # RetransTimer of the INCOMPLETE entry
    assert not transmits(router.tick(due - 0.01), 2)  # nothing on r1-b before it is due
    requests, errors, ticks = 0, [], 0
    while ticks < 10 and router.next_timer() <= start + 10.0:  # bounded
        ticks += 1
        for t in transmits(router.tick(router.next_timer())):
            f = Ether(t.frame)
            if f.haslayer(ARP):
                requests += t.ifindex == 2
            else:
                errors.append(f)
    assert requests == 2  # the two retransmissions (the first solicitation went at once)
    assert [(f[ICMP].type, f[ICMP].code, f[UDPerror].sport) for f in errors] == [(3, 1, 7)]
    assert router.stats.get("arp.timeouts") == 1
    assert router.next_timer() > start + 3.0  # nothing more about h2 is due


def test_a_reassembly_in_progress_is_a_timer(router: Router, clock: Clock) -> None:
    learn(router, H1, clock.now)
    assert router.reassembly.next_deadline() is None
    first = IP(src=H1.ip4, dst="198.51.100.1", id=77, flags="MF") / UDP(sport=1, dport=9) / (
        b"x" * 64)
    router.receive(1, raw(Ether(dst=R_MAC1, src=H1_MAC) / first), clock.now)
    deadline = router.reassembly.next_deadline()
    assert deadline is not None and deadline > clock.now
    assert router.next_timer() == min(deadline, router.neighbors.next_deadline)
