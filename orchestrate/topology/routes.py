"""The static routes a topology file writes, checked as the validator reads each node.

Route prefixes have no host bits and lie in the documentation ranges (or are a default
route); a gateway is a neighbour's address on a subnet of one of the node's own interfaces,
and a link-local gateway names its interface (`fe80::1%eth1`); `interface:` alone is an
on-link route, `type: reject | blackhole` a route without a gateway.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv6Address
from typing import Any

from appliance.config import route_form_problem
from appliance.yamlsource import KeyPath
from orchestrate.topology.model import (
    DOCUMENTATION_HINT,
    ROUTE_TYPES,
    IPAddress,
    IPNetwork,
    Node,
    Route,
    Topology,
    documentation_problem,
)
from orchestrate.topology.problems import Reporter

ROUTE_KEYS = ("prefix", "via", "interface", "type")


class RouteRules(Reporter):
    """The route checks of the topology validator (orchestrate.topology.validate)."""

    topology: Topology | None
    """Set once the links are read: a gateway must be a neighbour's address on its link."""

    def routes(self, node: Node, raw: Any, path: KeyPath) -> list[Route]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.error(path, "routes must be a list of {prefix, via | interface | type}")
            return []
        out: list[Route] = []
        for i, item in enumerate(raw):
            route = self.route(node, item, (*path, i))
            if route is None:
                continue
            if any(r.prefix == route.prefix for r in out):
                self.error((*path, i, "prefix"), f"duplicate route for {route.prefix}")
                continue
            out.append(route)
        return out

    def route(self, node: Node, item: Any, path: KeyPath) -> Route | None:
        if not isinstance(item, dict):
            self.error(path, "a route must be a mapping with prefix and via/interface/type")
            return None
        self.unknown_keys(item, ROUTE_KEYS, path, "route")
        ok = True
        prefix: IPNetwork | None = None
        raw_prefix = item.get("prefix")
        if raw_prefix == "default":
            raw_prefix = None
            self.error((*path, "prefix"), "write the default route as 0.0.0.0/0 or ::/0")
        elif not isinstance(raw_prefix, str) or "/" not in raw_prefix:
            self.error((*path, "prefix"), f"expected a prefix like 192.0.2.0/24, got "
                       f"{raw_prefix!r}")
            ok = False
        else:
            try:
                prefix = ipaddress.ip_network(raw_prefix.strip())
            except ValueError as e:
                text = raw_prefix.strip()
                try:
                    fixed = ipaddress.ip_network(text, strict=False)
                except ValueError:
                    self.error((*path, "prefix"), f"bad prefix {text!r}: {e}")
                else:
                    self.error((*path, "prefix"), f"prefix {text} has host bits set",
                               f"did you mean {fixed}?")
                ok = False
            else:
                reason = None if prefix.prefixlen == 0 else documentation_problem(prefix)
                if reason is not None:
                    self.error((*path, "prefix"), reason, DOCUMENTATION_HINT)
                    ok = False
        rtype = item.get("type", "unicast")
        if rtype not in ROUTE_TYPES:
            self.error((*path, "type"), f"route type must be one of "
                       f"{', '.join(ROUTE_TYPES)}, got {rtype!r}")
            ok = False
        via: IPAddress | None = None
        via_if: str | None = None
        raw_via = item.get("via")
        if raw_via is not None:
            via, via_if, good = self.gateway(node, raw_via, prefix, (*path, "via"))
            ok = ok and good
        raw_if = item.get("interface")
        if raw_if is not None:
            if node.interface(str(raw_if)) is None:
                self.error((*path, "interface"), f"node {node.name} has no interface "
                           f"{raw_if!r}")
                ok = False
            elif via_if is not None and via_if != raw_if:
                self.error((*path, "interface"), f"conflicts with the %{via_if} of via")
                ok = False
            else:
                via_if = str(raw_if)
                if via is not None and not via.is_link_local:
                    iface = node.interface(via_if)
                    assert iface is not None
                    if not any(via in a.network for a in iface.addresses):
                        self.error((*path, "via"), f"gateway {via} is not on a subnet of "
                                   f"{node.name}:{via_if}")
                        ok = False
        form = route_form_problem(str(rtype), raw_via is not None, raw_if is not None)
        if form is not None:
            self.error(path, form, "or type: reject / blackhole" if rtype == "unicast" else "")
            ok = False
        if not ok or prefix is None:
            return None
        return Route(prefix, via, via_if, str(rtype))

    def gateway(self, node: Node, raw: Any, prefix: IPNetwork | None, path: KeyPath
                ) -> tuple[IPAddress | None, str | None, bool]:
        text = str(raw).strip()
        via_if: str | None = None
        if "%" in text:
            text, via_if = text.split("%", 1)
        try:
            via = ipaddress.ip_address(text)
        except ValueError:
            self.error(path, f"gateway {raw!r} is not an IP address",
                       "a route's via is a neighbour's address, like 198.51.100.1")
            return None, None, False
        if prefix is not None and via.version != prefix.version:
            self.error(path, f"IPv{via.version} gateway for an IPv{prefix.version} prefix")
            return None, None, False
        if isinstance(via, IPv6Address) and via.is_link_local:
            if via_if is None:
                self.error(path, f"link-local gateway {via} needs its interface",
                           f"write \"{via}%IFNAME\"")
                return None, None, False
            if node.interface(via_if) is None:
                self.error(path, f"node {node.name} has no interface {via_if!r}")
                return None, None, False
            return via, via_if, True
        if via_if is not None:
            self.error(path, "only a link-local gateway takes %interface",
                       "use interface: for the egress interface")
            return None, None, False
        if via.is_multicast or via.is_unspecified or via.is_loopback:
            self.error(path, f"{via} cannot be a gateway")
            return None, None, False
        if via in node.addresses():
            self.error(path, f"gateway {via} is {node.name}'s own address",
                       "the gateway is a neighbour's address")
            return None, None, False
        if not any(via in a.network for i in node.interfaces for a in i.addresses):
            subnets = ", ".join(str(a.network) for i in node.interfaces for a in i.addresses
                                if a.version == via.version and not a.ip.is_link_local)
            self.error(path, f"gateway {via} is not on any subnet of {node.name}",
                       f"its subnets: {subnets or 'none'}")
            return None, None, False
        if self.topology is not None:
            for iface in node.interfaces:
                if iface.link is None or not any(via in a.network for a in iface.addresses):
                    continue
                link = self.topology.links[iface.link]
                owners = [e.node for e in link.endpoints if e.node in self.topology.nodes
                          and via in self.topology.nodes[e.node].addresses()]
                if not owners:
                    others = ", ".join(str(e) for e in link.endpoints if e.node != node.name)
                    self.error(path, f"no node on links[{iface.link}] has the gateway address "
                               f"{via}", f"the neighbours there: {others}")
                    return None, None, False
        return via, None, True
