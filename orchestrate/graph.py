"""A topology as a Graphviz graph: routers and hosts, links with interface names and addresses.

Point-to-point links are edges whose ends carry each interface's name and addresses; a LAN
segment (three or more endpoints) becomes a small bridge node with an edge to each member.
"""

from __future__ import annotations

from orchestrate.topology import Link, Node, Topology

ROUTER_STYLE = 'shape=box, style="rounded,filled", fillcolor="#cfe2ff"'
HOST_STYLE = 'shape=ellipse, style=filled, fillcolor="#e9ecef"'
BRIDGE_STYLE = 'shape=diamond, style=filled, fillcolor="#fff3cd", fontsize=10'


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _interface_label(node: Node, ifname: str) -> str:
    iface = node.interface(ifname)
    lines = [ifname]
    if iface is not None:
        lines += [str(a) for a in iface.addresses]
        if iface.link_local is not None:
            lines.append(str(iface.link_local))
    return "\n".join(lines)


def _link_label(link: Link, index: int) -> str:
    parts = [link.name or f"links[{index}]"]
    if link.mtu is not None:
        parts.append(f"mtu {link.mtu}")
    return "\n".join(parts)


def to_dot(topology: Topology) -> str:
    """The DOT source of the topology graph."""
    out = [f"graph {_quote(topology.name)} {{",
           "  graph [overlap=false, splines=true, nodesep=1.6, ranksep=1.4, fontname=Helvetica];",
           "  node [fontname=Helvetica];",
           "  edge [fontname=Helvetica, fontsize=9, labelfontsize=9, labeldistance=3,"
           " labelangle=30];"]
    for node in topology.nodes.values():
        style = ROUTER_STYLE if node.is_router else HOST_STYLE
        label = f"{node.name}\n({node.role})"
        out.append(f"  {_quote(node.name)} [label={_quote(label)}, {style}];")
    for i, link in enumerate(topology.links):
        if link.is_lan:
            bridge = f"lan{i}"
            out.append(f"  {_quote(bridge)} [label={_quote(_link_label(link, i))}, "
                       f"{BRIDGE_STYLE}];")
            for end in link.endpoints:
                label = _interface_label(topology.nodes[end.node], end.ifname)
                out.append(f"  {_quote(end.node)} -- {_quote(bridge)} "
                           f"[taillabel={_quote(label)}];")
        elif len(link.endpoints) == 2:
            a, b = link.endpoints
            attrs = [f"taillabel={_quote(_interface_label(topology.nodes[a.node], a.ifname))}",
                     f"headlabel={_quote(_interface_label(topology.nodes[b.node], b.ifname))}"]
            if link.mtu is not None or link.name:
                attrs.append(f"label={_quote(_link_label(link, i))}")
            out.append(f"  {_quote(a.node)} -- {_quote(b.node)} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"
