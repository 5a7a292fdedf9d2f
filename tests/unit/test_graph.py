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
    assert '"r1" [label="r1\\n(router)", shape=box' in dot
    assert '"h1" [label="h1\\n(host)", shape=ellipse' in dot
    # the LAN segment is a bridge node with one edge per member
    assert '"lan0" [label="lan", shape=diamond' in dot
    assert dot.count('-- "lan0"') == 3
    assert '"r1" -- "lan0" [taillabel="r1-lan\\n198.51.100.1/26\\n2001:db8:1::1/64\\nfe80::1"]' \
        in dot
    # the point-to-point link carries both ends' interface names and addresses
    assert ('"r2" -- "h2" [taillabel="r2-h2\\n198.51.100.65/26\\n2001:db8:2::1/64\\nfe80::2", '
            'headlabel="eth1\\n198.51.100.66/26\\n2001:db8:2::66/64"]') in dot


def test_dot_shows_link_mtu() -> None:
    dot = to_dot(load_topology(CONFIGS / "pmtu.yaml"))
    assert 'label="links[1]\\nmtu 1280"' in dot


def test_graph_prints_dot_without_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(graph_command, "graph", str(CONFIGS / "line.yaml")) == 0
    assert capsys.readouterr().out == to_dot(load_topology(CONFIGS / "line.yaml"))


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz dot")
def test_graph_writes_svg(tmp_path: Path) -> None:
    out = tmp_path / "line.svg"
    assert run(graph_command, "graph", str(CONFIGS / "line.yaml"), "-o", str(out)) == 0
    texts = {t.text for t in ET.parse(out).getroot().iter("{http://www.w3.org/2000/svg}text")}
    assert {"r1", "h1", "h2", "(router)", "198.51.100.65/26"} <= texts


def test_graph_bad_file_and_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(graph_command, "graph", str(BAD / "bad_role.yaml")) == 2
    assert "role must be router or host" in capsys.readouterr().err
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
