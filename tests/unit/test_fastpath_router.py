"""The fast path loaded from a real Router (TableSync): it forwards exactly the frame the router's
slow path would send, punts what the router must see, follows neighbor and sysctl changes,
and its counts land in the router's statistics."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from scapy.all import UDP, Ether, IPv6, raw  # type: ignore[attr-defined]
from scapy.layers.inet import IP

from appliance.config import RouteConfig
from appliance.dataplane.tablesync import TableSync, build_snapshot, have_c, new_fastpath
from appliance.dataplane.twin import Verdict

from routerkit import GW, H1, H2, R_LL1, R_MAC1, arp_reply, learn, mac, make_router, transmits

KINDS = ["python", *(["c"] if have_c() else [])]


def frame4(dst: str, src: str = H1.ip4, ttl: int = 64, size: int = 20) -> bytes:
    return raw(Ether(dst=R_MAC1, src=H1.mac) / IP(src=src, dst=dst, ttl=ttl)
               / UDP(sport=40000, dport=9) / (b"p" * size))


def frame6(dst: str, src: str = H1.ip6, hlim: int = 64) -> bytes:
    return raw(Ether(dst=R_MAC1, src=H1.mac) / IPv6(src=src, dst=dst, hlim=hlim)
               / UDP(sport=40000, dport=9) / b"payload")


def resolve(router: Any, now: float) -> None:
    """Make H1 and H2 REACHABLE the way the router learns them: traffic, request, reply."""
    router.receive(1, frame4(H2.ip4), now)  # router ARPs for H2
    router.receive(2, arp_reply(H2, 2), now)
    back = raw(Ether(dst="02:00:00:00:01:02", src=H2.mac) / IP(src=H2.ip4, dst=H1.ip4)
               / UDP(sport=9, dport=40000))
    router.receive(2, back, now)  # router ARPs for H1
    router.receive(1, arp_reply(H1, 1), now)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_forwards_the_same_frame_as_the_slow_path(kind: str) -> None:
    router = make_router()
    fp = new_fastpath(kind)
    sync = TableSync(fp, router)
    first = frame4(H2.ip4)
    assert fp.process(1, first)[0] == Verdict.PUNT_NEIGHBOR  # H2 not resolved yet
    resolve(router, 1000.0)
    assert sync.sync()
    verdict, out_ifindex, out = fp.process(1, frame4(H2.ip4, ttl=9))
    assert (verdict, out_ifindex) == (Verdict.FORWARD, 2)
    slow = transmits(router.receive(1, frame4(H2.ip4, ttl=9), 1000.5), 2)
    assert [t.frame for t in slow] == [out]
    assert Ether(out)[IP].ttl == 8


def test_stale_neighbor_is_forwarded_and_moved_to_delay_then_probed(kind: str) -> None:
    # RFC 4861 §7.3.3 (and Linux): a STALE entry is still used to send; the first packet
    # sent moves it to DELAY and a unicast probe follows DELAY_FIRST_PROBE_TIME later.
    router = make_router()
    learn(router, H2, 1000.0)  # H2 ARPed for us: STALE
    fp = new_fastpath(kind)
    sync = TableSync(fp, router)
    frame = frame4(H2.ip4)
    h2 = IPv4Address(H2.ip4).packed
    verdict, out_ifindex, out = fp.process(1, frame)
    assert (verdict, out_ifindex) == (Verdict.FORWARD, 2)
    assert Ether(out).dst == H2.mac
    assert fp.process(1, frame)[0] == Verdict.FORWARD
    assert fp.counters()["forward_stale"] == 2
    assert fp.stale_neighbors() == [(2, h2)]  # noted once
    entry = router.neighbors.lookup(2, h2)
    assert entry is not None and entry.state.name == "STALE"
    assert router.neighbor_used(2, h2, 1000.1) == []  # DELAY sends nothing yet
    assert entry.state.name == "DELAY"
    assert sync.sync()
    assert fp.process(1, frame)[0] == Verdict.FORWARD
    assert fp.counters()["forward_stale"] == 2  # a DELAY entry is no longer flagged
    assert fp.stale_neighbors() == []
    probe = transmits(router.tick(1000.1 + router.neighbors.timers.delay_first_probe + 0.01), 2)
    assert entry.state.name == "PROBE"
    assert [Ether(t.frame).dst for t in probe] == [H2.mac]  # a unicast ARP request


def test_neighbor_used_changes_nothing_without_a_usable_entry(kind: str) -> None:
    router = make_router()
    h2 = IPv4Address(H2.ip4).packed
    assert router.neighbor_used(2, h2, 1000.0) == []
    assert router.neighbors.lookup(2, h2) is None  # no entry created, nothing queued
    router.receive(1, frame4(H2.ip4), 1000.0)  # the router ARPs for H2: INCOMPLETE
    entry = router.neighbors.lookup(2, h2)
    assert entry is not None and entry.state.name == "INCOMPLETE"
    queued = len(entry.queue)
    assert router.neighbor_used(2, h2, 1000.1) == []
    assert entry.state.name == "INCOMPLETE" and len(entry.queue) == queued


def test_punts_what_the_router_must_handle(kind: str) -> None:
    router = make_router()
    resolve(router, 1000.0)
    fp = new_fastpath(kind)
    TableSync(fp, router)
    assert fp.process(1, frame4("198.51.100.1"))[0] == Verdict.PUNT_LOCAL
    assert fp.process(1, frame4("203.0.113.255"))[0] == Verdict.PUNT_LOCAL  # directed bcast
    assert fp.process(1, frame6(R_LL1, src="fe80::5054:ff:fe00:10"))[0] == Verdict.PUNT_LOCAL
    assert fp.process(1, frame6("2001:db8:2::1"))[0] == Verdict.PUNT_LOCAL
    assert fp.process(1, frame4("192.0.2.130"))[0] == Verdict.PUNT_REJECT
    assert fp.process(1, frame4("192.0.2.200"))[0] == Verdict.PUNT_REJECT
    assert fp.process(1, frame4(H2.ip4, ttl=1))[0] == Verdict.PUNT_TTL
    assert fp.process(1, frame4("192.0.2.5"))[0] == Verdict.PUNT_REDIRECT  # via GW on r1-a
    assert fp.process(1, frame6("2001:db8:2::10"))[0] == Verdict.PUNT_NEIGHBOR
    from_h2 = raw(Ether(dst="02:00:00:00:01:02", src=H2.mac)
                  / IP(src=H2.ip4, dst="198.51.100.77") / UDP())
    assert fp.process(2, from_h2)[0] == Verdict.PUNT_NEIGHBOR


def test_sysctl_change_reaches_the_fast_path(kind: str) -> None:
    router = make_router()
    resolve(router, 1000.0)
    fp = new_fastpath(kind)
    sync = TableSync(fp, router)
    assert fp.process(1, frame4(H2.ip4))[0] == Verdict.FORWARD
    router.sysctl.set("net.inet.ip.forwarding", 0)
    assert sync.sync()
    assert fp.process(1, frame4(H2.ip4))[0] == Verdict.PUNT_NOFORWARD
    assert not sync.sync()  # nothing changed since


def test_route_added_later_is_used(kind: str) -> None:
    router = make_router(routes=[])
    resolve(router, 1000.0)
    fp = new_fastpath(kind)
    sync = TableSync(fp, router)
    frame = raw(Ether(dst="02:00:00:00:01:02", src=H2.mac) / IP(src=H2.ip4, dst="192.0.2.5")
                / UDP(sport=1, dport=9))
    assert fp.process(2, frame)[0] == Verdict.PUNT_NOROUTE
    router.add_route(RouteConfig(IPv4Network("192.0.2.0/25"), IPv4Address(GW.ip4)))
    assert sync.sync()
    assert fp.process(2, frame)[0] == Verdict.PUNT_NEIGHBOR  # the gateway is not resolved
    router.receive(2, frame, 1001.0)  # the slow path ARPs for the gateway
    router.receive(1, arp_reply(GW, 1), 1001.0)
    assert sync.sync()
    verdict, out_ifindex, out = fp.process(2, frame)
    assert (verdict, out_ifindex) == (Verdict.FORWARD, 1)
    assert out[:6] == mac(GW.mac)


def test_counters_merge_into_router_stats(kind: str) -> None:
    router = make_router()
    resolve(router, 1000.0)
    fp = new_fastpath(kind)
    sync = TableSync(fp, router)
    before = (router.stats.get("ip.forward"), router.stats.get("ip.fastforward"),
              router.stats.get("ip6.fastforward"))
    for _ in range(3):
        assert fp.process(1, frame4(H2.ip4))[0] == Verdict.FORWARD
    counts = sync.merge_counters(router.stats)
    assert counts["forward4"] == 3
    assert router.stats.get("ip.forward") == before[0] + 3
    assert router.stats.get("ip.fastforward") == before[1] + 3
    assert router.stats.get("ip6.fastforward") == before[2]
    sync.merge_counters(router.stats)  # no double counting
    assert router.stats.get("ip.fastforward") == before[1] + 3


def test_snapshot_has_every_route_and_local_address() -> None:
    router = make_router()
    snap = build_snapshot(router)
    n4 = len(snap.routes4) // 12
    n6 = len(snap.routes6) // 24
    v4_routes = sum(1 for r in router.fib.routes() if r.prefix.version == 4)
    v6_routes = sum(1 for r in router.fib.routes() if r.prefix.version == 6)
    # plus own addresses (2 v4, 2 directed broadcasts) and v6 (2 global + 2 link-local)
    assert n4 == v4_routes + 4
    assert n6 == v6_routes + 4
    assert len(snap.interfaces) // 16 == 2
    assert mac(R_MAC1) in snap.interfaces
