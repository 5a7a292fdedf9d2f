"""Reading and validating a topology file into the model (orchestrate.topology.model).

Rules the loader enforces (all problems are collected and reported at once, each with
`file:line:col: where: message (hint)`, and nothing starts when there is one):

- Every interface a node uses is listed under that node, and every listed interface is on
  exactly one link: a link endpoint naming an unlisted interface is an error (a typo must not
  silently create a NIC), and so is a listed interface on no link.
- Addresses carry a prefix length; only the documentation ranges (192.0.2.0/24,
  198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) and IPv6 link-local are allowed, and
  203.0.113.248/29 is reserved for the management network.
- Route prefixes have no host bits; a gateway lies in a subnet of one of the node's own
  interfaces, and a link-local gateway names its interface (`fe80::1%eth1`).
- MAC addresses are not configured here: the lab assigns them.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from appliance.config import parse_mac
from appliance.core.sysctl import KNOBS, SysctlError, parse_value
from appliance.yamlsource import Document, KeyPath, YamlSourceError, load_file, load_text
from orchestrate.hosts import HOST_NAME_RE, Host, validate_inventory
from orchestrate.memory import role_memory
from orchestrate.names import NAME_MAX, name_problem
from orchestrate.topology import derive
from orchestrate.topology.impairment import KEYS as IMPAIRMENT_KEYS
from orchestrate.topology.impairment import LAN_PER_ENDPOINT, LAN_PER_ENDPOINT_HINT
from orchestrate.topology.model import (
    ACCELS,
    BACKENDS,
    DOCUMENTATION_HINT,
    MAX_CPUS,
    MAX_LINK_MTU,
    MAX_MEMORY,
    MIN_LINK_MTU,
    MIN_MEMORY,
    ROLES,
    Defaults,
    Endpoint,
    Impairment,
    IPAddress,
    IPInterface,
    Link,
    Node,
    NodeInterface,
    Role,
    Topology,
    address_problem,
)
from orchestrate.topology.problems import TopologyError, is_int
from orchestrate.topology.routes import RouteRules

TOP_KEYS = ("name", "defaults", "hosts", "nodes", "links", "tests", "addressing", "routing")
DEFAULT_KEYS = ("memory", "cpus", "image", "backend", "accel")
NODE_KEYS = ("role", "interfaces", "routes", "sysctl", "neighbors", "memory", "cpus", "host")
NEIGHBOR_KEYS = ("address", "mac", "interface")
INTERFACE_KEYS = ("name", "addresses", "mtu", "link_local")
LINK_KEYS = ("endpoints", "mtu", "name", "cost", *IMPAIRMENT_KEYS)

MAX_NODES = 2048
"""A lab of more nodes is refused. It bounds what validating costs: addressing and routes for
1,000 routers take 2.6 s of CPU (`python3 -m bench topo`) and grow with the square of the
routers. Far fewer VMs fit on one machine; the memory check at `up` is the bound there."""
IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")  # Linux IFNAMSIZ is 16 with the NUL
MEMORY_RE = re.compile(r"^\s*(\d+)\s*([MG])?(i?B)?\s*$", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Loading and validation


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file; raise TopologyError listing every problem.

    The file is read by appliance.yamlsource (regular files only, at most 16 MiB of UTF-8,
    bounded nesting and aliases): a hostile file is a placed problem, never a hang.
    """
    try:
        doc = load_file(path)
    except YamlSourceError as e:
        raise TopologyError(e.problems) from None
    return _validate(doc, Path(path))


def parse_topology(text: str, source: str = "<topology>", path: Path | None = None) -> Topology:
    """Validate topology YAML text; `source` names it in problems."""
    try:
        doc = load_text(text, source)
    except YamlSourceError as e:
        raise TopologyError(e.problems) from None
    return _validate(doc, path)


def _validate(doc: Document, path: Path | None) -> Topology:
    validator = _Validator(doc, doc.source, path)
    topology = validator.run()
    if validator.problems:
        validator.problems.sort(key=lambda p: (p.line, p.col))
        raise TopologyError(validator.problems)
    assert topology is not None
    return topology


class _Validator(RouteRules):
    def __init__(self, doc: Document, source: str, path: Path | None) -> None:
        super().__init__(doc, source)
        self.path = path
        self.endpoint_paths: dict[tuple[int, Endpoint], KeyPath] = {}
        self.topology: Topology | None = None

    def memory(self, value: Any, path: KeyPath) -> int | None:
        mib: int | None = None
        if is_int(value):
            mib = value
        elif isinstance(value, str) and (m := MEMORY_RE.match(value)):
            mib = int(m.group(1)) * (1024 if (m.group(2) or "M").upper() == "G" else 1)
        if mib is None:
            self.error(path, f"memory must be MiB as an integer or like \"512M\"/\"1G\", "
                       f"got {value!r}")
            return None
        if mib < MIN_MEMORY:
            self.error(path, f"memory {mib} MiB is too small", f"at least {MIN_MEMORY} MiB "
                       "boots the kernel, sshd and the appliance")
            return None
        if mib > MAX_MEMORY:
            self.error(path, f"memory {mib} MiB is too large", f"at most {MAX_MEMORY} MiB")
            return None
        return mib

    # -- sections

    def run(self) -> Topology | None:
        self.problems.extend(self.doc.problems)
        data = self.doc.data
        if not isinstance(data, dict):
            self.error((), f"a topology must be a mapping, got {type(data).__name__}",
                       "start with name:, nodes: and links:")
            return None
        self.unknown_keys(data, TOP_KEYS, (), "top-level")
        name = self.lab_name(data)
        defaults = self.defaults(data.get("defaults"))
        nodes = self.nodes(data.get("nodes"), defaults)
        links = self.links(data.get("links"))
        topology = Topology(name, self.path, defaults, nodes, links)
        if "hosts" in data:
            topology.inventory = self.inventory(data["hosts"], data.get("defaults"), nodes)
        self.topology = topology
        auto_links = derive.name_interfaces(self, topology, self.endpoint_paths)
        self.wire(topology)
        derive.address(self, topology, data.get("addressing"), auto_links)
        self.routes_and_addresses(topology)
        derive.route(self, topology, data.get("routing"))
        topology.tests = derive.checks(self, data.get("tests"), topology)
        return topology

    def inventory(self, raw: Any, defaults: Any, nodes: dict[str, Node]) -> dict[str, Host]:
        """The `hosts:` section (orchestrate.hosts) and every node's `host:` pin against it."""
        hosts = validate_inventory(
            raw, ("hosts",),
            lambda path, message, hint, key: self.error(path, message, hint, key=key))
        backend = defaults.get("backend") if isinstance(defaults, dict) else None
        if backend not in (None, "libvirt"):
            self.error(("defaults", "backend"), f"hosts: needs the libvirt backend, not "
                       f"{backend!r}", "drop backend: or say backend: libvirt")
        if isinstance(raw, dict) and len(hosts) == len(raw):
            for node in nodes.values():
                if node.host is not None and node.host not in hosts:
                    self.error(("nodes", node.name, "host"), f"node {node.name} is pinned to "
                               f"host {node.host!r}, which hosts: lacks",
                               f"hosts: {', '.join(hosts)}")
        return hosts

    def lab_name(self, data: dict[Any, Any]) -> str:
        name = data.get("name")
        if name is None:
            stem = self.path.stem if self.path is not None else "lab"
            return re.sub(r"[^a-z0-9-]", "-", stem.lower()).strip("-")[:NAME_MAX] or "lab"
        problem = name_problem(name, "lab name")
        if problem is not None:
            self.error(("name",), problem)
            return "lab"
        return str(name)

    def defaults(self, raw: Any) -> Defaults:
        if raw is None:
            return Defaults()
        path: KeyPath = ("defaults",)
        if not isinstance(raw, dict):
            self.error(path, "defaults must be a mapping")
            return Defaults()
        self.unknown_keys(raw, DEFAULT_KEYS, path, "defaults")
        memory: int | None = None  # each role's own (orchestrate.memory.role_memory)
        if "memory" in raw:
            memory = self.memory(raw["memory"], (*path, "memory"))
        cpus = 1
        if "cpus" in raw:
            cpus = self.integer(raw["cpus"], (*path, "cpus"), 1, MAX_CPUS, "cpus") or 1
        image = raw.get("image")
        if image is not None and not isinstance(image, str):
            self.error((*path, "image"), f"image must be a string, got {image!r}")
            image = None
        backend = raw.get("backend", "qemu")
        if backend not in BACKENDS:
            self.error((*path, "backend"), f"unknown backend {backend!r}",
                       f"expected one of: {', '.join(BACKENDS)}")
            backend = "qemu"
        accel = raw.get("accel", "auto")
        if accel not in ACCELS:
            self.error((*path, "accel"), f"unknown accel {accel!r}",
                       f"expected one of: {', '.join(ACCELS)}")
            accel = "auto"
        return Defaults(memory, cpus, image, backend, accel)

    def nodes(self, raw: Any, defaults: Defaults) -> dict[str, Node]:
        if not isinstance(raw, dict) or not raw:
            self.error(("nodes",), "nodes must be a non-empty mapping of name: node",
                       "e.g. nodes: {r1: {role: router, interfaces: [...]}}")
            return {}
        if len(raw) > MAX_NODES:
            self.error(("nodes",), f"{len(raw)} nodes, more than the limit of {MAX_NODES} "
                       f"nodes in one lab", "split it into several labs")
            return {}
        nodes: dict[str, Node] = {}
        for name, body in raw.items():
            path: KeyPath = ("nodes", name)
            problem = name_problem(name, "node name")
            if problem is not None:
                self.error(path, problem, key=True)
                continue
            node = self.node(name, body, path, defaults)
            if node is not None:
                nodes[name] = node
        return nodes

    def node(self, name: str, body: Any, path: KeyPath, defaults: Defaults) -> Node | None:
        if not isinstance(body, dict):
            self.error(path, "a node must be a mapping with at least role:",
                       "e.g. {role: host, interfaces: [...]}")
            return None
        self.unknown_keys(body, NODE_KEYS, path, "node")
        role: Role = next((r for r in ROLES if r == body.get("role")), "host")
        if body.get("role") not in ROLES:
            self.error((*path, "role"), "role must be router, host or kernel-router, got "
                       f"{body.get('role')!r}")
        memory = defaults.memory or role_memory(role)
        if "memory" in body:
            memory = self.memory(body["memory"], (*path, "memory")) or memory
        cpus = defaults.cpus
        if "cpus" in body:
            cpus = self.integer(body["cpus"], (*path, "cpus"), 1, MAX_CPUS, "cpus") or cpus
        node = Node(name, role, memory=memory, cpus=cpus)
        if "host" in body:
            host = body["host"]
            if isinstance(host, str) and HOST_NAME_RE.match(host):
                node.host = host
            else:
                self.error((*path, "host"), f"host must name a host of the inventory, got "
                           f"{host!r}", "e.g. host: alpha")
        node.interfaces = self.interfaces(body.get("interfaces"), (*path, "interfaces"))
        node.sysctl = self.sysctl(node, body.get("sysctl"), (*path, "sysctl"))
        node.neighbors = self.neighbors(node, body.get("neighbors"), (*path, "neighbors"))
        return node

    def interfaces(self, raw: Any, path: KeyPath) -> list[NodeInterface]:
        if raw == []:
            self.error(path, "a node needs interfaces", "e.g. interfaces: [{name: eth1}]")
            return []
        if raw is None:
            return []  # named on links as bare nodes (generated), else derive reports it
        if not isinstance(raw, list):
            self.error(path, "interfaces must be a list of {name, addresses, mtu}")
            return []
        out: list[NodeInterface] = []
        for i, item in enumerate(raw):
            ipath = (*path, i)
            if isinstance(item, str):
                item = {"name": item}  # a bare name: an interface without addresses
            if not isinstance(item, dict):
                self.error(ipath, "an interface must be a mapping with name and addresses")
                continue
            self.unknown_keys(item, INTERFACE_KEYS, ipath, "interface")
            name = item.get("name")
            if not isinstance(name, str) or not IFNAME_RE.match(name) or name == "lo":
                self.error((*ipath, "name"), f"bad interface name {name!r}",
                           "1-15 characters: a letter, then letters, digits, '_', '.', '-'")
                continue
            if any(x.name == name for x in out):
                self.error((*ipath, "name"), f"duplicate interface {name!r} on this node")
                continue
            iface = NodeInterface(name)
            iface.addresses = self.addresses(item.get("addresses"), (*ipath, "addresses"))
            if "mtu" in item:
                iface.mtu = self.integer(item["mtu"], (*ipath, "mtu"), MIN_LINK_MTU,
                                         MAX_LINK_MTU, "mtu")
            if "link_local" in item:
                iface.link_local = self.link_local(item["link_local"], (*ipath, "link_local"))
            out.append(iface)
        return out

    def addresses(self, raw: Any, path: KeyPath) -> list[IPInterface]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raw = [raw]
            single = True
        else:
            single = False
        out: list[IPInterface] = []
        for j, text in enumerate(raw):
            apath = path if single else (*path, j)
            addr = self.address(text, apath)
            if addr is not None:
                if addr in out:
                    self.error(apath, f"{addr} is listed twice")
                    continue
                out.append(addr)
        return out

    def address(self, text: Any, path: KeyPath) -> IPInterface | None:
        if not isinstance(text, str) or "/" not in text:
            self.error(path, f"expected address/prefix-length, got {text!r}",
                       "e.g. 198.51.100.1/26 or \"2001:db8:1::1/64\"")
            return None
        try:
            addr = ipaddress.ip_interface(text.strip())
        except ValueError:
            self.error(path, f"{text!r} is not an IPv4 or IPv6 address with a prefix length",
                       "e.g. 198.51.100.1/26 or \"2001:db8:1::1/64\"")
            return None
        if addr.ip.is_multicast or addr.ip.is_unspecified or addr.ip.is_loopback:
            self.error(path, f"{addr.ip} cannot be an interface address")
            return None
        if addr.version == 4 and addr.network.prefixlen < 31 and addr.ip in (
                addr.network.network_address, addr.network.broadcast_address):
            self.error(path, f"{addr.ip} is the network or broadcast address of {addr.network}",
                       "pick a host address inside the subnet")
            return None
        reason = address_problem(addr)
        if reason is not None:
            self.error(path, reason, DOCUMENTATION_HINT)
            return None
        return addr

    def link_local(self, text: Any, path: KeyPath) -> IPv6Address | None:
        try:
            addr = ipaddress.ip_address(str(text).split("/")[0])
        except ValueError as e:
            self.error(path, f"bad link-local address: {e}")
            return None
        if not isinstance(addr, IPv6Address) or not addr.is_link_local:
            self.error(path, f"{text!r} is not an IPv6 link-local address", "fe80::/10")
            return None
        return addr

    def sysctl(self, node: Node, raw: Any, path: KeyPath) -> dict[str, int]:
        if raw is None:
            return {}
        if node.role == "kernel-router":
            return derive.linux_sysctl(self, raw, path)
        if not node.is_router:
            self.error(path, "sysctl applies to router nodes only",
                       "hosts run stock Linux; use an exec check to change its settings",
                       key=True)
            return {}
        if not isinstance(raw, dict):
            self.error(path, "sysctl must be a mapping of name: value")
            return {}
        out: dict[str, int] = {}
        for key, value in raw.items():
            kpath = (*path, key)
            if key not in KNOBS:
                close = difflib.get_close_matches(str(key), sorted(KNOBS), 1)
                hint = f"did you mean {close[0]}?" if close else "see routerctl show sysctl"
                self.error(kpath, f"unknown sysctl {key!r}", hint, key=True)
                continue
            try:
                out[key] = parse_value(key, value)
            except SysctlError as e:
                self.error(kpath, str(e))
        return out

    def neighbors(self, node: Node, raw: Any, path: KeyPath) -> list[dict[str, str]]:
        if raw is None:
            return []
        if not node.is_router:
            self.error(path, "neighbors applies to router nodes only",
                       "hosts run stock Linux; use an exec check with ip neigh", key=True)
            return []
        if not isinstance(raw, list):
            self.error(path, "neighbors must be a list of {address, mac, interface}")
            return []
        out: list[dict[str, str]] = []
        for i, item in enumerate(raw):
            ipath = (*path, i)
            if not isinstance(item, dict):
                self.error(ipath, "a neighbor must be a mapping with address, mac and interface")
                continue
            self.unknown_keys(item, NEIGHBOR_KEYS, ipath, "neighbor")
            ok = True
            try:
                addr = ipaddress.ip_address(str(item.get("address")).strip())
            except ValueError:
                self.error((*ipath, "address"), f"bad address {item.get('address')!r}")
                ok = False
            else:
                reason = address_problem(ipaddress.ip_interface(addr))
                if reason is not None:
                    self.error((*ipath, "address"), reason, DOCUMENTATION_HINT)
                    ok = False
            raw_mac = item.get("mac")
            mac = parse_mac(raw_mac) if isinstance(raw_mac, str) else None
            if mac is None or mac[0] & 1 or mac == bytes(6):
                self.error((*ipath, "mac"), f"expected a unicast MAC address, got {raw_mac!r}",
                           'e.g. mac: "02:00:00:00:00:46" (quoted)')
                ok = False
            if node.interface(str(item.get("interface"))) is None:
                self.error((*ipath, "interface"), f"node {node.name} has no interface "
                           f"{item.get('interface')!r}")
                ok = False
            if ok:
                out.append({"address": str(addr), "mac": str(raw_mac),
                            "interface": str(item["interface"])})
        return out

    def links(self, raw: Any) -> list[Link]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.error(("links",), "links must be a list",
                       "each item: [a:eth1, b:eth1] or {endpoints: [...], mtu: 1280}")
            return []
        out: list[Link] = []
        for i, item in enumerate(raw):
            path: KeyPath = ("links", i)
            epath: KeyPath = path
            mtu: int | None = None
            name: str | None = None
            cost: int | None = 1
            impairment: Impairment | None = None
            per_endpoint: dict[str, Impairment] = {}
            if isinstance(item, dict):
                self.unknown_keys(item, LINK_KEYS, path, "link")
                ends = item.get("endpoints")
                epath = (*path, "endpoints")
                if "mtu" in item:
                    mtu = self.integer(item["mtu"], (*path, "mtu"), MIN_LINK_MTU, MAX_LINK_MTU,
                                       "link mtu")
                if "name" in item:
                    if isinstance(item["name"], str) and item["name"]:
                        name = item["name"]
                    else:
                        self.error((*path, "name"), "link name must be a non-empty string")
                cost = self.integer(item.get("cost", 1), (*path, "cost"), 1, 1 << 24, "cost")
                impairment = derive.link_impairment(self, item, path)
            else:
                ends = item
            if not isinstance(ends, list):
                self.error(epath, "a link needs a list of endpoints \"node:ifname\"",
                           "e.g. [r1:eth1, h1:eth1]")
                out.append(Link([], mtu, name))
                continue
            endpoints: list[Endpoint] = []
            for j, text in enumerate(ends):
                if isinstance(text, dict):
                    endpoint, own = derive.endpoint_with_impairment(self, text, (*epath, j),
                                                                    impairment)
                    lan_own = [k for k in IMPAIRMENT_KEYS if k in text] if len(ends) > 2 else []
                    if lan_own:
                        self.error((*epath, j, lan_own[0]), LAN_PER_ENDPOINT,
                                   LAN_PER_ENDPOINT_HINT)
                        own = None
                    if endpoint is not None and own is not None:
                        per_endpoint[endpoint.node] = own
                else:
                    endpoint = self.endpoint(text, (*epath, j))
                if endpoint is None:
                    continue
                if any(e.node == endpoint.node for e in endpoints):
                    self.error((*epath, j), f"node {endpoint.node} is on this link twice")
                    continue
                endpoints.append(endpoint)
                self.endpoint_paths[(i, endpoint)] = (*epath, j)
            if len(ends) < 2:
                self.error(epath, f"a link needs at least two endpoints, got {len(ends)}",
                           "two for point-to-point, three or more for a LAN segment")
            out.append(Link(endpoints, mtu, name, cost or 1, impairment, per_endpoint))
        return out

    def endpoint(self, text: Any, path: KeyPath) -> Endpoint | None:
        if isinstance(text, str) and ":" not in text and text.strip():
            return Endpoint(text.strip(), "")  # a bare node: its interface is generated
        if not isinstance(text, str) or text.count(":") != 1:
            self.error(path, f"expected an endpoint \"node:ifname\" or \"node\", got {text!r}")
            return None
        node, ifname = text.split(":")
        return Endpoint(node.strip(), ifname.strip())

    # -- cross-references

    def wire(self, topology: Topology) -> None:
        """Bind each link endpoint to its node's interface; report dangling ones."""
        used: dict[tuple[str, str], int] = {}
        for i, link in enumerate(topology.links):
            for endpoint in link.endpoints:
                path = self.endpoint_paths[(i, endpoint)]
                node = topology.nodes.get(endpoint.node)
                if node is None:
                    known = ", ".join(sorted(topology.nodes)) or "none"
                    self.error(path, f"unknown node {endpoint.node!r}", f"nodes: {known}")
                    continue
                iface = node.interface(endpoint.ifname)
                if iface is None:
                    names = ", ".join(x.name for x in node.interfaces) or "none"
                    self.error(path, f"node {node.name} has no interface {endpoint.ifname!r}",
                               f"list it under nodes.{node.name}.interfaces; it has: {names}")
                    continue
                key = (endpoint.node, endpoint.ifname)
                if key in used:
                    self.error(path, f"interface {endpoint} is already on links[{used[key]}]",
                               "an interface connects to one link; add another interface")
                    continue
                used[key] = i
                iface.link = i
                if link.mtu is not None and iface.mtu is None:
                    iface.mtu = link.mtu
        for node in topology.nodes.values():
            for k, iface in enumerate(node.interfaces):
                if iface.link is None and (node.name, iface.name) not in used:
                    self.error(("nodes", node.name, "interfaces", k),
                               f"interface {node.name}:{iface.name} is on no link",
                               "add it to a link or remove it")

    def routes_and_addresses(self, topology: Topology) -> None:
        raw_nodes = self.doc.data.get("nodes") if isinstance(self.doc.data, dict) else None
        owner: dict[IPAddress, str] = {}
        for node in topology.nodes.values():
            npath: KeyPath = ("nodes", node.name)
            # duplicate addresses lab-wide (link-local: only on the same link)
            for k, iface in enumerate(node.interfaces):
                for j, addr in enumerate(iface.addresses):
                    where = f"{node.name}:{iface.name}"
                    key: Any = addr.ip
                    if addr.ip.is_link_local:
                        key = (addr.ip, iface.link)
                    if key in owner:
                        self.error((*npath, "interfaces", k, "addresses", j),
                                   f"address {addr.ip} is already used by {owner[key]}",
                                   "every address in a lab is unique")
                    else:
                        owner[key] = where
            # overlapping subnets across a node's interfaces
            for k, iface in enumerate(node.interfaces):
                for j, addr in enumerate(iface.addresses):
                    if addr.ip.is_link_local:
                        continue
                    for other in node.interfaces[:k]:
                        clash = next((o for o in other.addresses if not o.ip.is_link_local
                                      and o.network.overlaps(addr.network)), None)
                        if clash is not None:
                            self.error((*npath, "interfaces", k, "addresses", j),
                                       f"subnet {addr.network} overlaps {clash.network} on "
                                       f"{other.name}",
                                       "each interface of a node needs its own subnet")
                            break
            raw_routes = raw_nodes.get(node.name, {}).get("routes") if isinstance(
                raw_nodes, dict) and isinstance(raw_nodes.get(node.name), dict) else None
            node.routes = self.routes(node, raw_routes, (*npath, "routes"))
