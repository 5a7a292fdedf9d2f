"""The topology model: the example configs load, and the model says what the files say."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_interface, ip_network
from pathlib import Path

import pytest

from orchestrate.memory import role_memory
from orchestrate.topology import (
    DEFAULT_MEMORY,
    Endpoint,
    TopologyError,
    load_topology,
    parse_topology,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["duo", "line", "redirect", "pmtu"])
def test_example_configs_load_with_checks(name: str) -> None:
    topology = load_topology(CONFIGS / f"{name}.yaml")
    assert topology.name == name
    assert topology.tests, "every example config carries checks"
    for node in topology.nodes.values():
        # No memory in the file: each node its role's measured size (line.yaml says 256).
        expected = DEFAULT_MEMORY if name == "line" else role_memory(node.role)
        assert node.memory == expected and node.cpus == 1
        for iface in node.interfaces:
            assert iface.link is not None


def test_line_model() -> None:
    t = load_topology(CONFIGS / "line.yaml")
    assert [n.name for n in t.routers()] == ["r1"]
    assert sorted(n.name for n in t.hosts()) == ["h1", "h2"]
    assert t.links[0].endpoints == [Endpoint("h1", "eth1"), Endpoint("r1", "r1-h1")]
    assert not t.links[0].is_lan
    h1 = t.nodes["h1"]
    assert h1.first_address(4) == IPv4Address("198.51.100.2")
    assert h1.first_address(6) == IPv6Address("2001:db8:1::2")
    assert [str(r.prefix) for r in h1.routes] == ["0.0.0.0/0", "::/0"]
    assert t.node_of_address(IPv4Address("198.51.100.65")) == "r1"
    assert t.link_of("r1", "r1-h2") is t.links[1]
    first = t.tests[0]
    assert (first.kind, first.params) == ("ping", {"from": "h1", "to": "r1", "family": 4})
    assert (first.line, first.col) == (29, 5)


def test_router_config_is_the_design_shape() -> None:
    t = load_topology(CONFIGS / "redirect.yaml")
    assert t.nodes["r1"].router_config() == {
        "hostname": "r1",
        "interfaces": [{"name": "r1-lan", "addresses": ["198.51.100.1/26", "2001:db8:1::1/64"],
                        "link_local": "fe80::1"}],
        "routes": [{"prefix": "198.51.100.64/26", "via": "198.51.100.2"},
                   {"prefix": "2001:db8:2::/64", "via": "fe80::2%r1-lan"}],
        "sysctl": {"net.inet.ip.redirect": 1, "net.inet6.ip6.redirect": 1},
    }
    assert t.links[0].is_lan and t.links[0].name == "lan"


def test_router_config_is_accepted_by_the_appliance() -> None:
    config = pytest.importorskip("appliance.config")
    for name in ("line", "redirect", "pmtu"):
        t = load_topology(CONFIGS / f"{name}.yaml")
        for router in t.routers():
            parsed = config.parse_router_config(router.router_config(), f"{name}:{router.name}")
            assert parsed.hostname == router.name
            assert [i.name for i in parsed.interfaces] == [i.name for i in router.interfaces]


def test_link_mtu_reaches_interfaces_and_router_config() -> None:
    t = load_topology(CONFIGS / "pmtu.yaml")
    r1 = t.nodes["r1"]
    assert [i.mtu for i in r1.interfaces] == [None, 1280]
    assert r1.router_config()["interfaces"][1]["mtu"] == 1280


BASE = """\
name: t
defaults: {memory: 512M, cpus: 2, backend: libvirt, accel: tcg}
nodes:
  r1:
    role: router
    memory: 1G
    interfaces:
      - {name: a, addresses: [192.0.2.1/30, "2001:db8::1/64"]}
      - {name: b, addresses: [192.0.2.5/30]}
    routes:
      - {prefix: 203.0.113.0/25, via: 192.0.2.6}
      - {prefix: 203.0.113.128/26, interface: b}
      - {prefix: "2001:db8:9::/48", via: "fe80::2%a"}
      - {prefix: 198.51.100.0/24, type: reject}
  h1: {role: host, interfaces: [{name: e, addresses: [192.0.2.2/30, "2001:db8::2/64"]}]}
  h2: {role: host, interfaces: [{name: e, addresses: [192.0.2.6/30]}]}
links:
  - [r1:a, h1:e]
  - [r1:b, h2:e]
"""


def test_defaults_and_route_forms() -> None:
    t = parse_topology(BASE, "base.yaml")
    assert (t.defaults.memory, t.defaults.cpus, t.defaults.backend, t.defaults.accel) == (
        512, 2, "libvirt", "tcg")
    assert t.nodes["r1"].memory == 1024 and t.nodes["h1"].memory == 512
    assert t.nodes["h1"].cpus == 2
    assert t.nodes["r1"].router_config()["routes"] == [
        {"prefix": "203.0.113.0/25", "via": "192.0.2.6"},
        {"prefix": "203.0.113.128/26", "interface": "b"},
        {"prefix": "2001:db8:9::/48", "via": "fe80::2%a"},
        {"prefix": "198.51.100.0/24", "type": "reject"},
    ]
    assert t.nodes["r1"].interfaces[0].addresses == [
        ip_interface("192.0.2.1/30"), ip_interface("2001:db8::1/64")]
    assert t.nodes["r1"].routes[0].prefix == ip_network("203.0.113.0/25")
    assert [r.iproute2_args() for r in t.nodes["r1"].routes] == [
        ["203.0.113.0/25", "via", "192.0.2.6"],
        ["203.0.113.128/26", "dev", "b"],
        ["2001:db8:9::/48", "via", "fe80::2", "dev", "a"],
        ["prohibit", "198.51.100.0/24"],
    ]


def test_all_problems_are_reported_together() -> None:
    text = BASE.replace("192.0.2.6}", "192.0.2.99}").replace("role: host", "role: hots", 1)
    text += "  - [h1:x, h2:e]\n"
    with pytest.raises(TopologyError) as info:
        parse_topology(text, "many.yaml")
    got = [str(p) for p in info.value.problems]
    assert got == [
        "many.yaml:11:39: nodes.r1.routes[0].via: gateway 192.0.2.99 is not on any subnet of "
        "r1 (its subnets: 192.0.2.0/30, 192.0.2.4/30)",
        "many.yaml:15:14: nodes.h1.role: role must be router, host or kernel-router, got 'hots'",
        "many.yaml:20:6: links[2][0]: node h1 has no interface 'x' (list it under "
        "nodes.h1.interfaces; it has: e)",
        "many.yaml:20:12: links[2][1]: interface h2:e is already on links[1] (an interface "
        "connects to one link; add another interface)",
    ]


def test_static_neighbors_reach_the_router_config_and_bad_ones_are_placed() -> None:
    good = BASE.replace("      - {prefix: 198.51.100.0/24, type: reject}\n",
                        "      - {prefix: 198.51.100.0/24, type: reject}\n"
                        "    neighbors:\n"
                        '      - {address: 192.0.2.6, mac: "02:00:00:00:00:06", interface: b}\n'
                        '      - {address: "fe80::2", mac: "02:00:00:00:00:02", interface: a}\n')
    r1 = parse_topology(good, "good.yaml").nodes["r1"]
    config = r1.router_config()
    assert config["neighbors"] == [
        {"address": "192.0.2.6", "mac": "02:00:00:00:00:06", "interface": "b"},
        {"address": "fe80::2", "mac": "02:00:00:00:00:02", "interface": "a"},
    ]
    appliance = pytest.importorskip("appliance.config")
    parsed = appliance.parse_router_config(config, "r1")
    assert [n.mac.hex() for n in parsed.neighbors] == ["020000000006", "020000000002"]
    bad = BASE.replace("      - {prefix: 198.51.100.0/24, type: reject}\n",
                       "      - {prefix: 198.51.100.0/24, type: reject}\n"
                       "    neighbors:\n"
                       '      - {address: 10.0.0.1, mac: "01:00:5e:00:00:01", interface: z}\n'
                       ).replace("  h2: {role: host,", '  h2: {neighbors: [], role: host,')
    with pytest.raises(TopologyError) as info:
        parse_topology(bad, "bad.yaml")
    text = "\n".join(str(p) for p in info.value.problems)
    for line, where, what in (
        (16, "nodes.r1.neighbors[0].address", "10.0.0.1 is outside the documentation ranges"),
        (16, "nodes.r1.neighbors[0].mac", "unicast MAC"),
        (16, "nodes.r1.neighbors[0].interface", "no interface 'z'"),
        (18, "nodes.h2.neighbors", "router nodes only"),
    ):
        assert any(f"bad.yaml:{line}:" in str(p) and f" {where}: " in str(p) and what in str(p)
                   for p in info.value.problems), (where, text)
    assert len(info.value.problems) == 4, text
