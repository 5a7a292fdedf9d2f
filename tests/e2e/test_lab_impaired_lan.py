"""A link-level impairment on a LAN segment: netem on every member's egress (orchestrate.netem),
so a 10 ms delay adds 20 ms to every round trip across the segment, between hosts and to the
vrlab router alike, while the same lab's point-to-point link stays unimpaired. The LAN is
carried through the lab's namespace (root); down removes it."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

from orchestrate.links import namespace_exists
from orchestrate.topology import Topology, load_topology

from _helpers_e2e import min_rtt

LAN = """\
    name: lan-delay
    addressing: auto
    routing: auto
    nodes:
      r1: {role: router}
      a: {role: host}
      b: {role: host}
      c: {role: host}
    links:
      - {endpoints: [r1, a, b], delay: 10ms}
      - [r1, c]
    """


def facing(topology: Topology, node: str, peer: str) -> str:
    """`node`'s IPv4 address on the subnet of `peer`'s first IPv4 address."""
    target = topology.nodes[peer].first_address(4)
    return next(str(a.ip) for i in topology.nodes[node].interfaces for a in i.addresses
                if a.version == 4 and target in a.network)


def test_a_delayed_lan_delays_every_member(e2e: SimpleNamespace, tmp_path: Path) -> None:
    path = tmp_path / "lan-delay.yaml"
    path.write_text(textwrap.dedent(LAN))
    topology = load_topology(path)
    lab = e2e.boot(topology, "e2e-lan-delay")
    try:
        fp = e2e.footprint(lab)
        assert namespace_exists("vrlab-e2e-lan-delay")
        # Every sender on the LAN delays what it sends by 10 ms: a round trip crosses it twice,
        # host to host and host to the router alike.
        host_to_host = min_rtt(lab, "a", facing(topology, "b", "a"))
        host_to_router = min_rtt(lab, "a", facing(topology, "r1", "a"))
        # c hangs off r1 on an unimpaired point-to-point link: a -> c crosses the LAN twice
        # as well, and c -> r1 is the baseline without any delay.
        through = min_rtt(lab, "a", str(topology.nodes["c"].first_address(4)))
        plain = min_rtt(lab, "c", facing(topology, "r1", "c"))
        assert plain < 8.0, plain
        # netem's delay is a floor: with 10 ms on each direction no round trip across the LAN
        # can be under 20 ms (measured: a->b 21.6 ms against 2.2 ms for c->r1; netem in a TCG
        # guest runs ~1.5 ms late per direction, load adds more: at most 30)
        for name, rtt in (("a->b", host_to_host), ("a->r1", host_to_router), ("a->c", through)):
            assert 20.0 <= rtt <= 30.0, (name, rtt, plain)
    finally:
        problems = lab.down()
    assert problems == []
    assert fp.leftovers() == []
    assert not namespace_exists("vrlab-e2e-lan-delay")
