"""Fib: longest prefix match against a brute-force reference, and the table's bookkeeping."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import appliance.core.fib as fib_module
from appliance.core.fib import Fib, Route, RouteOrigin, RouteType

WIDTH = {4: 32, 6: 128}


def net(version: int, network: int, plen: int) -> IPv4Network | IPv6Network:
    cls = IPv4Network if version == 4 else IPv6Network
    width = WIDTH[version]
    mask = ((1 << width) - 1) ^ ((1 << (width - plen)) - 1)
    return cls((network & mask, plen))


def reference_lookup(table: dict[tuple[int, int], Route], version: int, addr: int) -> Route | None:
    """Linear scan: the longest prefix in `table` containing `addr`."""
    width = WIDTH[version]
    best: Route | None = None
    best_len = -1
    for (network, plen), route in table.items():
        if plen > best_len and (addr ^ network) >> (width - plen) == 0:
            best, best_len = route, plen
    return best


# --- property tests against the reference ----------------------------------------------------


@st.composite
def operations(draw: st.DrawFn, version: int) -> tuple[list[tuple[str, int, int, int]], list[int]]:
    """A sequence of add/delete/bulk operations on nested prefixes, and addresses to probe.

    Prefixes are cut from a few seed addresses so that they nest and overlap (the hard case
    for LPM); probe addresses are the seeds with random low bits flipped, plus random ones.
    """
    width = WIDTH[version]
    top = (1 << width) - 1
    seeds = draw(st.lists(st.integers(0, top), min_size=1, max_size=4))
    plens = st.integers(0, width)
    ops: list[tuple[str, int, int, int]] = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["add", "add", "add", "bulk", "delete"]))
        seed = draw(st.sampled_from(seeds))
        ops.append((kind, seed, draw(plens), draw(st.integers(1, 8))))
    probes = [seed ^ draw(st.integers(0, (1 << draw(st.integers(0, width))) - 1)) for seed in seeds]
    probes += draw(st.lists(st.integers(0, top), max_size=8))
    return ops, probes


def apply(
    fib: Fib, version: int, ops: list[tuple[str, int, int, int]]
) -> dict[tuple[int, int], Route]:
    reference: dict[tuple[int, int], Route] = {}
    bulk: list[Route] = []
    for kind, seed, plen, ifindex in ops:
        prefix = net(version, seed, plen)
        key = (int(prefix.network_address), plen)
        if kind == "delete":
            if bulk:
                fib.add_many(bulk)
                bulk.clear()
            assert fib.delete(prefix) == reference.pop(key, None)
            continue
        route = Route(prefix, ifindex=ifindex, origin=RouteOrigin.STATIC)
        reference[key] = route
        if kind == "bulk":
            bulk.append(route)
        else:
            if bulk:
                fib.add_many(bulk)
                bulk.clear()
            fib.add(route)
    fib.add_many(bulk)
    return reference


@pytest.mark.parametrize("rebuild_threshold", [0, fib_module._REBUILD_THRESHOLD])
@pytest.mark.parametrize("version", [4, 6])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_lpm_matches_brute_force(version: int, rebuild_threshold: int, data: st.DataObject) -> None:
    # With threshold 0 every add_many rebuilds the lookup structures from scratch; with the
    # default, small bulks update them in place: both must give the reference's answers.
    ops, probes = data.draw(operations(version))
    fib = Fib()
    with patch.object(fib_module, "_REBUILD_THRESHOLD", rebuild_threshold):
        reference = apply(fib, version, ops)
    assert len(fib) == len(reference)
    lookup = fib.lookup_v4 if version == 4 else fib.lookup_v6
    for addr in probes:
        assert lookup(addr) == reference_lookup(reference, version, addr), hex(addr)
        as_object = IPv4Address(addr) if version == 4 else IPv6Address(addr)
        assert fib.lookup(as_object) == lookup(addr)


@settings(max_examples=12, deadline=None)
@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 32), st.integers(0, 255)),
             min_size=65, max_size=120),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 32)), max_size=30),
    st.lists(st.integers(0, 2**32 - 1), max_size=10),
)
def test_bulk_load_then_single_changes(
    seeds: list[int],
    loaded: list[tuple[int, int, int]],
    deleted: list[tuple[int, int]],
    randoms: list[int],
) -> None:
    # A big nested add_many (the rebuild path), then deletes one at a time (the in-place
    # path working on a rebuilt trie), compared with adding one by one.
    routes = [
        Route(net(4, seeds[i % len(seeds)] ^ noise, plen), ifindex=i)
        for i, (_, plen, noise) in enumerate(loaded)
    ]
    bulk, single = Fib(), Fib()
    bulk.add_many(routes)
    for route in routes:
        single.add(route)
    reference = {(int(r.prefix.network_address), r.prefix.prefixlen): r for r in routes}
    for which, plen in deleted:
        prefix = net(4, seeds[which % len(seeds)], plen)
        key = (int(prefix.network_address), plen)
        assert bulk.delete(prefix) == single.delete(prefix) == reference.pop(key, None)
    probes = [*randoms, *seeds, *(s ^ 0xFF for s in seeds), *(s ^ 0xFFFF for s in seeds)]
    probes += [int(r.prefix.network_address) for r in routes]
    for addr in probes:
        expected = reference_lookup(reference, 4, addr)
        assert bulk.lookup_v4(addr) == expected
        assert single.lookup_v4(addr) == expected


# --- examples ---------------------------------------------------------------------------------


def v4(text: str) -> int:
    return int(IPv4Address(text))


def test_empty_table_has_no_route() -> None:
    fib = Fib()
    assert fib.lookup_v4(v4("198.51.100.1")) is None
    assert fib.lookup(ip_address("2001:db8::1")) is None
    assert len(fib) == 0


def test_default_route_catches_everything_else() -> None:
    fib = Fib()
    default = Route(ip_network("0.0.0.0/0"), gateway=ip_address("198.51.100.2"), ifindex=1)
    lan = Route(ip_network("192.0.2.0/24"), ifindex=2, origin=RouteOrigin.CONNECTED)
    fib.add(default)
    fib.add(lan)
    assert fib.lookup_v4(v4("192.0.2.77")) == lan
    assert fib.lookup_v4(v4("203.0.113.9")) == default
    assert fib.lookup_v4(0) == default
    assert fib.lookup_v4(2**32 - 1) == default
    assert fib.lookup(ip_address("2001:db8::1")) is None  # no IPv6 default


def test_host_route_beats_its_subnet_and_only_matches_itself() -> None:
    fib = Fib()
    subnet = Route(ip_network("198.51.100.0/26"), ifindex=1, origin=RouteOrigin.CONNECTED)
    host = Route(ip_network("198.51.100.1/32"), origin=RouteOrigin.LOCAL, ifindex=1)
    fib.add(subnet)
    fib.add(host)
    assert fib.lookup_v4(v4("198.51.100.1")) == host
    assert fib.lookup_v4(v4("198.51.100.0")) == subnet
    assert fib.lookup_v4(v4("198.51.100.2")) == subnet
    assert fib.lookup_v4(v4("198.51.100.64")) is None


def test_replace_keeps_one_route_per_prefix_and_delete_falls_back() -> None:
    fib = Fib()
    wide = Route(ip_network("203.0.113.0/24"), ifindex=1)
    first = Route(ip_network("203.0.113.128/25"), ifindex=2)
    second = Route(ip_network("203.0.113.128/25"), type=RouteType.REJECT)
    fib.add(wide)
    fib.add(first)
    fib.add(second)
    assert len(fib) == 2
    assert fib.lookup_v4(v4("203.0.113.200")) == second
    assert fib.get("203.0.113.128/25") == second
    assert fib.delete(ip_network("203.0.113.128/25")) == second
    assert fib.lookup_v4(v4("203.0.113.200")) == wide
    assert fib.delete("203.0.113.128/25") is None
    assert len(fib) == 1


def test_short_prefix_delete_restores_the_covering_route() -> None:
    # Short prefixes live in the DIR-16 expansion: deleting one must hand its slots back to
    # the next shorter covering prefix, and leave slots owned by longer ones alone.
    fib = Fib()
    default = Route(ip_network("0.0.0.0/0"), ifindex=1)
    eight = Route(ip_network("198.0.0.0/8"), ifindex=2)
    sixteen = Route(ip_network("198.51.0.0/16"), ifindex=3)
    fib.add_many([default, eight, sixteen])
    assert fib.lookup_v4(v4("198.51.1.1")) == sixteen
    fib.delete("198.0.0.0/8")
    assert fib.lookup_v4(v4("198.51.1.1")) == sixteen
    assert fib.lookup_v4(v4("198.52.1.1")) == default
    fib.delete("0.0.0.0/0")
    assert fib.lookup_v4(v4("198.52.1.1")) is None
    assert fib.lookup_v4(v4("198.51.255.255")) == sixteen


@pytest.mark.parametrize("plen", [0, 1, 16, 31, 32, 33, 47, 63, 64, 65, 127, 128])
def test_ipv6_every_kind_of_length(plen: int) -> None:
    fib = Fib()
    doc = Route(ip_network("2001:db8::/32"), ifindex=1000)
    fib.add(doc)
    addr = IPv6Address("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff")
    route = Route(ip_network(f"{addr}/{plen}", strict=False), ifindex=plen + 1)
    fib.add(route)  # for plen 32 this replaces `doc`
    assert fib.lookup(addr) == (route if plen >= 32 else doc)
    if plen < 128:  # flip the last host bit: still inside
        assert fib.lookup(IPv6Address(int(addr) ^ 1)) == fib.lookup(addr)
    if plen > 0:  # flip the last prefix bit: outside
        outside = IPv6Address(int(addr) ^ (1 << (128 - plen)))
        assert fib.lookup(outside) == (doc if plen > 32 else None)


def test_ipv6_longest_of_nested_prefixes() -> None:
    fib = Fib()
    routes = {
        plen: Route(ip_network(f"2001:db8:1:2::/{plen}", strict=False), ifindex=plen)
        for plen in (0, 16, 32, 48, 64, 96, 128)
    }
    fib.add_many(routes.values())
    assert fib.lookup(ip_address("2001:db8:1:2::")) == routes[128]
    assert fib.lookup(ip_address("2001:db8:1:2::1")) == routes[96]
    assert fib.lookup(ip_address("2001:db8:1:2:0:1::")) == routes[64]
    assert fib.lookup(ip_address("2001:db8:1:3::")) == routes[48]
    assert fib.lookup(ip_address("2001:db8:2::")) == routes[32]
    assert fib.lookup(ip_address("2001:db9::")) == routes[16]
    assert fib.lookup(ip_address("3fff::")) == routes[0]
    for plen in (128, 96, 64, 48, 32, 16, 0):
        fib.delete(routes[plen].prefix)
    assert len(fib) == 0
    assert fib.lookup(ip_address("2001:db8:1:2::")) is None


def test_families_do_not_mix() -> None:
    fib = Fib()
    fib.add(Route(ip_network("0.0.0.0/0"), ifindex=1))
    assert fib.lookup(ip_address("::")) is None
    fib.add(Route(ip_network("::/0"), ifindex=2))
    assert fib.lookup(ip_address("::"))  == fib.get("::/0")
    assert fib.lookup(ip_address("0.0.0.0")) == fib.get("0.0.0.0/0")


def test_generation_moves_on_every_change_only() -> None:
    fib = Fib()
    seen = [fib.generation]
    route = Route(ip_network("192.0.2.0/24"), ifindex=1)
    fib.add(route)
    seen.append(fib.generation)
    fib.add(route)  # identical: nothing changed
    assert fib.generation == seen[-1]
    fib.add(Route(ip_network("192.0.2.0/24"), ifindex=2))  # replaced
    seen.append(fib.generation)
    fib.add_many([Route(ip_network(f"198.51.100.{i * 4}/30"), ifindex=1) for i in range(10)])
    seen.append(fib.generation)
    fib.delete("198.51.100.0/30")
    seen.append(fib.generation)
    fib.delete("198.51.100.0/30")  # already gone
    assert fib.generation == seen[-1]
    fib.clear()
    seen.append(fib.generation)
    assert seen == sorted(set(seen)), seen
    assert len(fib) == 0


def test_routes_sorted_by_family_then_prefix() -> None:
    fib = Fib()
    texts = ["2001:db8::/32", "198.51.100.0/24", "::/0", "0.0.0.0/0", "198.51.100.0/25",
             "192.0.2.1/32", "2001:db8::/48"]
    fib.add_many(Route(ip_network(t), ifindex=1) for t in texts)
    got = [str(r.prefix) for r in fib.routes()]
    assert got == ["0.0.0.0/0", "192.0.2.1/32", "198.51.100.0/24", "198.51.100.0/25",
                   "::/0", "2001:db8::/32", "2001:db8::/48"]


def test_iter_v4_gives_ints_shortest_first() -> None:
    fib = Fib()
    fib.add_many(Route(ip_network(t), ifindex=1) for t in
                 ["198.51.100.0/24", "0.0.0.0/0", "198.51.100.128/25", "192.0.2.0/24"])
    fib.add(Route(ip_network("2001:db8::/32"), ifindex=1))
    rows = list(fib.iter_v4())
    assert [plen for _, plen, _ in rows] == sorted(plen for _, plen, _ in rows)
    assert {(n, p) for n, p, _ in rows} == {
        (0, 0), (v4("198.51.100.0"), 24), (v4("198.51.100.128"), 25), (v4("192.0.2.0"), 24)}
    for network, plen, route in rows:
        assert int(route.prefix.network_address) == network and route.prefix.prefixlen == plen
    assert [(n, p) for n, p, _ in fib.iter_v6()] == [(int(IPv6Address("2001:db8::")), 32)]


def test_blackhole_and_reject_have_no_gateway() -> None:
    with pytest.raises(ValueError, match="no gateway"):
        Route(ip_network("192.0.2.0/24"), type=RouteType.BLACKHOLE,
              gateway=ip_address("198.51.100.1"))
    with pytest.raises(ValueError, match="family"):
        Route(ip_network("192.0.2.0/24"), gateway=ipaddress.ip_address("2001:db8::1"))
    hole = Route(ip_network("192.0.2.0/24"), type=RouteType.BLACKHOLE)
    fib = Fib()
    fib.add(hole)
    found = fib.lookup_v4(v4("192.0.2.9"))
    assert found is not None and found.type is RouteType.BLACKHOLE and found.ifindex is None


def test_contains_and_get_take_strings() -> None:
    fib = Fib()
    fib.add(Route(ip_network("192.0.2.0/24"), ifindex=1))
    assert "192.0.2.0/24" in fib
    assert ip_network("192.0.2.0/25") not in fib
    assert 5 not in fib


def test_deleting_nested_long_prefixes_unwinds_in_any_order() -> None:
    # /16 < /24 < /28 < /32 in one /24: leaves of the trie must never keep a deleted route.
    fib = Fib()
    routes = {
        plen: Route(ip_network(f"198.51.100.{'16' if plen > 24 else '0'}/{plen}"), ifindex=plen)
        for plen in (24, 28, 32)
    }
    wide = Route(ip_network("198.51.0.0/16"), ifindex=16)
    fib.add_many([wide, *routes.values()])
    host = v4("198.51.100.16")
    assert fib.lookup_v4(host) == routes[32]
    fib.delete(routes[28].prefix)
    assert fib.lookup_v4(host) == routes[32]
    assert fib.lookup_v4(host + 1) == routes[24]
    fib.delete(routes[24].prefix)
    assert fib.lookup_v4(host + 1) == wide
    assert fib.lookup_v4(host) == routes[32]
    fib.delete(routes[32].prefix)
    assert fib.lookup_v4(host) == wide
    fib.add(routes[28])
    assert fib.lookup_v4(host) == routes[28]
    fib.delete(wide.prefix)
    assert fib.lookup_v4(host) == routes[28]
    assert fib.lookup_v4(v4("198.51.100.1")) is None


@pytest.mark.parametrize("bulk", [False, True])
def test_deleting_everything_leaves_nothing_behind(bulk: bool) -> None:
    fib = Fib()
    routes = [Route(ip_network(f"198.51.{i}.{j * 16}/{28 if j else 20}"), ifindex=1)
              for i in range(0, 200, 16) for j in range(8)]
    routes.append(Route(ip_network("198.0.0.0/8"), ifindex=1))
    with patch.object(fib_module, "_REBUILD_THRESHOLD", 0 if bulk else 10_000):
        fib.add_many(routes)
    late = Route(ip_network("198.51.0.64/26"), ifindex=2)  # in place, after any rebuild
    fib.add(late)
    routes.append(late)
    for route in routes:
        assert fib.delete(route.prefix) == route
    assert len(fib) == 0 and list(fib.routes()) == []
    assert fib.lookup_v4(v4("198.51.16.1")) is None
    # the lookup structures shrank back too (white-box: no empty /16 lists kept)
    assert fib._v4.mid == {}
