"""Router configuration: a good file loads into typed objects; every problem is reported."""

from __future__ import annotations

import os
from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path

import pytest

from appliance.config import ConfigError, load_router_config, parse_router_config

GOOD = """\
hostname: r1
interfaces:
  - name: r1-h1
    addresses: [198.51.100.1/26, "2001:db8:1::1/64"]
    mtu: 1500
  - name: r1-h2
    addresses: [203.0.113.1/24]
    link_local: fe80::1
routes:
  - prefix: 0.0.0.0/0
    via: 198.51.100.2
  - prefix: "2001:db8:9::/48"
    via: "fe80::2%r1-h1"
  - prefix: 192.0.2.0/26
    type: reject
  - prefix: 192.0.2.64/26
    type: blackhole
  - prefix: 192.0.2.128/26
    interface: r1-h2
sysctl:
  net.inet.ip.redirect: 0
  net.inet6.ip6.redirect: 1
"""


def test_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "r1.yaml"
    path.write_text(GOOD)
    cfg = load_router_config(path)
    assert cfg.hostname == "r1"
    assert [i.name for i in cfg.interfaces] == ["r1-h1", "r1-h2"]
    assert cfg.interfaces[0].addresses == [ip_interface("198.51.100.1/26"),
                                           ip_interface("2001:db8:1::1/64")]
    assert cfg.interfaces[0].mtu == 1500 and cfg.interfaces[1].mtu is None
    assert cfg.interfaces[1].link_local == ip_address("fe80::1")
    r = cfg.routes
    assert r[0].prefix == ip_network("0.0.0.0/0") and r[0].via == ip_address("198.51.100.2")
    assert r[1].via == ip_address("fe80::2") and r[1].via_interface == "r1-h1"
    assert r[2].type == "reject" and r[2].via is None
    assert r[3].type == "blackhole"
    assert r[4].via is None and r[4].via_interface == "r1-h2"
    assert cfg.sysctl == {"net.inet.ip.redirect": 0, "net.inet6.ip6.redirect": 1}


BAD = """\
hostname: r1
colour: blue
interfaces:
  - name: r1-h1
    addresses: [198.51.100.1, "2001:db8:1::1/64", 198.51.100.0/26]
    mtu: 1000
  - name: r1-h1
    addresses: []
routes:
  - prefix: 10.0.0.1/8
    via: 198.51.100.2
  - prefix: "2001:db8:9::/48"
    via: "fe80::2"
  - prefix: "2001:db8:a::/48"
    via: "fe80::2%nope"
  - prefix: 192.0.2.0/26
    type: reject
    via: 198.51.100.9
  - prefix: 192.0.2.64/26
  - prefix: 192.0.2.128/26
    via: "2001:db8::1"
  - prefix: 192.0.2.192/26
    type: sideways
sysctl:
  net.inet.ip.nonsense: 1
  net.inet.ip.ttl: 300
"""


def assert_placed(problems: list[str], path: Path, expected: list[tuple[int, str, str]]
                  ) -> None:
    """Exactly the `expected` (line, where, message) problems, each placed at path:line."""
    text = "\n".join(problems)
    for line, where, message in expected:
        matching = [p for p in problems if f": {where}: " in p and message in p]
        assert matching, f"missing {where}: {message} in\n{text}"
        assert matching[0].startswith(f"{path}:{line}:"), matching[0]
    assert len(problems) == len(expected), text


def test_every_problem_reported_with_place(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        load_router_config(path)
    problems = info.value.problems
    expected = [
        (2, "colour", "unknown key"),
        (5, "interfaces[0].addresses[0]", "address/prefixlen"),
        (5, "interfaces[0].addresses[2]", "network or broadcast"),
        (6, "interfaces[0].mtu", "1280"),
        (7, "interfaces[1].name", "duplicate"),
        (10, "routes[0].prefix", "host bits"),
        (13, "routes[1].via", "needs %interface"),
        (15, "routes[2].via", "not configured"),
        (16, "routes[3]", "takes neither"),
        (19, "routes[4]", "needs via or interface"),
        (21, "routes[5].via", "IPv6 next hop for an IPv4"),
        (23, "routes[6].type", "sideways"),
        (25, "sysctl['net.inet.ip.nonsense']", "unknown sysctl"),
        (26, "sysctl['net.inet.ip.ttl']", "out of range"),
    ]
    assert_placed(problems, path, expected)


def test_parse_without_file_names_source() -> None:
    with pytest.raises(ConfigError) as info:
        parse_router_config({"hostname": "r", "interfaces": "eth0"}, "topo.yaml")
    assert info.value.problems == [
        "topo.yaml: interfaces: expected a non-empty list of interfaces"
    ]


def test_invalid_yaml_has_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("hostname: r1\ninterfaces: [\n")
    with pytest.raises(ConfigError) as info:
        load_router_config(path)
    assert info.value.problems[0].startswith(f"{path}:3:")
    assert "invalid YAML" in info.value.problems[0]


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_router_config("/nonexistent/router.yaml")


def test_example_topologies_give_valid_router_configs() -> None:
    """Every router node of configs/*.yaml turns into a router config the core accepts."""
    from appliance.core.router import LinkInfo, Router
    from orchestrate.topology import load_topology

    root = Path(__file__).resolve().parents[2] / "configs"
    built = 0
    for path in sorted(root.glob("*.yaml")):
        topo = load_topology(path)
        for node in topo.nodes.values():
            if node.role != "router":
                continue
            cfg = parse_router_config(node.router_config(), f"{path.name}:{node.name}")
            links = {ic.name: LinkInfo(i + 1, bytes([2, 0, 0, 0, built % 256, i + 1]))
                     for i, ic in enumerate(cfg.interfaces)}
            router = Router(cfg, links)
            assert len(router.interfaces) == len(cfg.interfaces)
            assert all(router.fib.get(r.prefix) is not None for r in cfg.routes)
            built += 1
    assert built >= 1


NEIGHBORS = """\
hostname: r1
interfaces:
  - name: r1-h1
    addresses: [198.51.100.1/26]
neighbors:
  - address: 198.51.100.9
    mac: "02:00:00:00:00:09"
    interface: r1-h1
  - address: "2001:db8:1::9"
    mac: 02-00-00-00-00-0a
    interface: r1-h1
  - address: 198.51.100.9
    mac: "02:00:00:00:00:0b"
    interface: r1-h1
  - address: 198.51.100.10
    mac: "01:00:5e:00:00:01"
    interface: r1-h2
  - address: 198.51.100.1
    mac: "02:00:00:00:00:0c"
    interface: r1-h1
  - address: 224.0.0.5
    mac: nonsense
    interface: r1-h1
"""


def test_static_neighbors_and_their_errors(tmp_path: Path) -> None:
    path = tmp_path / "n.yaml"
    path.write_text(NEIGHBORS)
    with pytest.raises(ConfigError) as info:
        load_router_config(path)
    problems = info.value.problems
    expected = [
        (12, "neighbors[2].address", "duplicate neighbor 198.51.100.9 on r1-h1"),
        (16, "neighbors[3].mac", "not a unicast MAC"),
        (17, "neighbors[3].interface", "'r1-h2' is not configured"),
        (18, "neighbors[4].address", "an address of r1-h1 itself"),
        (21, "neighbors[5].address", "cannot be a neighbor"),
        (22, "neighbors[5].mac", "expected a MAC address"),
    ]
    assert_placed(problems, path, expected)
    path.write_text("\n".join(NEIGHBORS.splitlines()[:11]) + "\n")
    cfg = load_router_config(path)
    assert [(str(n.address), n.mac.hex(), n.interface) for n in cfg.neighbors] == [
        ("198.51.100.9", "020000000009", "r1-h1"), ("2001:db8:1::9", "02000000000a", "r1-h1")]


HOSTILE = {
    # what each did to the old loader: MemoryError, RecursionError, ReaderError tracebacks
    "laughs.yaml": ("a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n"
        for p, n in zip("abcdefg", "bcdefgh", strict=True))).encode(),
    "recursive.yaml": b"hostname: &h [r1, *h]\n",
    "nested.yaml": b"[" * 100_000,
    "nul.yaml": b"hostname: r\x001\n",
    "esc.yaml": b"hostname: \x1b[31mr1\n",
    "latin1.yaml": b"hostname: r\xe91\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_are_placed_problems(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(HOSTILE[name])
    with pytest.raises(ConfigError) as info:
        load_router_config(path)
    (problem,) = info.value.placed
    assert problem.file == str(path) and problem.line >= 1 and problem.col >= 1
    assert info.value.problems == [str(problem)]


def test_the_router_refuses_a_hostile_file_with_exit_2(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    from appliance.host.daemon import main

    path = tmp_path / "router.yaml"
    path.write_bytes(HOSTILE["nested.yaml"])
    assert main(["--config", str(path)]) == 2
    assert capsys.readouterr().err == (f"vrlab-router: {path}:1:65: yaml: nested more than 64 "
                                       "levels deep (flatten the structure)\n")


def test_a_fifo_config_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "router.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="this is a FIFO"):
        load_router_config(fifo)


def test_lo_and_names_the_kernel_refuses_are_placed(tmp_path: Path) -> None:
    """The router takes its interfaces from the kernel: lo would lose 127.0.0.1 and ::1
    (issue 9). A name Linux would not give a device is refused where it is written."""
    path = tmp_path / "router.yaml"
    path.write_text("hostname: r\n"
                    "interfaces:\n"
                    "  - {name: lo, addresses: [192.0.2.1/26]}\n"
                    "  - {name: a-name-far-too-long, addresses: [198.51.100.1/26]}\n"
                    "  - {name: 'r/h1', addresses: [203.0.113.1/26]}\n"
                    "  - {name: r-h1, addresses: [203.0.113.65/26]}\n")
    with pytest.raises(ConfigError) as info:
        load_router_config(path)
    assert_placed(info.value.problems, path, [
        (3, "interfaces[0].name", "lo is the loopback interface"),
        (4, "interfaces[1].name", "'a-name-far-too-long' is not an interface name"),
        (5, "interfaces[2].name", "'r/h1' is not an interface name"),
    ])


def test_qdisc_bypass_per_interface() -> None:
    config = parse_router_config({"hostname": "r1", "interfaces": [
        {"name": "a", "addresses": ["198.51.100.1/24"], "qdisc_bypass": False},
        {"name": "b", "addresses": ["192.0.2.1/24"]}]})
    assert [i.qdisc_bypass for i in config.interfaces] == [False, True]
    with pytest.raises(ConfigError) as info:
        parse_router_config({"hostname": "r1", "interfaces": [
            {"name": "a", "qdisc_bypass": "no"}]})
    assert info.value.problems == [
        "<config>: interfaces[0].qdisc_bypass: expected true or false, got 'no'"]
