"""A topology as a Graphviz graph: routers and hosts, links with interface names and addresses.

Each node is a record-shaped table: a header with its name, role and (for a running lab) its
state, then one cell per interface (name, addresses, link-local address). Every cell is a
Graphviz port and each link is drawn from port to port, so an interface's label sits inside
its own node and labels can never overlap, however many interfaces share a node (edge
labels at link ends collided: on configs/redirect.yaml r2's two interfaces were drawn over
each other). A LAN segment (three or more endpoints) becomes a small bridge node with an
edge to each member's port.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from orchestrate.topology import Link, Node, Topology

ROLE_COLOURS = {"router": "#cfe2ff", "host": "#e9ecef"}
STATE_COLOURS = {"running": "#198754", "stopped": "#dc3545", "absent": "#6c757d"}
BRIDGE_STYLE = 'shape=diamond, style=filled, fillcolor="#fff3cd", fontsize=10'


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def port_id(node: Node, ifname: str) -> str:
    """The Graphviz port of an interface (its index: interface names may hold any character)."""
    for i, iface in enumerate(node.interfaces):
        if iface.name == ifname:
            return f"p{i}"
    return "p_unknown"


def _interface_lines(node: Node, ifname: str) -> list[str]:
    iface = node.interface(ifname)
    lines = [ifname]
    if iface is not None:
        lines += [str(a) for a in iface.addresses]
        if iface.link_local is not None:
            lines.append(str(iface.link_local))
    return lines


def _node_label(node: Node, state: str | None) -> str:
    """An HTML-like table: header row, then one port cell per interface."""
    colour = ROLE_COLOURS.get(str(node.role), "#ffffff")
    head = f"<B>{escape(node.name)}</B> ({escape(str(node.role))})"
    if state is not None:
        dot = STATE_COLOURS.get(state, "#fd7e14")
        head += f' <FONT COLOR="{dot}">● {escape(state)}</FONT>'
    cells = [f'<TR><TD BGCOLOR="{colour}" COLSPAN="{max(1, len(node.interfaces))}">'
             f"{head}</TD></TR>"]
    ports = []
    for iface in node.interfaces:
        text = "<BR/>".join(escape(line) for line in _interface_lines(node, iface.name))
        ports.append(f'<TD PORT="{port_id(node, iface.name)}"><FONT POINT-SIZE="9">{text}'
                     "</FONT></TD>")
    if ports:
        cells.append("<TR>" + "".join(ports) + "</TR>")
    return ('<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4">'
            + "".join(cells) + "</TABLE>>")


def _link_label(link: Link, index: int) -> str:
    parts = [link.name or f"links[{index}]"]
    if link.mtu is not None:
        parts.append(f"mtu {link.mtu}")
    return "\n".join(parts)


def to_dot(topology: Topology, states: dict[str, str] | None = None) -> str:
    """The DOT source of the topology graph; `states` (node -> running/stopped/...) draws a
    running lab with each node's state."""
    out = [f"graph {_quote(topology.name)} {{",
           "  graph [overlap=false, splines=true, nodesep=0.8, ranksep=1.0, fontname=Helvetica];",
           "  node [fontname=Helvetica, shape=plain];",
           "  edge [fontname=Helvetica, fontsize=9];"]
    for node in topology.nodes.values():
        state = None if states is None else states.get(node.name, "absent")
        out.append(f"  {_quote(node.name)} [label={_node_label(node, state)}];")
    for i, link in enumerate(topology.links):
        if link.is_lan:
            bridge = f"lan{i}"
            out.append(f"  {_quote(bridge)} [label={_quote(_link_label(link, i))}, "
                       f"{BRIDGE_STYLE}];")
            for end in link.endpoints:
                port = port_id(topology.nodes[end.node], end.ifname)
                out.append(f"  {_quote(end.node)}:{port} -- {_quote(bridge)};")
        elif len(link.endpoints) == 2:
            a, b = link.endpoints
            pa = port_id(topology.nodes[a.node], a.ifname)
            pb = port_id(topology.nodes[b.node], b.ifname)
            attrs = ""
            if link.mtu is not None or link.name:
                attrs = f" [label={_quote(_link_label(link, i))}]"
            out.append(f"  {_quote(a.node)}:{pa} -- {_quote(b.node)}:{pb}{attrs};")
    out.append("}")
    return "\n".join(out) + "\n"
