"""Topologies that leave things out: generated interface names, automatic addresses and
routes (checked against an independent all-pairs shortest-path run with networkx), the
generated reachability checks, expansion round trips, impairments, and every placed error."""

from __future__ import annotations

import ipaddress
import itertools
import random
from pathlib import Path

import networkx as nx
import pytest

from bench.topo import generate
from orchestrate.nodeconfig import NodeBootSpec, render_files
from orchestrate.topology import Topology, TopologyError, load_topology, parse_topology
from orchestrate.topology.addressing import Pool, ipv4_prefix_for
from orchestrate.topology.expand import dump, to_document
from orchestrate.topology.impairment import parse_impairment
from orchestrate.topology.model import Impairment
from orchestrate.topology.routing import KEEP, compute, find_loops, path, subnets

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def problems(text: str) -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, "t.yaml")
    return [str(p) for p in info.value.problems]


# -- pools and addresses -------------------------------------------------------------------


def test_pool_allocates_aligned_blocks_around_used_space() -> None:
    pool = Pool([ipaddress.ip_network("198.51.100.0/24")],
                [ipaddress.ip_network("198.51.100.4/30"), ipaddress.ip_network("198.51.100.0/31")])
    got = [ipaddress.ip_network((pool.allocate(2), 30)) for _ in range(2)]
    assert [str(n) for n in got] == ["198.51.100.8/30", "198.51.100.12/30"]
    assert str(ipaddress.ip_network((pool.allocate(4), 28))) == "198.51.100.16/28"
    assert str(ipaddress.ip_network((pool.allocate(1), 31))) == "198.51.100.2/31"


def test_lan_prefix_fits_its_endpoints() -> None:
    assert ipv4_prefix_for(2, 30) == 30
    assert ipv4_prefix_for(2, 31) == 31
    assert ipv4_prefix_for(3, 30) == 29
    assert ipv4_prefix_for(6, 30) == 29
    assert ipv4_prefix_for(7, 30) == 28


LAN = """
name: lan
addressing: auto
nodes:
  r1: {role: router}
  r2: {role: router}
  h1: {role: host}
  h2: {role: host}
  h3:
    role: host
    interfaces: [{name: eth7, addresses: [198.51.100.2/30]}]
links:
  - {endpoints: [r1, h1, h2, r2], name: office}
  - [r1, h3:eth7]
  - [r1, r2]
"""


def test_generated_names_and_addresses() -> None:
    t = parse_topology(LAN)
    assert [i.name for i in t.nodes["r1"].interfaces] == ["r1-office", "r1-h3", "r1-r2"]
    assert [i.name for i in t.nodes["h1"].interfaces] == ["eth1"]
    # the LAN (4 endpoints) gets a /29, first: the explicit /30 of h3 is left alone
    lan = [str(t.nodes[n].interfaces[0].addresses[0]) for n in ("r1", "h1", "h2", "r2")]
    assert lan == ["198.51.100.9/29", "198.51.100.10/29", "198.51.100.11/29",
                   "198.51.100.12/29"]
    # r1 joins h3's subnet with the free address; IPv6 is a /64 per link
    r1_h3 = t.nodes["r1"].interface("r1-h3")
    assert r1_h3 is not None
    assert [str(a) for a in r1_h3.addresses] == ["198.51.100.1/30", "2001:db8:0:1::1/64"]
    assert all(a.network.prefixlen == 64 for n in t.nodes.values() for i in n.interfaces
               for a in i.addresses if a.version == 6)
    owners = [a.ip for n in t.nodes.values() for i in n.interfaces for a in i.addresses]
    assert len(owners) == len(set(owners))


def test_explicit_files_without_addressing_keep_unaddressed_interfaces() -> None:
    t = parse_topology("""
nodes:
  h1: {role: host, interfaces: [eth1]}
  h2: {role: host, interfaces: [eth1]}
links: [[h1:eth1, h2:eth1]]
""")
    assert t.nodes["h1"].interfaces[0].addresses == []


def test_pool_override_and_exhaustion_is_placed() -> None:
    got = problems("""
addressing: {ipv4: 198.51.100.0/29, ipv6: false}
nodes:
  r1: {role: router}
  r2: {role: router}
  r3: {role: router}
links:
  - [r1, r2]
  - [r2, r3]
  - [r3, r1]
""")
    assert got == ["t.yaml:10:5: links[2]: no free IPv4 /30 left for this link in "
                   "198.51.100.0/29 (give addressing: a larger pool, or p2p_prefix: 31)"]
    t = parse_topology("""
addressing: {ipv4: 198.51.100.0/29, ipv6: false, p2p_prefix: 31}
nodes: {r1: {role: router}, r2: {role: router}, r3: {role: router}}
links: [[r1, r2], [r2, r3], [r3, r1]]
""")
    nets = sorted(str(s.network) for s in subnets(t, 4))
    assert nets == ["198.51.100.0/31", "198.51.100.2/31", "198.51.100.4/31"]
    assert not subnets(t, 6)


# -- routes ----------------------------------------------------------------------------------


def random_lab(seed: int, routers: int = 12) -> Topology:
    rng = random.Random(seed)
    lines = ["addressing: auto", "routing: auto", "nodes:"]
    lines += [f"  r{i}: {{role: router}}" for i in range(routers)]
    lines += ["  h0: {role: host}", "  h1: {role: host}", "links:"]
    pairs = {(i, i + 1) for i in range(routers - 1)}  # connected
    while len(pairs) < routers * 2:
        a, b = sorted(rng.sample(range(routers), 2))
        pairs.add((a, b))
    for a, b in sorted(pairs):
        lines.append(f"  - {{endpoints: [r{a}, r{b}], cost: {rng.choice([1, 1, 2, 3])}}}")
    lines += ["  - [h0, r0]", f"  - [h1, r{routers - 1}]"]
    return parse_topology("\n".join(lines) + "\n")


@pytest.mark.parametrize("seed", range(8))
def test_next_hops_match_independent_shortest_paths(seed: int) -> None:
    t = random_lab(seed)
    graph = nx.MultiGraph()
    for index, link in enumerate(t.links):
        a, b = (e.node for e in link.endpoints)
        if t.nodes[a].forwards and t.nodes[b].forwards:
            graph.add_edge(a, b, key=index, weight=link.cost)
    dist = dict(nx.all_pairs_dijkstra_path_length(graph))
    for node in t.nodes.values():  # compute() again, without summaries
        node.routes = []
    result = compute(t, summarize=False)
    for family in (4, 6):
        for router in (n.name for n in t.routers()):
            for net in subnets(t, family):
                label = result.next_hop(family, router, net.network)
                ends = [n for n in net.nodes if t.nodes[n].forwards]
                if router in net.nodes:
                    assert label is None
                    continue
                best = min(dist[router][n] for n in ends)
                assert isinstance(label, tuple)
                nbr, link = label
                cost = t.links[link].cost
                assert cost + min(dist[nbr][n] for n in ends) == best
                # the tie-break: the smallest (neighbour, link) among all equally short ones
                candidates = [(v, k) for _, v, k, w in graph.edges(router, keys=True,
                                                                   data="weight")
                              if w + min(dist[v][n] for n in ends) == best]
                assert label == min(candidates)


@pytest.mark.parametrize("seed", range(4))
def test_summarized_tables_forward_along_shortest_paths(seed: int) -> None:
    t = random_lab(seed)
    graph = nx.Graph()
    for link in t.links:
        a, b = (e.node for e in link.endpoints)
        if t.nodes[a].forwards and t.nodes[b].forwards:
            old = graph.get_edge_data(a, b, {"weight": 1 << 30})["weight"]
            graph.add_edge(a, b, weight=min(old, link.cost))
    dist = dict(nx.all_pairs_dijkstra_path_length(graph))
    unsummarized = sum(len(subnets(t, f)) for f in (4, 6)) * len(t.routers())
    assert sum(len(n.routes) for n in t.routers()) < unsummarized
    for family in (4, 6):
        for router in t.routers():
            for net in subnets(t, family):
                owner = net.nodes[0]
                target = next(a.ip for i in t.nodes[owner].interfaces for a in i.addresses
                              if a.ip in net.network)
                hops = path(t, router.name, target)
                assert hops is not None and hops[-1] == owner
                # the routers it crosses until the first one on the subnet: a shortest path
                ends = [n for n in net.nodes if t.nodes[n].forwards]
                walked = [router.name]
                for hop in hops:
                    if walked[-1] in ends:
                        break
                    walked.append(hop)
                assert walked[-1] in ends
                cost = sum(min(lk.cost for lk, _, _ in t.shared_links(a, b))
                           for a, b in itertools.pairwise(walked))
                assert cost == min(dist[router.name][n] for n in ends)


def test_hosts_get_default_routes_and_explicit_routes_win() -> None:
    t = parse_topology("""
addressing: auto
routing: auto
nodes:
  r1:
    role: router
    routes: [{prefix: 203.0.113.0/25, type: blackhole}]
  r2: {role: router}
  h1: {role: host}
  h2:
    role: host
    interfaces: [{name: eth1, addresses: [198.51.100.66/30]}]
    routes: [{prefix: 0.0.0.0/0, via: 198.51.100.65}]
links: [[r1, r2], [h1, r1], [h2:eth1, r2]]
""")
    h1 = {str(r.prefix): str(r.via) for r in t.nodes["h1"].routes}
    r1_h1 = t.nodes["r1"].interface("r1-h1")
    assert r1_h1 is not None
    assert h1["0.0.0.0/0"] == str(r1_h1.addresses[0].ip)
    assert "::/0" in h1
    assert [str(r.prefix) for r in t.nodes["h2"].routes if r.prefix.version == 4] == [
        "0.0.0.0/0"]
    assert t.nodes["r1"].routes[0].type == "blackhole"  # kept, first
    assert path(t, "h1", ipaddress.ip_address("198.51.100.66")) == ["r1", "r2", "h2"]


def test_ring_file_is_short_and_fully_derived() -> None:
    text = (CONFIGS / "ring.yaml").read_text()
    assert len(text.splitlines()) < 30
    assert "addresses:" not in text and "routes:" not in text
    t = load_topology(CONFIGS / "ring.yaml")
    assert len(t.routers()) == 6 and len(t.hosts()) == 4
    assert all(n.routes for n in t.nodes.values())
    kinds = [c.kind for c in t.tests]
    assert kinds.count("ping") == 24  # 12 ordered pairs, both families
    assert kinds.count("traceroute") == 12  # 6 pairs, both families
    trace = next(c for c in t.tests if c.kind == "traceroute" and c.params["to"] == "h3")
    assert trace.params["hops"] == ["r1", "r2", "r3", "r4", "h3"]  # r2 < r6 breaks the tie


def test_thousand_routers_validate_with_summarized_routes(tmp_path: Path) -> None:
    path_ = tmp_path / "scale.yaml"
    path_.write_text(generate(1000))
    t = load_topology(path_)
    assert len(t.routers()) == 1000
    routers = t.routers()
    assert max(len(r.routes) for r in routers) < 150  # a route per subnet would be 1,120
    rng = random.Random(1)
    hosts = [n.name for n in t.hosts()]
    for _ in range(5):
        a, b = rng.sample(hosts, 2)
        target = t.nodes[b].first_address(6)
        assert target is not None
        hops = path(t, a, target, limit=1200)
        assert hops is not None and hops[-1] == b


# -- expansion -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_expansion_round_trips(name: str, tmp_path: Path) -> None:
    original = load_topology(CONFIGS / name)
    out = tmp_path / name
    out.write_text(dump(original, str(CONFIGS / name)))
    again = load_topology(out)
    assert "addressing:" not in out.read_text() and "kind: reachability" not in out.read_text()
    first, second = to_document(original), to_document(again)
    for doc in (first, second):
        for check in doc.get("tests", []):
            check.pop("file", None)
    assert second == first
    assert again.routing == "static"


# -- impairments -----------------------------------------------------------------------------


def test_impairment_units_and_tc_netem_arguments() -> None:
    from orchestrate.netem import tc_args, tc_command

    imp, issues = parse_impairment({"delay": "20ms", "jitter": "500us", "loss": "10%",
                                    "reorder": 25, "rate": "10mbit", "duplicate": "1.5%"})
    assert issues == []
    assert imp == Impairment(20.0, 0.5, 10.0, 25.0, 1.5, None, 10_000_000)
    assert tc_args(imp) == ["limit", "10000", "delay", "20ms", "0.5ms", "loss", "10%",
                            "duplicate", "1.5%", "reorder", "25%", "rate", "10000000bit"]
    assert tc_command("r1-h2", Impairment(delay=0.0)) == (
        "tc qdisc replace dev r1-h2 root netem limit 10000 delay 0ms")
    assert tc_command("eth1", None) == "tc qdisc del dev eth1 root 2>/dev/null || true"
    assert parse_impairment({"rate": "1mbps"})[0].rate == 8_000_000  # tc: bytes per second


def test_impairments_per_link_and_endpoint() -> None:
    t = parse_topology("""
addressing: auto
nodes: {a: {role: host}, b: {role: host}}
links:
  - endpoints: [a, {endpoint: b, loss: 5%}]
    delay: 20ms
""")
    link = t.links[0]
    assert link.impairment_at("a") == Impairment(delay=20.0)
    assert link.impairment_at("b") == Impairment(delay=20.0, loss=5.0)
    assert link.impaired


# -- kernel-router ---------------------------------------------------------------------------


def test_kernel_router_is_configured_as_a_forwarding_host() -> None:
    t = parse_topology("""
addressing: auto
routing: auto
nodes:
  k1:
    role: kernel-router
    sysctl: {net.ipv4.conf.all.send_redirects: 0}
  r1: {role: router}
  h1: {role: host}
  h2: {role: host}
links: [[h1, k1], [k1, r1], [r1, h2]]
""")
    k1 = t.nodes["k1"]
    assert [i.name for i in k1.interfaces] == ["k1-h1", "k1-r1"]
    assert [n.name for n in t.hosts()] == ["h1", "h2"] and k1.forwards
    spec = NodeBootSpec.from_node(
        k1, mgmt_mac="52:54:00:00:00:01",
        interface_macs={"k1-h1": "52:54:00:00:00:02", "k1-r1": "52:54:00:00:00:03"},
        authorized_keys=["ssh-ed25519 AAAA test"],
        host_key_private="-----BEGIN OPENSSH PRIVATE KEY-----\nx\n",
        host_key_public="ssh-ed25519 AAAA host")
    files = render_files(spec)
    assert "net/ipv4/ip_forward 1" in files["sysctl"]
    assert "net/ipv6/conf/all/forwarding 1" in files["sysctl"]
    assert "net/ipv4/conf/all/send_redirects 0" in files["sysctl"]
    assert "router.yaml" not in files
    assert "route add 198.51.100." in files["net.batch"]  # a summary covering r1-h2's /30
    assert "address add 198.51.100." in files["net.batch"]
    h2 = t.nodes["h2"].first_address(4)
    assert h2 is not None
    assert path(t, "h1", h2) == ["k1", "r1", "h2"]


# -- placed errors ---------------------------------------------------------------------------


def test_routing_auto_without_a_router() -> None:
    assert problems("""
addressing: auto
routing: auto
nodes: {a: {role: host}, b: {role: host}}
links: [[a, b]]
""") == ["t.yaml:3:10: routing: routing: auto needs a router, and this lab has none "
         "(add a node with role: router or kernel-router)"]


def test_unreachable_subnet() -> None:
    got = problems("""
addressing: auto
routing: auto
nodes:
  r1: {role: router}
  r2: {role: router}
  r3: {role: router}
  r4: {role: router}
links:
  - [r1, r2]
  - [r3, r4]
""")
    assert got[0].startswith("t.yaml:10:5: links[0]: subnet 198.51.100.0/30 is unreachable: "
                             "no path of routers from r3 to r1, r2")
    assert any(p.startswith("t.yaml:11:5: links[1]: subnet ") for p in got)


LOOP = """
nodes:
  r1:
    role: router
    interfaces: [{name: a, addresses: [198.51.100.1/30]}, {name: b, addresses: [198.51.100.9/30]}]
  r2:
    role: router
    interfaces: [{name: a, addresses: [198.51.100.2/30]}, {name: c, addresses: [198.51.100.5/30]}]
    routes:
      - {prefix: 198.51.100.12/30, via: 198.51.100.1}
  r3:
    role: router
    interfaces: [{name: b, addresses: [198.51.100.10/30]}, {name: c, addresses: [198.51.100.6/30]},
                 {name: d, addresses: [198.51.100.13/30]}]
  h1: {role: host, interfaces: [{name: e, addresses: [198.51.100.14/30]}]}
links: [[r1:a, r2:a], [r3:c, r2:c], [r1:b, r3:b], [r3:d, h1:e]]
"""


def test_routing_loop_in_explicit_routes() -> None:
    text = LOOP.replace("interfaces: [{name: a, addresses: [198.51.100.1/30]}, {name: b, "
                        "addresses: [198.51.100.9/30]}]",
                        "interfaces: [{name: a, addresses: [198.51.100.1/30]}, {name: b, "
                        "addresses: [198.51.100.9/30]}]\n    routes: [{prefix: 198.51.100.12/30,"
                        " via: 198.51.100.2}]")
    got = problems(text)
    assert got == ["t.yaml:6:14: nodes.r1.routes[0]: routing loop for 198.51.100.12/30: "
                   "r1 -> r2 -> r1 (packets to it would go round until their TTL ran out)"]
    t = parse_topology(LOOP)  # without r1's route there is no loop
    assert find_loops(t) == []


def test_duplicate_router_addresses() -> None:
    got = problems("""
nodes:
  r1: {role: router, interfaces: [{name: a, addresses: [198.51.100.1/30]}]}
  r2: {role: router, interfaces: [{name: a, addresses: [198.51.100.1/30]}]}
links: [[r1:a, r2:a]]
""")
    assert got == ["t.yaml:4:57: nodes.r2.interfaces[0].addresses[0]: address 198.51.100.1 is "
                   "already used by r1:a (every address in a lab is unique)"]


def test_impairments_out_of_range() -> None:
    got = problems("""
addressing: auto
nodes: {a: {role: host}, b: {role: host}}
links:
  - {endpoints: [a, b], delay: 20parsec, loss: 150%, rate: 10mbit}
  - endpoints: [a, {endpoint: b, jitter: 5ms}]
""")
    assert got == [
        "t.yaml:5:32: links[0].delay: delay: expected a time like 20ms, 500us or 1s, got "
        "'20parsec' (netem units: 20ms, 500us, 1s)",
        "t.yaml:5:48: links[0].loss: loss: 150% is out of range 0..100% (a percentage 0..100, "
        "like 10%)",
        "t.yaml:6:42: links[1].endpoints[1].jitter: jitter needs a delay (netem varies the delay "
        "by jitter)",
    ]


def test_unknown_addressing_and_routing_values() -> None:
    got = problems("""
addressing: {ipv4: 10.0.0.0/8, color: red}
routing: ospf
nodes: {a: {role: host}, b: {role: host}}
links: [[a, b]]
""")
    assert got == [
        "t.yaml:2:20: addressing.ipv4: 10.0.0.0/8 is outside the documentation ranges (pools "
        "lie in the documentation ranges)",
        "t.yaml:2:32: addressing.color: unknown addressing key 'color' (expected one of: ipv4, "
        "ipv6, p2p_prefix)",
        "t.yaml:3:10: routing: routing must be auto or static, got 'ospf'",
    ]


def test_labels_mark_user_routes_keep() -> None:
    t = parse_topology("""
addressing: auto
nodes:
  r1: {role: router, routes: [{prefix: 198.51.100.0/24, type: reject}]}
  r2: {role: router}
  r3: {role: router}
links: [[r1, r2], [r2, r3]]
""")
    result = compute(t, summarize=False)
    far = next(s.network for s in subnets(t, 4) if "r3" in s.nodes)
    assert result.next_hop(4, "r1", far) == KEEP


# -- how impaired links are carried: netem on each sender's egress, in its guest -----------


def plan(text: str) -> dict[tuple[str, str], object]:
    from orchestrate import links

    t = parse_topology(text) if "\n" in text else load_topology(text)
    purposes = links.udp_purposes(t)
    ports = {p: 41000 + i for i, p in enumerate(purposes)}
    return {(n.node, n.ifname): n for nics in links.plan_nics(
        t, "t", ports, links.MacAllocator("t")).values() for n in nics}


def test_impaired_links_stay_on_udp_with_netem_on_the_senders_egress() -> None:
    from orchestrate import links

    nics = plan(str(CONFIGS / "impaired.yaml"))
    assert {n.kind for n in nics.values()} == {"udp"}  # rootless, impaired or not
    netem = {key: n.netem for key, n in nics.items()}  # type: ignore[attr-defined]
    # what h3 receives (loss 10%) is what r1 sends to it; h3 itself sends unimpaired
    assert netem[("r1", "r1-h3")] == {"loss": "10%"} and netem[("h3", "eth1")] is None
    assert netem[("r1", "r1-h2")] == netem[("h2", "eth1")] == {"delay": "20ms"}
    assert netem[("r1", "r1-h4")] == netem[("h4", "eth1")] == {"delay": "5ms", "reorder": "25%"}
    assert netem[("r1", "r1-h1")] is None and netem[("h1", "eth1")] is None
    impaired = {key for key, n in nics.items() if n.impaired}  # type: ignore[attr-defined]
    assert impaired == set(nics) - {("r1", "r1-h1"), ("h1", "eth1")}
    nic = nics[("r1", "r1-h3")]
    assert links.NicSpec.from_json("r1", nic.to_json()) == nic  # type: ignore[attr-defined]


def test_egress_mapping_point_to_point_and_lan() -> None:
    from orchestrate.netem import NetemError, egress

    a, b = Impairment(delay=20.0), Impairment(loss=5.0)
    assert egress([a, b]) == [b, a]  # what A receives is what B sends
    assert egress([a, None]) == [None, a]
    assert egress([a, a, a]) == [a, a, a]  # a LAN: every member's egress, impaired once
    with pytest.raises(NetemError, match="per-endpoint impairment on a LAN segment"):
        egress([a, b, a])


def test_lan_link_impairment_shapes_every_member() -> None:
    nics = plan("""
addressing: auto
nodes: {a: {role: host}, b: {role: host}, c: {role: router}}
links:
  - {endpoints: [a, b, c], delay: 10ms}
""")
    assert {n.netem["delay"] for n in nics.values()} == {"10ms"}  # type: ignore[attr-defined]
    assert {n.kind for n in nics.values()} == {"lan"}  # type: ignore[attr-defined]


def test_per_endpoint_impairment_on_a_lan_is_a_placed_error() -> None:
    got = problems("""
addressing: auto
nodes: {a: {role: host}, b: {role: host}, c: {role: host}}
links:
  - endpoints: [a, b, {endpoint: c, loss: 5%}]
""")
    assert got == [
        "t.yaml:5:43: links[0].endpoints[2].loss: a per-endpoint impairment on a LAN segment "
        "cannot be applied: vrlab shapes each sender's egress in its guest, and on a LAN that "
        "egress reaches every member (set the impairment on the link (all members), or use a "
        "point-to-point link)"]


def test_link_set_maps_both_ways_and_one_way_onto_senders() -> None:
    from orchestrate.netem import NetemError, changed

    nics = plan(str(CONFIGS / "impaired.yaml"))
    r1, h2 = nics[("r1", "r1-h2")], nics[("h2", "eth1")]
    both = changed([r1, h2], h2, {"delay": "50ms", "loss": "1%"},  # type: ignore[list-item]
                   one_way=False)
    assert both == {("r1", "r1-h2"): Impairment(delay=50.0, loss=1.0),
                    ("h2", "eth1"): Impairment(delay=50.0, loss=1.0)}
    one = changed([r1, h2], h2, {"jitter": "2ms"}, one_way=True)  # type: ignore[list-item]
    assert one == {("r1", "r1-h2"): Impairment(delay=20.0, jitter=2.0)}  # over the 20 ms
    assert changed([r1, h2], r1, None, one_way=True) == {  # type: ignore[list-item]
        ("h2", "eth1"): None}
    h3 = nics[("h3", "eth1")]
    with pytest.raises(NetemError, match="jitter needs a delay"):
        changed([nics[("r1", "r1-h3")], h3], h3, {"jitter": "2ms"},  # type: ignore[list-item]
                one_way=True)
    lan = plan("""
addressing: auto
nodes: {a: {role: host}, b: {role: host}, c: {role: host}}
links: [{endpoints: [a, b, c], delay: 1ms}]
""")
    with pytest.raises(NetemError, match="LAN segment"):
        changed(list(lan.values()), lan[("a", "eth1")], {"delay": "2ms"},  # type: ignore
                one_way=True)


def test_guest_script_shapes_and_clears() -> None:
    from orchestrate.netem import guest_script, recorded

    nics = plan(str(CONFIGS / "impaired.yaml"))
    r1 = [n for key, n in nics.items() if key[0] == "r1"]
    assert guest_script(recorded(r1)) == (  # type: ignore[arg-type]
        "tc qdisc replace dev r1-h2 root netem limit 10000 delay 20ms && "
        "tc qdisc replace dev r1-h3 root netem limit 10000 loss 10% && "
        "tc qdisc replace dev r1-h4 root netem limit 10000 delay 5ms reorder 25%")
    assert guest_script(recorded([nics[("h1", "eth1")]])) is None  # type: ignore[list-item]
    assert guest_script([("eth1", None)]) == "tc qdisc del dev eth1 root 2>/dev/null || true"


def test_routers_send_through_the_qdisc_on_impaired_links_only() -> None:
    from appliance.config import parse_router_config
    from orchestrate.backends import NodeSpec
    from orchestrate.lab import shaped_router_config

    t = load_topology(CONFIGS / "impaired.yaml")
    nics = plan(str(CONFIGS / "impaired.yaml"))
    spec = NodeSpec(lab="t", name="r1", role="router", memory=256, cpus=1, accel="tcg",
                    kernel=Path("k"), initrd=Path("i"), cmdline="", overlay=Path("o"),
                    config_disk=Path("c"), mgmt_mac="52:54:00:00:00:01", ssh_port=2222,
                    mgmt_netdev="", node_dir=Path("."), run_dir=Path("."),
                    nics=[n for key, n in nics.items() if key[0] == "r1"])  # type: ignore
    config = parse_router_config(shaped_router_config(t.nodes["r1"].router_config(), spec))
    bypass = {i.name: i.qdisc_bypass for i in config.interfaces}
    assert bypass == {"r1-h1": True, "r1-h2": False, "r1-h3": False, "r1-h4": False}


def test_link_set_refuses_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrate.cli import main

    monkeypatch.setenv("VRLAB_HOME", str(tmp_path))
    assert main(["link", "set", "nolab", "r1:eth1", "delay", "20ms"]) == 2
    assert "nolab" in capsys.readouterr().err
    assert main(["link", "set", "nolab", "r1:eth1", "delay"]) == 2
    assert main(["link", "set", "nolab", "r1:eth1", "speed", "1"]) == 2
    assert "KEY one of delay, jitter, loss" in capsys.readouterr().err
    assert main(["link", "set", "nolab", "r1", "delay", "1ms"]) == 2
