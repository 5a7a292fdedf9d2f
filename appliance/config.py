"""The router configuration file (DESIGN.md "Running it").

```yaml
hostname: r1
interfaces:
  - name: r1-h1
    addresses: [198.51.100.1/26, "2001:db8:1::1/64"]
    mtu: 1500                       # optional
    link_local: fe80::1             # optional; default derived from the MAC (EUI-64)
    qdisc_bypass: false             # optional; default true: the TX ring skips the qdisc
routes:
  - prefix: 0.0.0.0/0
    via: 198.51.100.2
  - prefix: "2001:db8:9::/48"
    via: "fe80::2%r1-h1"            # a link-local next hop names its interface
  - prefix: 203.0.113.0/24
    interface: r1-h1                # out an interface, destination on-link
  - prefix: 192.0.2.0/26
    type: reject                    # or blackhole
neighbors:                          # static ARP/ND entries (`arp -s`, `ip neigh ... permanent`)
  - address: 198.51.100.9
    mac: "02:00:00:00:00:09"
    interface: r1-h1
sysctl:
  net.inet.ip.redirect: 1
```

`parse_router_config` checks everything and raises one `ConfigError` whose `.problems` lists
every problem with its place (`file:line:col: routes[1].via: ...` when loaded from a file).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
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

from appliance.core.sysctl import SysctlError, parse_value
from appliance.yamlsource import (
    Document,
    Mark,
    Problem,
    YamlSourceError,
    format_path,
    load_file,
)

ROUTE_TYPES = ("unicast", "blackhole", "reject")
MIN_MTU_V4 = 68  # RFC 791
MIN_MTU_V6 = 1280  # RFC 8200 §5


class ConfigError(ValueError):
    """Every problem found in a router configuration.

    `.problems` are the lines to print or send over the control socket (`file:line:col: path:
    message` for the file's problems); `.placed` are the same problems of the file as
    `Problem`s (appliance.yamlsource), fields and all. The router's own refusals (a route that
    cannot be installed on these links) have no place in a file: they are lines only.
    """

    def __init__(self, problems: Sequence[Problem | str]) -> None:
        self.problems = [str(p) for p in problems]
        self.placed = [p for p in problems if isinstance(p, Problem)]
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    name: str
    addresses: list[IPv4Interface | IPv6Interface] = field(default_factory=list)
    mtu: int | None = None
    """None: use the link's MTU."""
    link_local: IPv6Address | None = None
    """None: derive from the MAC (modified EUI-64, RFC 4291 appendix A)."""
    qdisc_bypass: bool = True
    """True: frames from the TX ring skip the interface's qdisc (PACKET_QDISC_BYPASS, the fast
    way); False: they go through it, so a qdisc set there (tc-netem for a lab's link
    impairments, orchestrate.netem) applies to everything the router sends on it."""


@dataclass(frozen=True, slots=True)
class RouteConfig:
    prefix: IPv4Network | IPv6Network
    via: IPv4Address | IPv6Address | None = None
    """Gateway; None means on-link out `via_interface` (or no next hop for reject/blackhole)."""
    via_interface: str | None = None
    """Egress interface name: for on-link routes, and for link-local gateways (`fe80::2%if`)."""
    type: str = "unicast"
    """unicast, blackhole (silent drop) or reject (ICMP administratively prohibited)."""


@dataclass(frozen=True, slots=True)
class NeighborConfig:
    """A static neighbor: never resolved, never expires (BSD `arp -s`, Linux `nud permanent`)."""

    address: IPv4Address | IPv6Address
    mac: bytes
    interface: str


@dataclass(frozen=True, slots=True)
class RouterConfig:
    hostname: str
    interfaces: list[InterfaceConfig] = field(default_factory=list)
    routes: list[RouteConfig] = field(default_factory=list)
    sysctl: dict[str, int] = field(default_factory=dict)
    neighbors: list[NeighborConfig] = field(default_factory=list)


def load_router_config(path: str | Path) -> RouterConfig:
    """Read and check a router YAML file (appliance.yamlsource: regular file, 16 MiB, UTF-8,
    bounded depth and aliases); every problem carries file:line:col."""
    try:
        doc = load_file(path)
    except YamlSourceError as e:
        raise ConfigError(e.problems) from None
    return parse_router_config(doc.data, doc.source, doc)


class _Checker:
    def __init__(self, source: str, doc: Document | None) -> None:
        self.source = source
        self.problems: list[Problem] = list(doc.problems) if doc is not None else []
        self.marks: dict[str, Mark] = {}
        if doc is not None:  # the checks below name places by their text (format_path)
            self.marks = {format_path(p) if p else "": m for p, m in doc.values.items()}

    def error(self, path: str, message: str) -> None:
        mark = self.marks.get(path)
        line, col = (mark.line, mark.col) if mark else (0, 0)
        self.problems.append(Problem(self.source, line, col, path or "(top)", message))


def _str(chk: _Checker, value: Any, path: str) -> str | None:
    if isinstance(value, str) and value:
        return value
    chk.error(path, f"expected a non-empty string, got {value!r}")
    return None


def _list(chk: _Checker, data: dict[str, Any], key: str) -> list[Any]:
    """The optional list under `key` (empty when absent or not a list, the latter reported)."""
    raw = data.get(key) or []
    if not isinstance(raw, list):
        chk.error(key, f"expected a list of {key}")
        return []
    return raw


def _sub(path: str, key: Any) -> str:
    """The text of `path`'s child `key`, as format_path writes it (`a.b`, `a['x.y']`)."""
    rendered = format_path((str(key),))
    return f"{path}.{rendered}" if path and not rendered.startswith("[") else path + rendered


def _check_keys(chk: _Checker, data: dict[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in data:
        if key not in allowed:
            sub = _sub(path, key)
            chk.error(sub, f"unknown key {key!r} (expected one of: {', '.join(allowed)})")


# What Linux accepts as a device name (dev_valid_name: IFNAMSIZ - 1 bytes, not "." or "..").
_IFNAME = re.compile(r"(?!\.\.?$)[^/:\s]{1,15}")


def _interface(chk: _Checker, item: Any, path: str) -> InterfaceConfig | None:
    if not isinstance(item, dict):
        chk.error(path, "an interface must be a mapping with name and addresses")
        return None
    _check_keys(chk, item, ("name", "addresses", "mtu", "link_local", "qdisc_bypass"), path)
    name = _str(chk, item.get("name"), f"{path}.name")
    if name is not None and not _IFNAME.fullmatch(name):
        chk.error(f"{path}.name", f"{name!r} is not an interface name (1-15 characters, no "
                  "'/', ':' or white space)")
        name = None
    elif name == "lo":
        chk.error(f"{path}.name", "lo is the loopback interface: the router takes its "
                  "interfaces away from the kernel (addresses removed, IPv6 off), which would "
                  "cut the machine's own loopback; name a data interface")
        name = None
    addresses: list[IPv4Interface | IPv6Interface] = []
    raw = item.get("addresses", [])
    if not isinstance(raw, list):
        chk.error(f"{path}.addresses", "expected a list of address/prefixlen")
        raw = []
    for j, a in enumerate(raw):
        apath = f"{path}.addresses[{j}]"
        if not isinstance(a, str) or "/" not in a:
            chk.error(apath, f"expected address/prefixlen, got {a!r}")
            continue
        try:
            iface = ipaddress.ip_interface(a)
        except ValueError as e:
            chk.error(apath, str(e))
            continue
        if iface.ip.is_multicast or iface.ip.is_unspecified or iface.ip.is_loopback:
            chk.error(apath, f"{iface.ip} cannot be an interface address")
            continue
        if iface.version == 4 and iface.network.prefixlen < 31 and iface.ip in (
            iface.network.network_address, iface.network.broadcast_address
        ):
            chk.error(apath, f"{iface.ip} is the network or broadcast address of {iface.network}")
            continue
        addresses.append(iface)
    mtu = item.get("mtu")
    if mtu is not None:
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not MIN_MTU_V4 <= mtu <= 65535:
            chk.error(f"{path}.mtu", f"expected an integer {MIN_MTU_V4}..65535, got {mtu!r}")
            mtu = None
        elif mtu < MIN_MTU_V6 and any(a.version == 6 for a in addresses):
            chk.error(f"{path}.mtu", f"IPv6 needs an MTU of at least {MIN_MTU_V6} (RFC 8200 §5)")
    link_local = None
    ll = item.get("link_local")
    if ll is not None:
        try:
            addr = ipaddress.ip_address(str(ll).split("/")[0])
        except ValueError as e:
            chk.error(f"{path}.link_local", str(e))
        else:
            if isinstance(addr, IPv6Address) and addr.is_link_local:
                link_local = addr
            else:
                chk.error(f"{path}.link_local", f"{ll!r} is not an IPv6 link-local address")
    bypass = item.get("qdisc_bypass", True)
    if not isinstance(bypass, bool):
        chk.error(f"{path}.qdisc_bypass", f"expected true or false, got {bypass!r}")
        bypass = True
    if name is None:
        return None
    return InterfaceConfig(name, addresses, mtu, link_local, bypass)


def _route(chk: _Checker, item: Any, path: str, ifnames: set[str]) -> RouteConfig | None:
    if not isinstance(item, dict):
        chk.error(path, "a route must be a mapping with prefix and via/interface/type")
        return None
    _check_keys(chk, item, ("prefix", "via", "interface", "type"), path)
    ok = True
    prefix: IPv4Network | IPv6Network | None = None
    raw_prefix = item.get("prefix")
    if not isinstance(raw_prefix, str):
        chk.error(f"{path}.prefix", f"expected a prefix like 192.0.2.0/24, got {raw_prefix!r}")
        ok = False
    else:
        try:
            prefix = ipaddress.ip_network(raw_prefix)
        except ValueError as e:
            chk.error(f"{path}.prefix", f"{e} (host bits set?)")
            ok = False
    rtype = item.get("type", "unicast")
    if rtype not in ROUTE_TYPES:
        chk.error(f"{path}.type", f"expected one of {', '.join(ROUTE_TYPES)}, got {rtype!r}")
        ok = False
    via: IPv4Address | IPv6Address | None = None
    via_if: str | None = None
    raw_via = item.get("via")
    if raw_via is not None:
        text = str(raw_via)
        if "%" in text:
            text, via_if = text.split("%", 1)
            if via_if not in ifnames:
                chk.error(f"{path}.via", f"interface {via_if!r} is not configured")
                ok = False
        try:
            via = ipaddress.ip_address(text)
        except ValueError as e:
            chk.error(f"{path}.via", str(e))
            ok = False
        else:
            if isinstance(via, IPv6Address) and via.is_link_local and via_if is None:
                chk.error(f"{path}.via", f"link-local next hop {via} needs %interface")
                ok = False
            elif via_if is not None and not (isinstance(via, IPv6Address) and via.is_link_local):
                chk.error(f"{path}.via", "only a link-local next hop takes %interface")
                ok = False
            if via.is_multicast or via.is_unspecified:
                chk.error(f"{path}.via", f"{via} cannot be a next hop")
                ok = False
            if prefix is not None and via.version != prefix.version:
                chk.error(f"{path}.via", f"IPv{via.version} next hop for an IPv{prefix.version} "
                          "prefix")
                ok = False
    raw_if = item.get("interface")
    if raw_if is not None:
        if raw_if not in ifnames:
            chk.error(f"{path}.interface", f"interface {raw_if!r} is not configured")
            ok = False
        elif via_if is not None and via_if != raw_if:
            chk.error(f"{path}.interface", f"conflicts with the %{via_if} of via")
            ok = False
        else:
            via_if = str(raw_if)
    form = route_form_problem(str(rtype), raw_via is not None, raw_if is not None)
    if form is not None:
        chk.error(path, form)
        ok = False
    if not ok or prefix is None:
        return None
    return RouteConfig(prefix, via, via_if, str(rtype))


def parse_mac(text: str) -> bytes | None:
    """`02:00:00:00:00:09` (or with dashes) as 6 bytes; None if it is not a MAC address."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        return None
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        return None


def _neighbor(chk: _Checker, item: Any, path: str, interfaces: list[InterfaceConfig]
              ) -> NeighborConfig | None:
    if not isinstance(item, dict):
        chk.error(path, "a neighbor must be a mapping with address, mac and interface")
        return None
    _check_keys(chk, item, ("address", "mac", "interface"), path)
    ok = True
    addr: IPv4Address | IPv6Address | None = None
    try:
        addr = ipaddress.ip_address(str(item.get("address")))
    except ValueError as e:
        chk.error(f"{path}.address", str(e))
        ok = False
    else:
        if addr.is_multicast or addr.is_unspecified or addr.is_loopback:
            chk.error(f"{path}.address", f"{addr} cannot be a neighbor")
            ok = False
    raw_mac = item.get("mac")
    mac = parse_mac(raw_mac) if isinstance(raw_mac, str) else None
    if mac is None:
        chk.error(f"{path}.mac", f"expected a MAC address like 02:00:00:00:00:09, got {raw_mac!r}")
        ok = False
    elif mac[0] & 1 or mac == bytes(6):
        chk.error(f"{path}.mac", f"{raw_mac} is not a unicast MAC address")
        ok = False
    name = item.get("interface")
    iface = next((i for i in interfaces if i.name == name), None)
    if iface is None:
        chk.error(f"{path}.interface", f"interface {name!r} is not configured")
        ok = False
    elif addr is not None and any(a.ip == addr for a in iface.addresses):
        chk.error(f"{path}.address", f"{addr} is an address of {iface.name} itself")
        ok = False
    if not ok or addr is None or mac is None or iface is None:
        return None
    return NeighborConfig(addr, mac, iface.name)


def route_form_problem(rtype: str, has_via: bool, has_interface: bool) -> str | None:
    """What is wrong with a route's shape, or None: a unicast route needs a gateway (via) or
    an interface (on-link); blackhole and reject routes take neither. Shared by the router
    config and the topology file, whose node routes have the same keys."""
    if rtype == "unicast" and not has_via and not has_interface:
        return "a unicast route needs via or interface (a gateway, or on-link)"
    if rtype != "unicast" and (has_via or has_interface):
        return f"a {rtype} route takes neither via nor interface"
    return None


def parse_router_config(data: Any, source: str = "<config>", doc: Document | None = None
                        ) -> RouterConfig:
    """Check the parsed YAML `data` (with `doc`, placing each problem in the file it came
    from); raise ConfigError with every problem found."""
    chk = _Checker(source, doc)
    if not isinstance(data, dict):
        chk.error("", "the router configuration must be a mapping")
        raise ConfigError(chk.problems)
    _check_keys(chk, data, ("hostname", "interfaces", "routes", "neighbors", "sysctl"), "")
    hostname = _str(chk, data.get("hostname"), "hostname") or ""

    interfaces: list[InterfaceConfig] = []
    raw_ifs = data.get("interfaces")
    if not isinstance(raw_ifs, list) or not raw_ifs:
        chk.error("interfaces", "expected a non-empty list of interfaces")
        raw_ifs = []
    seen_addr: dict[Any, str] = {}
    for i, item in enumerate(raw_ifs):
        iface = _interface(chk, item, f"interfaces[{i}]")
        if iface is None:
            continue
        if any(x.name == iface.name for x in interfaces):
            chk.error(f"interfaces[{i}].name", f"duplicate interface {iface.name!r}")
            continue
        for j, a in enumerate(iface.addresses):
            if a.ip in seen_addr:
                chk.error(f"interfaces[{i}].addresses[{j}]",
                          f"{a.ip} is already configured on {seen_addr[a.ip]}")
            seen_addr[a.ip] = iface.name
        interfaces.append(iface)
    ifnames = {x.name for x in interfaces}

    routes: list[RouteConfig] = []
    for i, item in enumerate(_list(chk, data, "routes")):
        route = _route(chk, item, f"routes[{i}]", ifnames)
        if route is None:
            continue
        if any(r.prefix == route.prefix for r in routes):
            chk.error(f"routes[{i}].prefix", f"duplicate route for {route.prefix}")
            continue
        routes.append(route)

    neighbors: list[NeighborConfig] = []
    for i, item in enumerate(_list(chk, data, "neighbors")):
        neighbor = _neighbor(chk, item, f"neighbors[{i}]", interfaces)
        if neighbor is None:
            continue
        if any((n.address, n.interface) == (neighbor.address, neighbor.interface)
               for n in neighbors):
            chk.error(f"neighbors[{i}].address",
                      f"duplicate neighbor {neighbor.address} on {neighbor.interface}")
            continue
        neighbors.append(neighbor)

    sysctl: dict[str, int] = {}
    raw_sysctl = data.get("sysctl") or {}
    if not isinstance(raw_sysctl, dict):
        chk.error("sysctl", "expected a mapping of name: value")
        raw_sysctl = {}
    for key, value in raw_sysctl.items():
        try:
            sysctl[str(key)] = parse_value(str(key), value)
        except SysctlError as e:
            chk.error(_sub("sysctl", key), str(e))

    if chk.problems:
        raise ConfigError(chk.problems)
    return RouterConfig(hostname, interfaces, routes, sysctl, neighbors)
