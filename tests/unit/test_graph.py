"""`vrlab graph` and `vrlab validate`: what they print and their exit status."""

from __future__ import annotations

import argparse
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orchestrate.commands import graph as graph_command
from orchestrate.commands import validate as validate_command
from orchestrate.graph import to_dot
from orchestrate.topology import load_topology

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BAD = Path(__file__).parent / "bad_topologies"


def run(module: object, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())  # type: ignore[attr-defined]
    args = parser.parse_args(list(argv))
    status: int = args.func(args)
    return status


def test_dot_has_roles_lan_bridge_and_addresses() -> None:
    dot = to_dot(load_topology(CONFIGS / "redirect.yaml"))
    assert dot.startswith('graph "redirect" {')
    # record-shaped nodes: a header, then one port cell per interface with its addresses
    assert '"r1" [label=<<TABLE' in dot and "<B>r1</B> (router)" in dot
    assert "<B>h1</B> (host)" in dot
    assert ('<TD PORT="p1"><FONT POINT-SIZE="9">r2-h2<BR/>198.51.100.65/26<BR/>'
            "2001:db8:2::1/64<BR/>fe80::2</FONT></TD>") in dot
    # the LAN segment is a bridge node with one edge per member's port
    assert '"lan0" [label="lan", shape=diamond' in dot
    assert dot.count('-- "lan0"') == 3
    assert '"r1":p0 -- "lan0";' in dot
    # a point-to-point link goes from port to port
    assert '"r2":p1 -- "h2":p0;' in dot


def test_dot_draws_node_states() -> None:
    dot = to_dot(load_topology(CONFIGS / "line.yaml"), {"r1": "running", "h1": "stopped"})
    assert '<FONT COLOR="#198754">● running</FONT>' in dot
    assert '<FONT COLOR="#dc3545">● stopped</FONT>' in dot
    assert "● absent" in dot  # h2 is not in the lab's status


def test_dot_shows_link_mtu() -> None:
    dot = to_dot(load_topology(CONFIGS / "pmtu.yaml"))
    assert 'label="links[1]\\nmtu 1280"' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz dot")
@pytest.mark.parametrize("config", ["redirect.yaml", "pmtu.yaml", "line.yaml", "duo.yaml"])
def test_interface_labels_never_overlap(tmp_path: Path, config: str) -> None:
    """Every interface label's box (as Graphviz placed it) is clear of every other one;
    on redirect.yaml r2's two labels used to be drawn over each other."""
    out = tmp_path / "g.svg"
    assert run(graph_command, "graph", str(CONFIGS / config), "-o", str(out)) == 0
    topology = load_topology(CONFIGS / config)
    ifnames = {i.name for n in topology.nodes.values() for i in n.interfaces}
    labels = ifnames | {str(a) for n in topology.nodes.values() for i in n.interfaces
                        for a in [*i.addresses, *([i.link_local] if i.link_local else [])]}
    ns = "{http://www.w3.org/2000/svg}"
    boxes = []
    for group in ET.parse(out).getroot().iter(f"{ns}g"):
        texts = [t for t in group.findall(f"{ns}text")]
        for t in texts:
            if t.text in labels:
                size = float(t.get("font-size", "9"))
                width = 0.6 * size * len(t.text or "")
                x, y = float(t.get("x", "0")), float(t.get("y", "0"))
                boxes.append((t.text, x - width / 2, x + width / 2, y - size, y))
    assert len([b for b in boxes if b[0] in ifnames]) >= len(
        {(e.node, e.ifname) for link in topology.links for e in link.endpoints})
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap = a[1] < b[2] and b[1] < a[2] and a[3] < b[4] and b[3] < a[4]
            assert not overlap, f"{a[0]} and {b[0]} overlap in {config}"


def test_graph_prints_dot_without_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(graph_command, "graph", str(CONFIGS / "line.yaml")) == 0
    assert capsys.readouterr().out == to_dot(load_topology(CONFIGS / "line.yaml"))


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz dot")
def test_graph_writes_svg(tmp_path: Path) -> None:
    out = tmp_path / "line.svg"
    assert run(graph_command, "graph", str(CONFIGS / "line.yaml"), "-o", str(out)) == 0
    texts = {t.text for t in ET.parse(out).getroot().iter("{http://www.w3.org/2000/svg}text")}
    assert {"r1", "h1", "h2", " (router)", "198.51.100.65/26"} <= texts


def test_graph_bad_file_and_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(graph_command, "graph", str(BAD / "bad_role.yaml")) == 2
    assert "role must be router, host or kernel-router" in capsys.readouterr().err
    assert run(graph_command, "graph", str(CONFIGS / "line.yaml"), "-o",
               str(tmp_path / "x.gif")) == 2
    assert not (tmp_path / "x.gif").exists()


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(validate_command, "validate", str(CONFIGS / "redirect.yaml")) == 0
    assert capsys.readouterr().out == (
        f"{CONFIGS / 'redirect.yaml'}: OK: lab redirect: 2 routers, 2 hosts, 2 links "
        "(1 LAN segment), 9 checks\n")


def test_validate_prints_every_problem(capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / "unknown_endpoint_node.yaml"
    assert run(validate_command, "validate", str(path)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{path}:7:6: links[1][0]: node h1 has no interface 'eth2' (list it under "
        "nodes.h1.interfaces; it has: eth1)",
        f"{path}:7:15: links[1][1]: unknown node 'h9' (nodes: h1, h2)",
        f"{path}: 2 problems",
    ]
