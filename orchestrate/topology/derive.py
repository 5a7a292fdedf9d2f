"""What the validator derives for a topology that leaves things out, each problem placed.

- interface names for bare link endpoints (`[r1, r2]`): `eth1`, `eth2`, ... on hosts, the
  peer-derived `r1-r2` on routers (`r1-<link name>` or `r1-lan<i>` on a LAN segment), falling
  back to `<node>-<n>` and then `eth<n>` when a name would be taken or too long;
- addresses (orchestrate.topology.addressing) and routes (orchestrate.topology.routing);
- link impairments (orchestrate.topology.impairment) and a kernel-router's Linux sysctls.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any

from appliance.yamlsource import KeyPath
from orchestrate.topology import addressing, impairment, routing
from orchestrate.topology.model import (
    CheckSpec,
    Endpoint,
    Impairment,
    NodeInterface,
    Topology,
    documentation_problem,
)

if TYPE_CHECKING:
    from orchestrate.topology.problems import Reporter

IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")
LINUX_SYSCTL_RE = re.compile(r"^[a-z0-9_]+([./][A-Za-z0-9_.:-]+)+$")
ADDRESSING_KEYS = ("ipv4", "ipv6", "p2p_prefix")
ENDPOINT_KEYS = ("endpoint", *impairment.KEYS)


# -- interface names ------------------------------------------------------------------------


def name_interfaces(v: Reporter, topology: Topology,
                    paths: dict[tuple[int, Endpoint], KeyPath]) -> set[int]:
    """Name and create the interfaces of bare endpoints; return the links that had one."""
    generated: set[int] = set()
    for index, link in enumerate(topology.links):
        for position, endpoint in enumerate(link.endpoints):
            node = topology.nodes.get(endpoint.node)
            if endpoint.ifname or node is None:
                continue
            name = _interface_name(topology, index, position)
            node.interfaces.append(NodeInterface(name))
            named = Endpoint(endpoint.node, name)
            link.endpoints[position] = named
            paths[(index, named)] = paths.pop((index, endpoint))
            generated.add(index)
    raw_nodes = v.doc.data.get("nodes") if isinstance(v.doc.data, dict) else None
    for node in topology.nodes.values():
        body = raw_nodes.get(node.name) if isinstance(raw_nodes, dict) else None
        if not node.interfaces and not (isinstance(body, dict) and body.get("interfaces") == []):
            v.error(("nodes", node.name), "a node needs interfaces",
                    "e.g. interfaces: [{name: eth1}], or name the node on a link: [r1, h1]")
    return generated


def _interface_name(topology: Topology, index: int, position: int) -> str:
    link = topology.links[index]
    node = topology.nodes[link.endpoints[position].node]
    taken = {i.name for i in node.interfaces}
    candidates: list[str] = []
    if node.forwards:
        if len(link.endpoints) == 2:
            candidates.append(f"{node.name}-{link.endpoints[1 - position].node}")
        else:
            candidates.append(f"{node.name}-{link.name or f'lan{index}'}")
        candidates += [f"{node.name}-{n}" for n in range(1, len(taken) + 2)]
    candidates += [f"eth{n}" for n in range(1, len(taken) + 2)]
    return next(c for c in candidates if c not in taken and IFNAME_RE.match(c))


# -- addresses ------------------------------------------------------------------------------


def address(v: Reporter, topology: Topology, raw: Any, auto_links: set[int]) -> None:
    spec = addressing_spec(v, raw)
    if spec is None:
        return
    if spec.every_link:
        auto_links = set(range(len(topology.links)))
    for problem in addressing.assign(topology, spec, auto_links):
        pool = spec.ipv4 if problem.family == 4 else spec.ipv6
        v.error(("links", problem.link),
                f"no free IPv{problem.family} /{problem.prefix} left for this link in "
                f"{', '.join(map(str, pool))}",
                "give addressing: a larger pool" + (", or p2p_prefix: 31"
                                                   if problem.family == 4 else ""))


def addressing_spec(v: Reporter, raw: Any) -> addressing.AddressingSpec | None:
    if raw is None:
        return addressing.AddressingSpec()
    if raw == "auto":
        return addressing.AddressingSpec(every_link=True)
    path: KeyPath = ("addressing",)
    if not isinstance(raw, dict):
        v.error(path, f"addressing must be auto or a mapping of pools, got {raw!r}",
                "e.g. addressing: {ipv4: 198.51.100.0/24, ipv6: 2001:db8:1::/48}")
        return None
    v.unknown_keys(raw, ADDRESSING_KEYS, path, "addressing")
    spec = addressing.AddressingSpec(every_link=True)
    ok = True
    for family, key in ((4, "ipv4"), (6, "ipv6")):
        if key not in raw:
            continue
        pools = _pools(v, raw[key], (*path, key), family)
        if pools is None:
            ok = False
        elif family == 4:
            spec.ipv4 = pools
        else:
            spec.ipv6 = pools
    if "p2p_prefix" in raw:
        value = raw["p2p_prefix"]
        if value not in (30, 31) or isinstance(value, bool):
            v.error((*path, "p2p_prefix"), f"p2p_prefix must be 30 or 31, got {value!r}")
            ok = False
        else:
            spec.p2p_prefix = int(value)
    return spec if ok else None


def _pools(v: Reporter, raw: Any, path: KeyPath, family: int) -> list[Any] | None:
    if raw is False or raw is None:
        return []  # no addresses of this family
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for j, text in enumerate(items):
        where = (*path, j) if isinstance(raw, list) else path
        try:
            net = ipaddress.ip_network(str(text).strip())
        except ValueError as e:
            v.error(where, f"bad pool {text!r}: {e}", "a prefix like 198.51.100.0/24")
            return None
        reason = documentation_problem(net) if net.version == family else \
            f"{net} is not an IPv{family} prefix"
        if reason is not None:
            v.error(where, reason, "pools lie in the documentation ranges")
            return None
        out.append(net)
    return out


# -- routes ---------------------------------------------------------------------------------


def route(v: Reporter, topology: Topology, raw: Any) -> None:
    """`routing: auto`: compute routes; with any routes written by hand, walk for loops."""
    written = {n.name: list(n.routes) for n in topology.nodes.values() if n.forwards}
    if raw not in (None, "auto", "static"):
        v.error(("routing",), f"routing must be auto or static, got {raw!r}")
        return
    if raw == "auto":
        topology.routing = "auto"
        result = routing.compute(topology)
        for problem in result.problems:
            path: KeyPath = ("links", problem.link) if problem.link is not None \
                else ("routing",)
            v.error(path, problem.message, problem.hint)
    if not any(written.values()) or v.problems:
        return
    for loop in routing.find_loops(topology):
        names = " -> ".join([*(n for n, _ in loop.cycle), loop.cycle[0][0]])
        node, bad = next(((n, r) for n, r in loop.cycle if r in written[n]), loop.cycle[0])
        index = written[node].index(bad) if bad in written[node] else None
        path = ("nodes", node, "routes", index) if index is not None else ("routing",)
        v.error(path, f"routing loop for {loop.destination}: {names}",
                "packets to it would go round until their TTL ran out")


# -- checks ----------------------------------------------------------------------------------


def checks(v: Reporter, raw: Any, topology: Topology) -> list[CheckSpec]:
    """The `tests:` section, with generated checks (`kind: reachability`) expanded."""
    from orchestrate.checks.generated import validate_item  # it imports this module

    if raw is None:
        return []
    if not isinstance(raw, list):
        v.error(("tests",), "tests must be a list of checks",
                "e.g. - {kind: ping, from: h1, to: h2}")
        return []
    out: list[CheckSpec] = []
    for i, item in enumerate(raw):
        path: KeyPath = ("tests", i)
        if not isinstance(item, dict):
            v.error(path, "a check must be a mapping with kind:")
            continue
        problems, checks = validate_item(item, topology, v.doc, path)
        v.problems.extend(problems)
        mark = v.doc.mark(path)
        out += [CheckSpec(c.kind, c.name, c.params, v.source, mark.line, mark.col)
                for c in checks if not problems]
    return out


# -- impairments and sysctls ----------------------------------------------------------------


def link_impairment(v: Reporter, values: dict[Any, Any], path: KeyPath,
                  base: Impairment | None = None) -> Impairment | None:
    parsed, issues = impairment.parse_impairment(values, base)
    for key, message, hint in issues:
        v.error((*path, key), message, hint)
    return parsed if parsed and not issues else None


def endpoint_with_impairment(v: Any, item: dict[Any, Any], path: KeyPath,
                             link: Impairment | None
                             ) -> tuple[Endpoint | None, Impairment | None]:
    """`{endpoint: r1:eth1, loss: 5%}`: the endpoint, and what the link delivers to it."""
    v.unknown_keys(item, ENDPOINT_KEYS, path, "endpoint")
    endpoint = v.endpoint(item.get("endpoint"), (*path, "endpoint"))
    return endpoint, link_impairment(v, item, path, link)


def linux_sysctl(v: Reporter, raw: Any, path: KeyPath) -> dict[str, int]:
    """A kernel-router's sysctls: Linux names (`net.ipv4.conf.all.rp_filter: 0`), integers."""
    if not isinstance(raw, dict):
        v.error(path, "sysctl must be a mapping of name: value")
        return {}
    out: dict[str, int] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not LINUX_SYSCTL_RE.match(key) or ".." in key:
            v.error((*path, key), f"{key!r} is not a Linux sysctl name",
                    "like net.ipv4.conf.all.rp_filter (see sysctl -a)", key=True)
        elif isinstance(value, bool) or not isinstance(value, int):
            v.error((*path, key), f"expected an integer, got {value!r}")
        else:
            out[key] = value
    return out
