# ruff: noqa: E501
"""Each file under bad_topologies/ has one kind of mistake: the loader must report exactly
these problems, at exactly these places, and all of them at once."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from orchestrate.topology import TopologyError, load_topology
from orchestrate.topology.validate import MAX_NODES

HERE = Path(__file__).parent / "bad_topologies"

EXPECTED: dict[str, list[str]] = {
    'bad_address.yaml': [
        '3:58: nodes.h1.interfaces[0].addresses[0]: \'198.51.100.300/26\' is not an IPv4 or IPv6 address with a prefix length (e.g. 198.51.100.1/26 or "2001:db8:1::1/64")',
        '8:21: nodes.h2.interfaces[0].addresses[0]: expected address/prefix-length, got \'198.51.100.3\' (e.g. 198.51.100.1/26 or "2001:db8:1::1/64")',
    ],
    'bad_hosts.yaml': [  # a pin is checked only against an inventory without problems
        "4:15: hosts.beta.uri: uri must be a libvirt URI, got 'http://beta/' (e.g. qemu+ssh://root@alpha.example/system or qemu+tcp://ADDRESS/system)",
        "4:39: hosts.beta.tunnel: tunnel 203.0.113.11 is also host alpha's (every host needs its own address)",
        "4:53: hosts.beta.cores: unknown host key 'cores' (expected one of: uri, tunnel, netns, ssh, ssh_key, known_hosts, memory, vcpus)",
        "5:3: hosts.Gamma: host name 'Gamma' is not a valid name (lowercase letters, digits and '-', at most 32 characters)",
        "8:26: nodes.h2.host: host must name a host of the inventory, got 7 (e.g. host: alpha)",
    ],
    'host_pin_unknown.yaml': [
        "2:21: defaults.backend: hosts: needs the libvirt backend, not 'qemu' (drop backend: or say backend: libvirt)",
        "7:26: nodes.h1.host: node h1 is pinned to host 'gamma', which hosts: lacks (hosts: alpha, beta)",
    ],
    'bad_node_name.yaml': [
        "3:3: nodes['h.1']: node name 'h.1' is not a valid name (1 to 63 letters, digits, '-' or '_', starting with a letter or a digit)",
        "6:15: links[0][1]: unknown node 'h3' (nodes: h2)",
    ],
    'billion_laughs.yaml': [
        '7:10: yaml: more than 100000 values reached through aliases (an alias bomb? repeat less through aliases)',
    ],
    'deep_nesting.yaml': [
        '7:71: yaml: nested more than 64 levels deep (flatten the structure)',
    ],
    'huge_integer.yaml': [
        '6:42: yaml: invalid value: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit',
    ],
    'name_too_long.yaml': [
        "1:7: name: lab name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' is 64 characters long (1 to 63 letters, digits, '-' or '_', starting with a letter or a digit)",
    ],
    'name_traversal.yaml': [
        "1:7: name: lab name '../../victim' is not a valid name (1 to 63 letters, digits, '-' or '_', starting with a letter or a digit)",
    ],
    'not_utf8.yaml': [
        '1:10: file: byte 0xe9 is not UTF-8 text (save the file as UTF-8)',
    ],
    'nul_and_esc.yaml': [
        '1:8: file: character U+0000 (NUL) is not allowed in YAML (remove it, or write it as an escape in a double-quoted string)',
        '3:14: file: character U+001B (ESC) is not allowed in YAML (remove it, or write it as an escape in a double-quoted string)',
    ],
    'python_tag.yaml': [
        "1:7: yaml: unsupported tag 'tag:yaml.org,2002:python/object/apply:os.system' (only plain YAML mappings, lists and scalars)",
    ],
    'recursive_anchor.yaml': [
        '7:8: yaml: recursive alias: this collection contains itself',
    ],
    'two_documents.yaml': [
        '7:1: yaml: a second document in the file (one document per file: remove the second `---`)',
    ],
    'bad_role.yaml': [
        "3:14: nodes.h1.role: role must be router, host or kernel-router, got 'switch'",
    ],
    'capture_bad_filters.yaml': [
        '8:85: tests[0].filter: filter \'icmp and ((\' does not compile: can\'t parse filter expression: syntax error (a pcap-filter(7) expression, e.g. "icmp and src host 198.51.100.2")',
        '9:73: tests[1].filter: filter \'-w/tmp/x\' starts with \'-\': it is a filter expression, not tcpdump options (a pcap-filter(7) expression, e.g. "icmp and src host 198.51.100.2")',
        '10:73: tests[2].filter: filter \'net 198.51.100.0/33\' does not compile: mask length must be <= 32 (a pcap-filter(7) expression, e.g. "icmp and src host 198.51.100.2")',
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
        "4:6: yaml: invalid YAML: did not find expected ',' or '}' (while parsing a flow mapping at line 3 column 7)",
    ],
    'sysctl_on_host.yaml': [
        '7:5: nodes.h1.sysctl: sysctl applies to router nodes only (hosts run stock Linux; use an exec check to change its settings)',
    ],
    'unknown_check_kind.yaml': [
        "9:12: tests[1].kind: unknown check kind 'iperf' (one of: ping, traceroute, exec, counter, capture, reachability, ping-stats, transfer)",
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
        "6:5: nodes.h1.ram: unknown node key 'ram' (expected one of: role, interfaces, routes, sysctl, neighbors, memory, cpus, host)",
    ],
    'sysctl_bad_value.yaml': [
        "7:24: nodes.r1.sysctl['net.inet.ip.ttl']: net.inet.ip.ttl: 0 is out of range 1..255",
        "8:29: nodes.r1.sysctl['net.inet.ip.redirect']: net.inet.ip.redirect: 'fast' is not an integer",
    ],
    'unknown_sysctl.yaml': [
        "7:7: nodes.r1.sysctl['net.inet.ip.redirects']: unknown sysctl 'net.inet.ip.redirects' (did you mean net.inet.ip.redirect?)",
    ],
    'unknown_top_key.yaml': [
        "7:1: checks: unknown top-level key 'checks' (expected one of: name, defaults, hosts, nodes, links, tests, addressing, routing)",
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
    assert problem.path == "links[0].mtu"
    assert problem.hint == ""


def test_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as info:
        load_topology(tmp_path / "nope.yaml")
    assert str(info.value).endswith("nope.yaml:1:1: file: cannot read: No such file or directory")


GOOD_DUO = (HERE.parent.parent.parent / "configs" / "duo.yaml")


def problems_of(path: Path | str) -> list[str]:
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "a device"), ("/tmp", "a directory")])
def test_not_a_regular_file(path: str, kind: str) -> None:
    assert problems_of(path) == [f"{path}:1:1: file: cannot read: this is {kind} "
                                 "(give a YAML file)"]


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "topo.yaml"
    os.mkfifo(fifo)
    # The old loader opened it for reading and waited for a writer forever: give it one
    # after a while, so that the old code fails this test instead of hanging the run.
    writer = threading.Timer(10.0, lambda: open(fifo, "w").close())
    writer.start()
    try:
        assert problems_of(fifo) == [f"{fifo}:1:1: file: cannot read: this is a FIFO "
                                     "(give a YAML file)"]
    finally:
        writer.cancel()


def test_a_50_mib_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    text = GOOD_DUO.read_text()
    path.write_text(text + "#" * (50 * 1024 * 1024) + "\n")
    assert problems_of(path) == [f"{path}:1:1: file: file is {len(text) + 50 * 1024 * 1024 + 1} "
                                 "bytes, more than the limit of 16777216 bytes (16 MiB)"]


def test_100k_nested_brackets(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 100_000)
    assert problems_of(path) == [f"{path}:1:65: yaml: nested more than 64 levels deep "
                                 "(flatten the structure)"]


def test_the_node_count_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    nodes = "".join(f"  h{i}: {{role: host, interfaces: [eth1], memory: 16G}}\n"
                    for i in range(MAX_NODES + 1))
    path.write_text(f"name: huge\nnodes:\n{nodes}links: []\n")
    assert problems_of(path) == [f"{path}:3:3: nodes: {MAX_NODES + 1} nodes, more than the "
                                 f"limit of {MAX_NODES} nodes in one lab (split it into "
                                 "several labs)"]
