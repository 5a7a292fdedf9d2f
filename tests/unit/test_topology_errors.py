# ruff: noqa: E501
"""Each file under bad_topologies/ has one kind of mistake: the loader must report exactly
these problems, at exactly these places, and all of them at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrate.topology import TopologyError, load_topology

HERE = Path(__file__).parent / "bad_topologies"

EXPECTED: dict[str, list[str]] = {
    'bad_address.yaml': [
        '3:58: nodes.h1.interfaces[0].addresses[0]: \'198.51.100.300/26\' is not an IPv4 or IPv6 address with a prefix length (e.g. 198.51.100.1/26 or "2001:db8:1::1/64")',
        '8:21: nodes.h2.interfaces[0].addresses[0]: expected address/prefix-length, got \'198.51.100.3\' (e.g. 198.51.100.1/26 or "2001:db8:1::1/64")',
    ],
    'bad_node_name.yaml': [
        "3:3: nodes.Host_1: node name 'Host_1' is not a valid hostname (lowercase letters, digits and '-', not starting or ending with '-')",
        "6:15: links[0][1]: unknown node 'h3' (nodes: h2)",
    ],
    'bad_role.yaml': [
        "3:14: nodes.h1.role: role must be router or host, got 'switch'",
    ],
    'check_unknown_node.yaml': [
        "10:9: tests[0].to: unknown node 'h3' (nodes: h1, h2)",
    ],
    'duplicate_address.yaml': [
        '4:58: nodes.h2.interfaces[0].addresses[0]: address 2001:db8::1 is already used by h1:eth1 (every address in a lab is unique)',
    ],
    'duplicate_node.yaml': [
        "5:3: nodes.h1: duplicate key 'h1' (first defined at line 3 column 3)",
    ],
    'gateway_off_subnet.yaml': [
        '7:34: nodes.h1.routes[0].via: gateway 198.51.100.129 is not on any subnet of h1 (its subnets: 198.51.100.0/26)',
    ],
    'gateway_not_a_neighbour.yaml': [
        '7:34: nodes.h1.routes[0].via: no node on links[0] has the gateway address 198.51.100.9 (the neighbours there: h2:eth1)',
        '12:32: nodes.h3.interfaces: a node needs interfaces (e.g. interfaces: [{name: eth1}])',
    ],
    'interface_two_links.yaml': [
        '4:39: nodes.h2.interfaces[1]: interface h2:eth2 is on no link (add it to a link or remove it)',
        '8:15: links[1][1]: interface h1:eth1 is already on links[0] (an interface connects to one link; add another interface)',
    ],
    'link_local_via.yaml': [
        '7:31: nodes.h1.routes[0].via: link-local gateway fe80::1 needs its interface (write "fe80::1%IFNAME")',
    ],
    'management_network.yaml': [
        '3:58: nodes.h1.interfaces[0].addresses[0]: 203.0.113.250 is in 203.0.113.248/29, reserved for the management network (use 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32 or fe80::/10)',
        '4:58: nodes.h2.interfaces[0].addresses[0]: subnet 203.0.113.0/24 of 203.0.113.3/24 overlaps the management network 203.0.113.248/29 (use 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32 or fe80::/10)',
    ],
    'memory_too_small.yaml': [
        '3:11: defaults.memory: memory 64 MiB is too small (at least 128 MiB boots the kernel, sshd and the appliance)',
        '6:86: nodes.h2.memory: memory 100 MiB is too small (at least 128 MiB boots the kernel, sshd and the appliance)',
    ],
    'mtu_out_of_range.yaml': [
        '6:42: links[0].mtu: link mtu must be an integer 1280..9000, got 1000',
    ],
    'not_a_mapping.yaml': [
        '1:1: top level: a topology must be a mapping, got list (start with name:, nodes: and links:)',
    ],
    'one_endpoint.yaml': [
        '5:16: links[0].endpoints: a link needs at least two endpoints, got 1 (two for point-to-point, three or more for a LAN segment)',
    ],
    'outside_documentation.yaml': [
        '3:58: nodes.h1.interfaces[0].addresses[0]: 10.0.0.1 is outside the documentation ranges (use 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32 or fe80::/10)',
        '4:58: nodes.h2.interfaces[0].addresses[0]: subnet 192.0.0.0/22 of 192.0.2.3/22 reaches outside the documentation ranges (use 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32 or fe80::/10)',
    ],
    'overlapping_subnets.yaml': [
        '7:34: nodes.r1.interfaces[1].addresses[0]: subnet 198.51.100.64/26 overlaps 198.51.100.0/25 on eth1 (each interface of a node needs its own subnet)',
    ],
    'route_host_bits.yaml': [
        '7:18: nodes.r1.routes[0].prefix: prefix 192.0.2.1/24 has host bits set (did you mean 192.0.2.0/24?)',
    ],
    'syntax_error.yaml': [
        "4:6: yaml: invalid YAML: expected ',' or '}', but got ':' (while parsing a flow mapping at line 3 column 7)",
    ],
    'sysctl_on_host.yaml': [
        '7:5: nodes.h1.sysctl: sysctl applies to router nodes only (hosts run stock Linux; use an exec check to change its settings)',
    ],
    'unknown_check_kind.yaml': [
        "9:12: tests[1].kind: unknown check kind 'iperf' (one of: ping, traceroute, exec, counter, capture)",
    ],
    'unknown_endpoint_node.yaml': [
        "7:6: links[1][0]: node h1 has no interface 'eth2' (list it under nodes.h1.interfaces; it has: eth1)",
        "7:15: links[1][1]: unknown node 'h9' (nodes: h1, h2)",
    ],
    'unknown_interface.yaml': [
        '4:33: nodes.h2.interfaces[0]: interface h2:eth1 is on no link (add it to a link or remove it)',
        "6:15: links[0][1]: node h2 has no interface 'eth0' (list it under nodes.h2.interfaces; it has: eth1)",
    ],
    'unknown_node_key.yaml': [
        "6:5: nodes.h1.ram: unknown node key 'ram' (expected one of: role, interfaces, routes, sysctl, neighbors, memory, cpus)",
    ],
    'sysctl_bad_value.yaml': [
        "7:24: nodes.r1.sysctl['net.inet.ip.ttl']: net.inet.ip.ttl: 0 is out of range 1..255",
        "8:29: nodes.r1.sysctl['net.inet.ip.redirect']: net.inet.ip.redirect: 'fast' is not an integer",
    ],
    'unknown_sysctl.yaml': [
        "7:7: nodes.r1.sysctl['net.inet.ip.redirects']: unknown sysctl 'net.inet.ip.redirects' (did you mean net.inet.ip.redirect?)",
    ],
    'unknown_top_key.yaml': [
        "7:1: checks: unknown top-level key 'checks' (expected one of: name, defaults, nodes, links, tests)",
    ],
    'unlinked_interface.yaml': [
        '7:9: nodes.h1.interfaces[1]: interface h1:eth2 is on no link (add it to a link or remove it)',
    ],
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in HERE.glob("*.yaml")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 15


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_topology_reports_exact_problems(name: str) -> None:
    path = HERE / name
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    got = [str(p) for p in info.value.problems]
    assert got == [f"{path}:{text}" for text in EXPECTED[name]]
    # the exception text carries every problem too (what the CLI prints)
    assert str(info.value).splitlines() == got


def test_problem_fields() -> None:
    path = HERE / "mtu_out_of_range.yaml"
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.col) == (str(path), 6, 42)
    assert problem.where == "links[0].mtu"
    assert problem.hint == ""


def test_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as info:
        load_topology(tmp_path / "nope.yaml")
    assert str(info.value).endswith("nope.yaml:1:1: file: cannot read: No such file or directory")
