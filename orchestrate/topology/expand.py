"""The fully expanded topology: every interface name, address, route and check vrlab derived,
written back as a topology file (`vrlab expand FILE`). Loading that file gives the same lab:
the same nodes, interfaces, addresses, routes, links and checks (a unit test holds it to it).
"""

from __future__ import annotations

from typing import Any

import yaml

from orchestrate.memory import role_memory
from orchestrate.topology.impairment import to_yaml as impairment_yaml
from orchestrate.topology.model import Defaults, Link, Node, Topology


def to_document(topology: Topology) -> dict[str, Any]:
    """The topology as the plain data of a topology file, with nothing left to derive."""
    doc: dict[str, Any] = {"name": topology.name}
    defaults = _defaults(topology.defaults)
    if defaults:
        doc["defaults"] = defaults
    doc["nodes"] = {name: _node(node, topology.defaults) for name, node in topology.nodes.items()}
    doc["links"] = [_link(link) for link in topology.links]
    if topology.tests:
        doc["tests"] = [{"kind": t.kind, "name": t.name, **t.params} for t in topology.tests]
    return doc


def dump(topology: Topology, source: str | None = None) -> str:
    """`to_document` as YAML text, with a header that says where it came from."""
    header = f"# {source}, expanded by vrlab: every name, address and route written out\n" \
        if source else ""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    body = yaml.dump(to_document(topology), Dumper=dumper, sort_keys=False,
                     default_flow_style=None, width=100, allow_unicode=True)
    return header + body


def _defaults(defaults: Defaults) -> dict[str, Any]:
    base = Defaults()
    return {key: getattr(defaults, key) for key in ("memory", "cpus", "image", "backend", "accel")
            if getattr(defaults, key) != getattr(base, key)}


def _node(node: Node, defaults: Defaults) -> dict[str, Any]:
    out: dict[str, Any] = {"role": node.role}
    out["interfaces"] = [iface.to_config() for iface in node.interfaces]
    if node.routes:
        out["routes"] = [route.to_config() for route in node.routes]
    if node.sysctl:
        out["sysctl"] = dict(node.sysctl)
    if node.neighbors:
        out["neighbors"] = [dict(n) for n in node.neighbors]
    if node.memory != (defaults.memory or role_memory(node.role)):
        out["memory"] = node.memory
    if node.cpus != defaults.cpus:
        out["cpus"] = node.cpus
    return out


def _link(link: Link) -> Any:
    endpoints: list[Any] = []
    for e in link.endpoints:
        own = link.endpoint_impairments.get(e.node)
        endpoints.append({"endpoint": str(e), **impairment_yaml(own)} if own else str(e))
    extra: dict[str, Any] = {}
    if link.mtu is not None:
        extra["mtu"] = link.mtu
    if link.name is not None:
        extra["name"] = link.name
    if link.cost != 1:
        extra["cost"] = link.cost
    if link.impairment:
        extra.update(impairment_yaml(link.impairment))
    return {"endpoints": endpoints, **extra} if extra else endpoints
