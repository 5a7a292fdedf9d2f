"""The topology model (pure data): a lab of routers and hosts, the links between them and the
checks to run, as the topology file writes them.

```yaml
name: line
defaults: {memory: 256, cpus: 1}           # also image, backend (qemu|libvirt), accel;
                                           # no memory: each role's (orchestrate.memory)
nodes:
  r1:
    role: router                           # router | host (required)
    interfaces:
      - {name: r1-h1, addresses: [198.51.100.1/26, "2001:db8:1::1/64"]}
      - {name: r1-h2, addresses: [198.51.100.65/26], mtu: 1500}
    routes:                                # prefix + via, prefix + interface, or type
      - {prefix: 192.0.2.0/24, via: 198.51.100.66}
    sysctl: {net.inet.ip.redirect: 0}      # routers only
    neighbors:                             # routers only: static ARP/ND entries
      - {address: 198.51.100.70, mac: "02:00:00:00:00:46", interface: r1-h2}
    memory: 256                            # MiB, or "256M" / "1G"
  h1:
    role: host
    interfaces: [{name: eth1, addresses: [198.51.100.2/26]}]
    routes: [{prefix: 0.0.0.0/0, via: 198.51.100.1}]
links:
  - [r1:r1-h1, h1:eth1]                    # two endpoints: point-to-point
  - {endpoints: [r1:r1-h2, h2:eth1, h3:eth1], mtu: 1280}   # three or more: a LAN segment
tests:
  - {kind: ping, from: h1, to: h2, family: 4}
```

The model is plain data; orchestrate.topology.validate reads a file into it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Any

# Re-exported: the topology model speaks of these choices.
from appliance.config import ROUTE_TYPES as ROUTE_TYPES
from orchestrate.choices import ACCELS as ACCELS
from orchestrate.choices import BACKENDS as BACKENDS
from orchestrate.choices import ROLES as ROLES
from orchestrate.choices import Role as Role
from orchestrate.hosts import Host
from orchestrate.nodeconfig import MGMT_NETWORK

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network

DEFAULT_MEMORY = 256
"""MiB of a Node made in code without a memory; a topology file's nodes without one get their
role's measured size (`orchestrate.memory.role_memory`)."""
MIN_MEMORY = 128
MAX_MEMORY = 16384
MAX_CPUS = 16
MIN_LINK_MTU = 1280  # the IPv6 minimum (RFC 8200 §5): every link carries IPv6
MAX_LINK_MTU = 9000

DOCUMENTATION_NETWORKS: tuple[IPNetwork, ...] = (
    IPv4Network("192.0.2.0/24"),  # TEST-NET-1, RFC 5737
    IPv4Network("198.51.100.0/24"),  # TEST-NET-2
    IPv4Network("203.0.113.0/24"),  # TEST-NET-3
    IPv6Network("2001:db8::/32"),  # RFC 3849
)
LINK_LOCAL_V6 = IPv6Network("fe80::/10")
MANAGEMENT_NETWORK = MGMT_NETWORK
"""Reserved for the lab's management side (nodeconfig's); no node may use it on a data link."""


@dataclass(frozen=True, slots=True)
class Defaults:
    memory: int | None = None
    """MiB; None: each node its role's size (`orchestrate.memory.role_memory`)."""
    cpus: int = 1
    image: str | None = None
    """None: the image `vrlab image` builds."""
    backend: str = "qemu"
    accel: str = "auto"


@dataclass(slots=True)
class NodeInterface:
    name: str
    addresses: list[IPInterface] = field(default_factory=list)
    mtu: int | None = None
    """The interface's own MTU, else its link's; None: the link default (1500)."""
    link_local: IPv6Address | None = None
    """None: derived from the MAC the lab assigns (modified EUI-64)."""
    link: int | None = None
    """Index of the link in Topology.links."""

    def to_config(self) -> dict[str, Any]:
        """The interface as the router config and the topology file write it."""
        item: dict[str, Any] = {"name": self.name, "addresses": [str(a) for a in self.addresses]}
        if self.mtu is not None:
            item["mtu"] = self.mtu
        if self.link_local is not None:
            item["link_local"] = str(self.link_local)
        return item


@dataclass(frozen=True, slots=True)
class Route:
    prefix: IPNetwork
    via: IPAddress | None = None
    interface: str | None = None
    """Egress interface: for on-link routes and link-local gateways (`fe80::1%eth1`)."""
    type: str = "unicast"

    def to_config(self) -> dict[str, Any]:
        """The route in router-config form (DESIGN.md "Running it")."""
        out: dict[str, Any] = {"prefix": str(self.prefix)}
        if self.type != "unicast":
            out["type"] = self.type
        elif self.via is not None:
            link_local = isinstance(self.via, IPv6Address) and self.via.is_link_local
            out["via"] = f"{self.via}%{self.interface}" if link_local else str(self.via)
            if self.interface is not None and not link_local:
                out["interface"] = self.interface
        else:
            out["interface"] = self.interface
        return out

    def iproute2_args(self) -> list[str]:
        """The route for a Linux host, as arguments after `ip route add` (or in `ip -batch`)."""
        if self.type == "reject":
            return ["prohibit", str(self.prefix)]  # answers admin-prohibited, as the router
        if self.type == "blackhole":
            return ["blackhole", str(self.prefix)]
        args = [str(self.prefix)]
        if self.via is not None:
            args += ["via", str(self.via)]
        if self.interface is not None:
            args += ["dev", self.interface]
        return args


@dataclass(slots=True)
class Node:
    name: str
    role: Role
    interfaces: list[NodeInterface] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    sysctl: dict[str, int] = field(default_factory=dict)
    neighbors: list[dict[str, str]] = field(default_factory=list)
    """Static neighbors of a router: {address, mac, interface} as the router config has them."""
    memory: int = DEFAULT_MEMORY
    cpus: int = 1
    host: str | None = None
    """The inventory host the node is pinned to (`host:`); None: placed automatically."""

    @property
    def is_router(self) -> bool:
        """A vrlab router (the appliance); see `forwards` for any node that routes."""
        return self.role == "router"

    @property
    def forwards(self) -> bool:
        """A router: a vrlab router or a `kernel-router` (Linux forwarding)."""
        return self.role != "host"

    def interface(self, name: str) -> NodeInterface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    def addresses(self, family: int | None = None) -> Iterator[IPAddress]:
        """Configured addresses in file order (link-local ones only if configured)."""
        for iface in self.interfaces:
            for addr in iface.addresses:
                if family is None or addr.version == family:
                    yield addr.ip

    def first_address(self, family: int) -> IPAddress | None:
        """The first global (not link-local) address of that family, the one checks target."""
        return next((a for a in self.addresses(family) if not a.is_link_local), None)

    def router_config(self) -> dict[str, Any]:
        """The router YAML of DESIGN.md "Running it" for this node."""
        interfaces = [iface.to_config() for iface in self.interfaces]
        config: dict[str, Any] = {"hostname": self.name, "interfaces": interfaces}
        if self.routes:
            config["routes"] = [r.to_config() for r in self.routes]
        if self.sysctl:
            config["sysctl"] = dict(self.sysctl)
        if self.neighbors:
            config["neighbors"] = [dict(n) for n in self.neighbors]
        return config


@dataclass(frozen=True, slots=True)
class Endpoint:
    node: str
    ifname: str

    def __str__(self) -> str:
        return f"{self.node}:{self.ifname}"


@dataclass(frozen=True, slots=True)
class Impairment:
    """What Linux netem (tc-netem(8)) does to the packets a link delivers at one endpoint.

    Each field is None when not set. Values are as netem takes them: times in milliseconds,
    probabilities in percent, rate in bit/s.
    """

    delay: float | None = None
    jitter: float | None = None
    loss: float | None = None
    reorder: float | None = None
    """Percent of packets sent at once, the others delayed (needs delay, as in netem)."""
    duplicate: float | None = None
    corrupt: float | None = None
    rate: int | None = None

    def merged(self, other: Impairment | None) -> Impairment:
        """These values, overridden by the ones `other` sets."""
        if other is None:
            return self
        def pick(mine: float | None, theirs: float | None) -> float | None:
            return theirs if theirs is not None else mine

        return Impairment(
            pick(self.delay, other.delay), pick(self.jitter, other.jitter),
            pick(self.loss, other.loss), pick(self.reorder, other.reorder),
            pick(self.duplicate, other.duplicate), pick(self.corrupt, other.corrupt),
            other.rate if other.rate is not None else self.rate)

    def values(self) -> tuple[float | int | None, ...]:
        return (self.delay, self.jitter, self.loss, self.reorder, self.duplicate, self.corrupt,
                self.rate)

    def __bool__(self) -> bool:
        return any(v is not None for v in self.values())


@dataclass(slots=True)
class Link:
    endpoints: list[Endpoint]
    mtu: int | None = None
    name: str | None = None
    cost: int = 1
    """The link's cost for automatic routing (`routing: auto`)."""
    impairment: Impairment | None = None
    """Applied to what the link delivers at every endpoint (so in both directions)."""
    endpoint_impairments: dict[str, Impairment] = field(default_factory=dict)
    """Per endpoint node: what the link delivers to that node, over the link's own values."""

    def impairment_at(self, node: str) -> Impairment | None:
        """What netem does on this link to the packets arriving at `node`; None: nothing."""
        base = self.impairment or Impairment()
        merged = base.merged(self.endpoint_impairments.get(node))
        return merged if merged else None

    @property
    def impaired(self) -> bool:
        return any(self.impairment_at(e.node) for e in self.endpoints)

    @property
    def is_lan(self) -> bool:
        """Three or more endpoints: a LAN segment (a bridge), not a point-to-point link."""
        return len(self.endpoints) > 2


@dataclass(frozen=True, slots=True)
class CheckSpec:
    kind: str
    name: str
    params: dict[str, Any]
    """Every key of the check except kind and name, as written (validated)."""
    file: str
    line: int
    col: int


@dataclass(slots=True)
class Topology:
    name: str
    path: Path | None
    defaults: Defaults
    nodes: dict[str, Node]
    links: list[Link]
    tests: list[CheckSpec] = field(default_factory=list)
    inventory: dict[str, Host] = field(default_factory=dict)
    """The machines of the `hosts:` section (orchestrate.hosts); empty: one machine."""
    routing: str = "static"
    """`auto`: vrlab computed routes (orchestrate.topology.routing); `static`: as written."""

    def routers(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.is_router]

    def hosts(self) -> list[Node]:
        """The nodes that do not forward (a kernel-router is neither a host nor a router)."""
        return [n for n in self.nodes.values() if not n.forwards]

    def link_of(self, node: str, ifname: str) -> Link | None:
        """The link an interface is on."""
        iface = self.nodes[node].interface(ifname) if node in self.nodes else None
        return self.links[iface.link] if iface is not None and iface.link is not None else None

    def shared_links(self, a: str, b: str) -> list[tuple[Link, Endpoint, Endpoint]]:
        """Links on which both nodes sit, with each one's endpoint."""
        out = []
        for link in self.links:
            ea = next((e for e in link.endpoints if e.node == a), None)
            eb = next((e for e in link.endpoints if e.node == b), None)
            if ea is not None and eb is not None:
                out.append((link, ea, eb))
        return out

    def node_of_address(self, addr: IPAddress) -> str | None:
        for node in self.nodes.values():
            if addr in node.addresses():
                return node.name
        return None


# ---------------------------------------------------------------------------------------------
# Address rules shared with the checks


def documentation_problem(net: IPNetwork) -> str | None:
    """Why a subnet or route prefix is not allowed in a lab, or None if it is."""
    if net.version == 6 and net.subnet_of(LINK_LOCAL_V6):
        return None
    if net.version == 4 and net.overlaps(MANAGEMENT_NETWORK):
        return f"{net} overlaps the management network {MANAGEMENT_NETWORK}"
    for doc in DOCUMENTATION_NETWORKS:
        if doc.version == net.version and net.subnet_of(doc):  # type: ignore[arg-type]
            return None
    return f"{net} is outside the documentation ranges"


def address_problem(addr: IPInterface) -> str | None:
    """Why an interface address is not allowed in a lab, or None if it is."""
    if addr.version == 4 and addr.ip in MANAGEMENT_NETWORK:
        return f"{addr.ip} is in {MANAGEMENT_NETWORK}, reserved for the management network"
    if documentation_problem(ipaddress.ip_network(addr.ip)) is not None:
        return f"{addr.ip} is outside the documentation ranges"
    net = addr.network
    if net.version == 4 and net.overlaps(MANAGEMENT_NETWORK):
        return f"subnet {net} of {addr} overlaps the management network {MANAGEMENT_NETWORK}"
    if documentation_problem(net) is not None:
        return f"subnet {net} of {addr} reaches outside the documentation ranges"
    return None


DOCUMENTATION_HINT = "use 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32 or fe80::/10"

