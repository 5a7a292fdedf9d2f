"""Link state and run-time configuration changes in the router core: `Router.set_link`
(routes out of a dead link withdrawn and restored, neighbors flushed, announcements again),
addresses and static neighbors added and removed while running."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv6Interface, ip_address, ip_network

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    ARP,
    ICMP,
    IP,
    UDP,
    Ether,
    ICMPv6DestUnreach,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    IPv6,
    raw,
)

from appliance.config import ConfigError, NeighborConfig, RouteConfig
from appliance.core.router import Hold, Router
from appliance.dataplane import twin
from appliance.dataplane.tablesync import TableSync, Verdict

from routerkit import (
    H1,
    H1_MAC,
    H2,
    H2_MAC,
    R_MAC1,
    R_MAC2,
    Clock,
    arp_reply,
    drops,
    learn,
    mac,
    make_router,
    only_frame,
    transmits,
)

R2 = "203.0.113.1"
R2_6 = "2001:db8:2::1"
DOWN_ROUTES = {"198.51.100.0/24", "192.0.2.0/25", "2001:db8:1::/64", "2001:db8:9::/48"}
"""Everything out of r1-a: its connected subnets and the static routes via gw."""


def from_h2(l3: object) -> bytes:
    return raw(Ether(dst=R_MAC2, src=H2_MAC) / l3)


def fib_prefixes(router: Router) -> set[str]:
    return {str(route.prefix) for route in router.fib.routes()}


def test_link_down_withdraws_routes_out_of_it(r: Router, clock: Clock) -> None:
    generation = r.generation
    change = r.set_link(1, False, clock.now)
    assert change.changed and not change.up and change.interface == "r1-a"
    assert change.routes == len(DOWN_ROUTES) and change.actions == []
    assert not r.interfaces[1].up and r.interfaces[1].link_changes == 1
    assert {str(route.prefix) for route in r.linkdown_routes()} == DOWN_ROUTES
    assert not DOWN_ROUTES & fib_prefixes(r)
    # Its own address stays the router's (LOCAL route kept); other routes are untouched.
    assert {"198.51.100.1/32", "2001:db8:1::1/128", "203.0.113.0/24", "192.0.2.128/26",
            "2001:db8:77::/48"} <= fib_prefixes(r)
    assert r.generation > generation


def test_fast_path_stops_forwarding_out_of_a_dead_link(r: Router, clock: Clock) -> None:
    r.receive(1, arp_reply(H1, 1), clock.now)  # H1 REACHABLE: usable by the fast path
    fp = twin.FastPath()
    tables = TableSync(fp, r)
    frame = from_h2(IP(src=H2.ip4, dst=H1.ip4) / UDP())
    verdict, out_ifindex, _ = fp.process(2, frame)
    assert (verdict, out_ifindex) == (Verdict.FORWARD, 1)
    r.set_link(1, False, clock.now)
    assert tables.sync()
    verdict, _, _ = fp.process(2, frame)
    assert verdict != Verdict.FORWARD
    r.set_link(1, True, clock.now)
    r.receive(1, arp_reply(H1, 1), clock.now)  # flushed while down: learned again
    learn(r, H1, clock.now)
    r.receive(1, arp_reply(H1, 1), clock.now)
    assert tables.sync()
    assert fp.process(2, frame)[:2] == (Verdict.FORWARD, 1)


def test_traffic_to_a_dead_link_gets_net_unreachable(r: Router, clock: Clock) -> None:
    r.set_link(1, False, clock.now)
    acts = r.receive(2, from_h2(IP(src=H2.ip4, dst=H1.ip4) / UDP()), clock.now)
    got = only_frame(acts, 2)
    assert (got[ICMP].type, got[ICMP].code) == (3, 0) and got[IP].src == R2
    assert drops(acts) == ["ip.noroute"] and not transmits(acts, 1)
    acts = r.receive(2, from_h2(IPv6(src=H2.ip6, dst=H1.ip6) / UDP()), clock.now)
    got = only_frame(acts, 2)
    assert got.haslayer(ICMPv6DestUnreach) and got[ICMPv6DestUnreach].code == 0
    assert drops(acts) == ["ip6.noroute"]
    # Also via a static route whose gateway is on the dead link.
    acts = r.receive(2, from_h2(IP(src=H2.ip4, dst="192.0.2.9") / UDP()), clock.now)
    assert drops(acts) == ["ip.noroute"] and not transmits(acts, 1)
    assert r.stats.get("ip.forward") == 0 and r.stats.get("ip6.forward") == 0
    # The router's address on the dead link still answers pings (weak host model).
    acts = r.receive(2, from_h2(IP(src=H2.ip4, dst="198.51.100.1") / ICMP()), clock.now)
    assert only_frame(acts, 2)[ICMP].type == 0


def test_a_shorter_route_takes_over(clock: Clock) -> None:
    router = make_router(routes=[{"prefix": "0.0.0.0/0", "via": "203.0.113.2"},
                                 {"prefix": "::/0", "via": "2001:db8:2::2"}])
    learn(router, H2, clock.now)
    router.set_link(1, False, clock.now)
    acts = router.receive(2, from_h2(IP(src=H2.ip4, dst=H1.ip4) / UDP()), clock.now)
    assert acts[-1] == Hold("arp.queued") and router.stats.get("ip.forward") == 1
    assert only_frame(acts, 2)[ARP].pdst == "203.0.113.2"  # resolving the default gateway
    router.set_link(1, True, clock.now)
    acts = router.receive(2, from_h2(IP(src=H2.ip4, dst=H1.ip4) / UDP()), clock.now)
    assert only_frame(acts, 1)[ARP].pdst == H1.ip4  # the connected route is back


def test_link_down_flushes_neighbors_and_drops_their_queue(clock: Clock) -> None:
    router = make_router(neighbors=[{"address": "198.51.100.9", "mac": "02:00:00:00:00:09",
                                     "interface": "r1-a"}])
    learn(router, H1, clock.now)
    learn(router, H2, clock.now)
    acts = router.receive(2, from_h2(IP(src=H2.ip4, dst="198.51.100.77") / UDP()), clock.now)
    assert acts[-1] == Hold("arp.queued")
    acts = router.receive(2, from_h2(IPv6(src=H2.ip6, dst="2001:db8:1::77") / UDP()),
                          clock.now)
    assert acts[-1] == Hold("nd.queued")
    change = router.set_link(1, False, clock.advance(0.1))
    # H1 (IPv4 and IPv6) and the two INCOMPLETE entries; the static one stays.
    assert change.neighbors == 4 and change.dropped == 2
    assert router.stats.get("arp.dropped") == 1 and router.stats.get("nd.dropped") == 1
    left = [(e.ifindex, ip_address(e.addr)) for e in router.neighbors.entries()]
    assert (1, ip_address("198.51.100.9")) in left
    assert [e for e in router.neighbors.entries() if e.ifindex == 1 and not e.permanent] == []
    assert router.neighbors.lookup(2, ip_address(H2.ip4).packed) is not None
    # No retransmission or unreachable for the flushed entries later on.
    assert router.tick(clock.advance(5.0)) == []


def test_link_up_restores_routes_and_announces(r: Router, clock: Clock) -> None:
    r.set_link(1, False, clock.now)
    assert r.set_link(1, False, clock.now).changed is False  # no change, nothing done
    generation = r.generation
    change = r.set_link(1, True, clock.advance(1.0))
    assert change.changed and change.up and change.routes == len(DOWN_ROUTES)
    assert fib_prefixes(r) >= DOWN_ROUTES and r.linkdown_routes() == []
    assert r.generation > generation and r.interfaces[1].link_changes == 2
    frames = [Ether(t.frame) for t in transmits(change.actions)]
    assert {t.ifindex for t in transmits(change.actions)} == {1}
    garp = [f for f in frames if f.haslayer(ARP)]
    assert len(garp) == 1 and garp[0][ARP].psrc == garp[0][ARP].pdst == "198.51.100.1"
    assert garp[0].src == R_MAC1
    assert len([f for f in frames if f.haslayer(ICMPv6ND_NS)]) == 2  # DAD, ll and global
    assert len([f for f in frames if f.haslayer(ICMPv6ND_NA)]) == 2
    # Forwarding out of r1-a works again (H1 has to be resolved afresh: it was flushed).
    acts = r.receive(2, from_h2(IP(src=H2.ip4, dst=H1.ip4) / UDP()), clock.now)
    assert acts[-1] == Hold("arp.queued") and r.stats.get("ip.forward") == 1


def test_start_announces_only_on_links_that_are_up(clock: Clock) -> None:
    router = make_router()
    router.set_link(1, False, clock.now)
    acts = router.start(clock.now)
    assert transmits(acts) and {t.ifindex for t in transmits(acts)} == {2}


def test_routes_added_and_deleted_while_the_link_is_down(r: Router, clock: Clock) -> None:
    r.set_link(1, False, clock.now)
    # The gateway's subnet is down, but still the interface's: accepted, kept aside.
    r.add_route(RouteConfig(ip_network("192.0.2.128/25"), ip_address("198.51.100.3")))
    assert "192.0.2.128/25" not in fib_prefixes(r)
    assert "192.0.2.128/25" in {str(route.prefix) for route in r.linkdown_routes()}
    # Replacing a withdrawn route with one out of a live link installs it at once.
    r.add_route(RouteConfig(ip_network("192.0.2.0/25"), ip_address("203.0.113.2")))
    assert r.fib.get("192.0.2.0/25") is not None
    assert "192.0.2.0/25" not in {str(route.prefix) for route in r.linkdown_routes()}
    deleted = r.delete_route("192.0.2.128/25")
    assert deleted is not None and deleted.gateway == ip_address("198.51.100.3")
    with pytest.raises(ConfigError, match="connected"):
        r.delete_route("198.51.100.0/24")
    with pytest.raises(ConfigError, match="would replace the connected"):
        r.add_route(RouteConfig(ip_network("198.51.100.0/24"), type="blackhole"))
    r.set_link(1, True, clock.now)
    assert r.fib.get("192.0.2.0/25").gateway == ip_address("203.0.113.2")  # type: ignore[union-attr]
    assert r.fib.get("192.0.2.128/25") is None


def test_add_and_remove_address(clock: Clock) -> None:
    router = make_router(routes=[])
    acts = router.add_address(1, IPv4Interface("192.0.2.1/24"), clock.now)
    garp = only_frame(acts, 1)
    assert garp[ARP].psrc == "192.0.2.1" and router.stats.get("arp.txannounce") == 1
    assert {"192.0.2.0/24", "192.0.2.1/32"} <= fib_prefixes(router)
    ping = raw(Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst="192.0.2.1") / ICMP())
    learn(router, H1, clock.now)
    assert only_frame(router.receive(1, ping, clock.now), 1)[ICMP].type == 0
    router.add_route(RouteConfig(ip_network("203.0.113.128/25"), ip_address("192.0.2.2")))

    gone = router.remove_address(1, IPv4Interface("192.0.2.1/24"))
    assert [str(route.prefix) for route in gone] == ["203.0.113.128/25"]
    assert not {"192.0.2.0/24", "192.0.2.1/32", "203.0.113.128/25"} & fib_prefixes(router)
    assert IPv4Interface("192.0.2.1/24") not in router.interfaces[1].ipv4
    assert drops(router.receive(1, ping, clock.now)) == ["ip.noroute"]

    acts = router.add_address(2, IPv6Interface("2001:db8:5::1/64"), clock.now)
    assert len(transmits(acts, 2)) == 2  # DAD probe and unsolicited NA for the new one only
    assert "2001:db8:5::/64" in fib_prefixes(router)
    with pytest.raises(ConfigError, match="already on r1-b"):
        router.add_address(1, IPv6Interface("2001:db8:5::1/64"), clock.now)
    with pytest.raises(ConfigError, match="link-local"):
        router.remove_address(1, router.interfaces[1].ipv6[0])
    with pytest.raises(ConfigError, match="has no address"):
        router.remove_address(1, IPv4Interface("192.0.2.99/24"))


def test_address_added_on_a_down_link(clock: Clock) -> None:
    router = make_router(routes=[])
    router.set_link(1, False, clock.now)
    assert router.add_address(1, IPv4Interface("192.0.2.1/24"), clock.now) == []
    assert "192.0.2.0/24" not in fib_prefixes(router)
    assert "192.0.2.1/32" in fib_prefixes(router)
    router.set_link(1, True, clock.now)
    assert "192.0.2.0/24" in fib_prefixes(router)


def test_static_neighbor_added_releases_queue_and_is_removed(r: Router, clock: Clock) -> None:
    acts = r.receive(2, from_h2(IP(src=H2.ip4, dst="198.51.100.77") / UDP()), clock.now)
    assert acts[-1] == Hold("arp.queued")
    nc = NeighborConfig(ip_address("198.51.100.77"), mac("02:00:00:00:00:77"), "r1-a")
    released = only_frame(r.add_static_neighbor(nc, clock.now), 1)
    assert released.dst == "02:00:00:00:00:77" and released[IP].dst == "198.51.100.77"
    entry = r.neighbors.lookup(1, nc.address.packed)
    assert entry is not None and entry.permanent
    assert r.delete_static_neighbor(nc) is True
    assert r.neighbors.lookup(1, nc.address.packed) is None
    assert r.delete_static_neighbor(nc) is False
    with pytest.raises(ConfigError, match="no interface"):
        r.add_static_neighbor(NeighborConfig(nc.address, nc.mac, "r1-z"), clock.now)
