"""Automatic routes (`routing: auto`) and the walk that finds loops in any set of routes.

Every router (a vrlab `router` or a `kernel-router`) gets, for each family, a route to every
subnet of the lab it is not on, along a shortest path over the links between routers (a
link's `cost:`, default 1). Ties are broken the same way every time: the next hop with the
smaller (neighbour name, link index) wins. Hosts get a default route per family towards their
nearest router (cheapest link, then the same tie-break). Routes a user wrote stay, and win:
a computed route is dropped where the user's prefix covers the subnet, and a host keeps its
own default route.

Routes are summarized: a router's subnets, in address order, that share a next hop (with its
own connected subnets and address space no link uses counting as either) are covered by the
fewest aligned prefixes that hold no subnet with another next hop, each inside one
documentation range. Forwarding to every address of the lab stays what the shortest paths
say; a 1,000-router ring needs a few dozen routes per router instead of a thousand.

Paths are computed with one Dijkstra per router whose queue orders (distance, first hop):
the first time a node is taken, it is with its shortest distance and, among the shortest
paths, the smallest first hop, which the tests check against an independent all-pairs run.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

from orchestrate.topology.model import (
    DOCUMENTATION_NETWORKS,
    IPAddress,
    IPNetwork,
    Node,
    Route,
    Topology,
)

FirstHop = tuple[str, int]
"""(neighbour node, link index): how a router leaves towards a destination."""


@dataclass(frozen=True, slots=True)
class Subnet:
    """One subnet of the lab: the network on one link, and the nodes with an address in it."""

    network: IPNetwork
    link: int
    nodes: tuple[str, ...]


@dataclass(slots=True)
class RoutingProblem:
    """Something `routing: auto` cannot do, placed by the validator."""

    message: str
    hint: str = ""
    link: int | None = None
    """links[i] it is about; None: the `routing:` key."""


def subnets(topology: Topology, family: int) -> list[Subnet]:
    """Every global subnet of that family on a link, in link order, once per link."""
    out: list[Subnet] = []
    for index, link in enumerate(topology.links):
        seen: dict[IPNetwork, list[str]] = {}
        for e in link.endpoints:
            iface = topology.nodes[e.node].interface(e.ifname) if e.node in topology.nodes \
                else None
            for a in iface.addresses if iface is not None else ():
                if a.version == family and not a.ip.is_link_local:
                    seen.setdefault(a.network, []).append(e.node)
        out += [Subnet(net, index, tuple(nodes)) for net, nodes in seen.items()]
    return out


def _address_on(node: Node, ifname: str, family: int) -> IPAddress | None:
    iface = node.interface(ifname)
    for a in iface.addresses if iface is not None else ():
        if a.version == family and not a.ip.is_link_local:
            return a.ip
    return None


@dataclass(slots=True)
class Graph:
    """The routers of one family and the links between them."""

    family: int
    # router -> [(neighbour, link index, cost, neighbour's address on that link)]
    edges: dict[str, list[tuple[str, int, int, IPAddress]]] = field(default_factory=dict)

    @classmethod
    def build(cls, topology: Topology, family: int) -> Graph:
        graph = cls(family, {n.name: [] for n in topology.nodes.values() if n.forwards})
        for index, link in enumerate(topology.links):
            ends = [(e.node, _address_on(topology.nodes[e.node], e.ifname, family))
                    for e in link.endpoints if e.node in graph.edges]
            for a, addr_a in ends:
                for b, addr_b in ends:
                    if a != b and addr_a is not None and addr_b is not None:
                        graph.edges[a].append((b, index, link.cost, addr_b))
        for adjacent in graph.edges.values():
            adjacent.sort(key=lambda x: (x[0], x[1]))
        return graph

    def shortest(self, source: str) -> dict[str, tuple[int, FirstHop | None]]:
        """node -> (distance, first hop from `source`), smallest first hop among ties."""
        done: dict[str, tuple[int, FirstHop | None]] = {}
        queue: list[tuple[int, tuple[str, int] | tuple[()], str]] = [(0, (), source)]
        while queue:
            dist, hop, node = heapq.heappop(queue)
            if node in done:
                continue
            first: FirstHop | None = hop if hop else None
            done[node] = (dist, first)
            for nbr, link, cost, _ in self.edges[node]:
                if nbr not in done:
                    heapq.heappush(queue, (dist + cost, hop or (nbr, link), nbr))
        return done


KEEP = "keep"
"""A subnet a router's summaries must leave alone: its own routes cover it, or it has none."""
Label = FirstHop | str | None
"""Per router and subnet: the first hop, None when connected, or KEEP."""


@dataclass(slots=True)
class Space:
    """A family's subnets in address order, as integers, computed once for every router."""

    nets: list[Subnet]
    start: list[int]
    end: list[int]
    range_id: list[int]
    """Which documentation range holds the subnet: summaries never cross one."""
    bounds: dict[int, tuple[int, int]]
    index: dict[IPNetwork, int]

    @classmethod
    def of(cls, nets: list[Subnet]) -> Space:
        ordered = sorted(nets, key=lambda s: int(s.network.network_address))
        space = cls(ordered, [], [], [], {}, {})
        for i, s in enumerate(ordered):
            net = s.network
            space.start.append(int(net.network_address))
            space.end.append(int(net.broadcast_address))
            space.index[net] = i
            rid = next((k for k, doc in enumerate(DOCUMENTATION_NETWORKS)
                        if doc.version == net.version
                        and net.subnet_of(doc)), -1 - i)  # type: ignore[arg-type]
            space.range_id.append(rid)
            doc_net = DOCUMENTATION_NETWORKS[rid] if rid >= 0 else net
            space.bounds[rid] = (int(doc_net.network_address), int(doc_net.broadcast_address))
        return space


@dataclass(slots=True)
class Computed:
    """What `compute` derived, per family: the subnets, and per router a label for each."""

    spaces: dict[int, Space] = field(default_factory=dict)
    labels: dict[int, dict[str, list[Label]]] = field(default_factory=dict)
    problems: list[RoutingProblem] = field(default_factory=list)

    def next_hop(self, family: int, router: str, network: IPNetwork) -> Label:
        return self.labels[family][router][self.spaces[family].index[network]]


def compute(topology: Topology, summarize: bool = True) -> Computed:
    """Add computed routes to every node of an addressed topology (`routing: auto`)."""
    result = Computed()
    if not any(n.forwards for n in topology.nodes.values()):
        result.problems.append(RoutingProblem(
            "routing: auto needs a router, and this lab has none",
            "add a node with role: router or kernel-router"))
        return result
    reported: set[int] = set()
    for family in (4, 6):
        space = Space.of(subnets(topology, family))
        if not space.nets:
            continue
        result.spaces[family] = space
        graph = Graph.build(topology, family)
        result.labels[family] = {}
        for router in graph.edges:
            reach = graph.shortest(router)
            labels: list[Label] = []
            for net in space.nets:
                if router in net.nodes:
                    labels.append(None)
                    continue
                best: tuple[int, FirstHop | None] | None = None
                for n in net.nodes:
                    r = reach.get(n)
                    if r is not None and (best is None or r < best):
                        best = r
                if best is None:
                    labels.append(KEEP)
                    if net.link not in reported:
                        reported.add(net.link)
                        routers = [n for n in net.nodes if n in graph.edges]
                        why = (f"no path of routers from {router} to {', '.join(routers)}"
                               if routers else "no router is on that link")
                        result.problems.append(RoutingProblem(
                            f"subnet {net.network} is unreachable: {why}",
                            "connect it to the routers, or give the routes yourself", net.link))
                    continue
                labels.append(best[1])
            result.labels[family][router] = labels
            node = topology.nodes[router]
            addresses = {(nbr, link): addr for nbr, link, _, addr in graph.edges[router]}
            _keep_explicit(labels, space, node, family)
            node.routes = _merge(node.routes, _routes(labels, addresses, space, summarize))
        _host_defaults(topology, family)
    return result


def _keep_explicit(labels: list[Label], space: Space, node: Node, family: int) -> None:
    """Mark KEEP the subnets the router's own routes cover (its routes win)."""
    for route in node.routes:
        if route.prefix.version != family or route.prefix.prefixlen == 0:
            continue
        lo, hi = int(route.prefix.network_address), int(route.prefix.broadcast_address)
        for i, start in enumerate(space.start):
            if lo <= start and space.end[i] <= hi:
                labels[i] = KEEP


def _routes(labels: list[Label], addresses: dict[FirstHop, IPAddress], space: Space,
            summarize: bool) -> list[Route]:
    """The router's computed routes in address order, summarized unless told not to."""
    out: list[Route] = []
    if not summarize:
        for i, label in enumerate(labels):
            if isinstance(label, tuple):
                out.append(Route(space.nets[i].network, addresses[label]))
        return out
    # Runs of one first hop, in address order, through connected subnets (None: either way)
    # and unused space, but not across a subnet with another label nor a range boundary.
    n = len(labels)
    rid = space.range_id
    bits = space.nets[0].network.max_prefixlen
    i = 0
    while i < n:
        label = labels[i]
        if not isinstance(label, tuple):
            i += 1
            continue
        j = i
        k = i + 1
        while k < n and rid[k] == rid[i] and (labels[k] is None or labels[k] == label):
            if labels[k] == label:
                j = k
            k += 1
        low, high = space.bounds[rid[i]]
        lo = space.end[i - 1] + 1 if i > 0 and rid[i - 1] == rid[i] else low
        hi = space.start[k] - 1 if k < n and rid[k] == rid[i] else high
        for block in _cover(space.start[i], space.end[j], lo, hi, bits):
            out.append(Route(ipaddress.ip_network(block), addresses[label]))
        i = j + 1
    return out


def _cover(start: int, end: int, lo: int, hi: int, bits: int) -> Iterator[tuple[int, int]]:
    """Fewest aligned blocks (address, prefix length) covering [start, end] inside [lo, hi]."""
    def fits(k: int) -> bool:
        base = start & ~((1 << k) - 1)
        return base >= lo and base + (1 << k) - 1 <= hi

    while start <= end:
        low, high = 0, bits  # the largest block that fits (fitting is monotone in its size)
        while low < high:
            mid = (low + high + 1) // 2
            if fits(mid):
                low = mid
            else:
                high = mid - 1
        base = start & ~((1 << low) - 1)
        yield base, bits - low
        start = base + (1 << low)


def _merge(explicit: list[Route], computed: list[Route]) -> list[Route]:
    """The user's routes first; a computed route for a prefix the user routed is dropped."""
    mine = {r.prefix for r in explicit}
    return [*explicit, *(r for r in computed if r.prefix not in mine)]


def _host_defaults(topology: Topology, family: int) -> None:
    default = ipaddress.ip_network("0.0.0.0/0" if family == 4 else "::/0")
    for node in topology.nodes.values():
        if node.forwards or any(r.prefix == default for r in node.routes):
            continue
        best: tuple[int, str, int, IPAddress] | None = None
        for iface in node.interfaces:
            if iface.link is None or _address_on(node, iface.name, family) is None:
                continue
            link = topology.links[iface.link]
            for e in link.endpoints:
                peer = topology.nodes.get(e.node)
                if peer is None or not peer.forwards:
                    continue
                addr = _address_on(peer, e.ifname, family)
                if addr is not None:
                    candidate = (link.cost, peer.name, iface.link, addr)
                    if best is None or candidate[:3] < best[:3]:
                        best = candidate
        if best is not None:
            node.routes.append(Route(default, best[3]))


# -- walking the tables -------------------------------------------------------------------------


class Table:
    """A node's forwarding table: its connected subnets and routes, longest prefix first."""

    def __init__(self, node: Node, family: int) -> None:
        self.by_length: dict[int, dict[int, Route | None]] = {}
        for iface in node.interfaces:
            for a in iface.addresses:
                if a.version == family and not a.ip.is_link_local:
                    self._add(a.network, None)
        for route in node.routes:
            if route.prefix.version == family:
                self.by_length.setdefault(route.prefix.prefixlen, {}).setdefault(
                    int(route.prefix.network_address), route)
        self.lengths = sorted(self.by_length, reverse=True)
        self.bits = 32 if family == 4 else 128

    def _add(self, net: IPNetwork, route: Route | None) -> None:
        self.by_length.setdefault(net.prefixlen, {})[int(net.network_address)] = route

    def lookup(self, addr: int) -> tuple[bool, Route | None]:
        """(found, route): route None when found means connected."""
        for length in self.lengths:
            key = addr >> (self.bits - length) << (self.bits - length) if length else 0
            entries = self.by_length[length]
            if key in entries:
                return True, entries[key]
        return False, None


@dataclass(frozen=True, slots=True)
class Loop:
    """A destination whose packets go round: the routers in order and the route each used."""

    destination: IPNetwork
    cycle: tuple[tuple[str, Route], ...]


def owners(topology: Topology) -> dict[IPAddress, str]:
    return {a.ip: n.name for n in topology.nodes.values() for i in n.interfaces
            for a in i.addresses}


def find_loops(topology: Topology) -> list[Loop]:
    """Walk every router's table towards every subnet of the lab; return each loop once."""
    found: dict[frozenset[str], Loop] = {}
    owner = owners(topology)
    for family in (4, 6):
        nets = subnets(topology, family)
        tables = {n.name: Table(n, family) for n in topology.nodes.values() if n.forwards}
        for subnet in nets:
            net = subnet.network
            target = int(net.network_address)
            state: dict[str, int] = {}  # 1: on the current walk, 2: known to end
            for start in tables:
                walk: list[tuple[str, Route]] = []
                visited: list[str] = []
                node = start
                looped = False
                while node in tables and state.get(node) is None:
                    state[node] = 1
                    visited.append(node)
                    hit, route = tables[node].lookup(target)
                    if not hit or route is None or route.via is None:
                        break
                    walk.append((node, route))
                    node = owner.get(route.via, "")
                    looped = state.get(node) == 1
                if looped:
                    at = next(i for i, (n, _) in enumerate(walk) if n == node)
                    cycle = tuple(walk[at:])
                    key = frozenset(n for n, _ in cycle)
                    found.setdefault(key, Loop(net, cycle))
                for n in visited:
                    state[n] = 2
    return list(found.values())


def path(topology: Topology, source: str, destination: IPAddress, limit: int = 64
         ) -> list[str] | None:
    """The nodes a packet from `source` to `destination` visits after it, by the tables."""
    owner = owners(topology)
    family = destination.version
    hops: list[str] = []
    node = source
    target = int(destination)
    for _ in range(limit):
        hit, route = Table(topology.nodes[node], family).lookup(target)
        if not hit:
            return None
        if route is None:  # connected: the destination is on this link
            dest = owner.get(destination)
            return [*hops, dest] if dest is not None else None
        if route.via is None:
            return None
        nxt = owner.get(route.via)
        if nxt is None:
            return None
        hops.append(nxt)
        if nxt == owner.get(destination):
            return hops
        node = nxt
    return None
