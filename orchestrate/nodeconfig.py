"""Per-node configuration: what a VM needs to know about itself, on a small disk it boots with.

`vrlab up` writes one config disk per node and attaches it read-only as the VM's second
virtio-blk disk (`/dev/vdb`; the first, `/dev/vda`, is the node's qcow2 overlay on the base
image). The image's PID 1, `images/overlay/usr/sbin/vrlab-init`, mounts it at
`/etc/vrlab/node` and reads it with shell builtins, so everything on it is rendered here, on
the host, into the simplest text the init can use without parsing:

=================  ===========================================================================
file               content
=================  ===========================================================================
format             ``vrlab-config 1``
hostname           the node name
role               ``router``, ``host`` or ``kernel-router`` (a host that forwards: the
                   init treats it as a host; its sysctls turn forwarding on)
interfaces         ``MAC NAME MTU`` per line (MTU ``-`` when unset); the management NIC first,
                   named ``mgmt0``. The init renames each NIC found by MAC to NAME.
sysctl             ``KEY VALUE`` per line, KEY a path under /proc/sys, written after renaming
                   and before any link is up.
net.batch          an ``ip -batch`` file: links up with their MTU, the management address, and
                   on hosts the kernel addresses (IPv6 with ``nodad``) and routes.
authorized_keys    the lab's public key(s) for root
ssh_host_key       the node's pre-generated OpenSSH private host key (pinned by the lab)
ssh_host_key.pub   its public half
router.yaml        routers only: the appliance config of DESIGN.md "Running it"
restore-macs       snapshot boot only: ``SNAPSHOT-MAC NODE-MAC`` per line; the init gives each
                   NIC restored with the snapshot's MAC the node's (orchestrate/snapshot.py)
node.json          the whole spec minus the private key, for people and tools
=================  ===========================================================================

The disk is a raw ext4 image without a journal, made with ``mke2fs -d`` (no root, no mounts).

Management network: the first NIC is QEMU user networking with ``restrict=on`` on the
documentation subnet 203.0.113.248/29 (gateway .249, DNS .250); the guest takes
203.0.113.254/29 statically (no DHCP wait), and a host-forward maps 127.0.0.1:PORT to its
port 22. See `mgmt_netdev_arg` and `mgmt_device_arg`.

Hosts get sysctls that save boot time and surprises (no IPv6 DAD wait); a kernel-router is
configured as a host plus ip_forward and IPv6 forwarding, then its own (Linux) sysctls.
Routers get kernel forwarding off, and on their data interfaces kernel IPv6 disabled, no
kernel addresses and ARP answers off (arp_ignore=8), so that only the appliance answers there.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from appliance.config import ROUTE_TYPES
from orchestrate.choices import ROLES
from orchestrate.links import MGMT_IFNAME
from orchestrate.names import name_problem

if TYPE_CHECKING:
    from orchestrate.topology import Node

FORMAT = "vrlab-config 1"
MGMT_NETWORK = ipaddress.IPv4Network("203.0.113.248/29")
MGMT_HOST = ipaddress.IPv4Address("203.0.113.249")  # slirp's gateway (the host side)
MGMT_DNS = ipaddress.IPv4Address("203.0.113.250")
MGMT_DHCP_START = ipaddress.IPv4Address("203.0.113.252")
MGMT_GUEST = ipaddress.IPv4Interface("203.0.113.254/29")
MGMT_NETDEV_ID = "mgmt"
CONFIG_DISK_MIB = 4
CONFIG_DISK_LABEL = "vrlabcfg"

_IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_SYSCTL_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")
_RESERVED_IFNAMES = ("lo", MGMT_IFNAME)


class NodeConfigError(ValueError):
    """The per-node configuration cannot be rendered (names the field at fault)."""


@dataclass(frozen=True, slots=True)
class DataInterface:
    """A data NIC, found in the guest by `mac` and renamed to `name`."""

    name: str
    mac: str
    addresses: tuple[str, ...] = ()  # interface addresses, "198.51.100.2/26"; hosts only
    mtu: int | None = None


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """A route in a host node's kernel table."""

    prefix: str
    via: str | None = None  # gateway; "fe80::1%eth1" names the interface of a link-local one
    dev: str | None = None
    type: str = "unicast"  # unicast | blackhole | reject (ip route "prohibit")


@dataclass(frozen=True, slots=True)
class NodeBootSpec:
    """Everything the image's init needs to bring one node up."""

    hostname: str
    role: str  # "router" | "host"
    mgmt_mac: str
    authorized_keys: tuple[str, ...]
    host_key_private: str  # OpenSSH private key text
    host_key_public: str  # "ssh-ed25519 AAAA... comment"
    interfaces: tuple[DataInterface, ...] = ()
    routes: tuple[KernelRoute, ...] = ()
    sysctls: Mapping[str, str | int] = field(default_factory=dict)  # Linux keys, extra
    router_config: Mapping[str, Any] | None = None  # routers: DESIGN.md router YAML
    mgmt_address: str = str(MGMT_GUEST)
    # Snapshot boot: node MAC -> the MAC the NIC has in the saved state (orchestrate.snapshot)
    restore_macs: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_node(
        cls,
        node: Node,
        *,
        mgmt_mac: str,
        interface_macs: Mapping[str, str],
        interface_mtus: Mapping[str, int | None] | None = None,
        authorized_keys: Sequence[str],
        host_key_private: str,
        host_key_public: str,
    ) -> NodeBootSpec:
        """The spec for a topology node; MACs (and link MTUs) come from the lab's NIC plan.

        An interface's own `mtu` wins over the link's. A host interface with a configured
        `link_local` gets that address instead of the kernel's EUI-64 one.
        """
        mtus = interface_mtus or {}
        interfaces: list[DataInterface] = []
        sysctls: dict[str, str | int] = {}
        kernel = node.role != "router"  # the Linux kernel has the addresses and routes
        if node.role == "kernel-router":
            sysctls.update(node.sysctl)  # Linux names, checked by the topology
        for iface in node.interfaces:
            if iface.name not in interface_macs:
                raise NodeConfigError(f"{node.name}: interface {iface.name} has no MAC")
            addresses = [str(a) for a in iface.addresses]
            if kernel and iface.link_local is not None:
                addresses.insert(0, f"{iface.link_local}/64")
                sysctls[f"net/ipv6/conf/{iface.name}/addr_gen_mode"] = 1
            interfaces.append(DataInterface(
                name=iface.name,
                mac=interface_macs[iface.name],
                addresses=tuple(addresses) if kernel else (),
                mtu=iface.mtu if iface.mtu is not None else mtus.get(iface.name),
            ))
        routes: list[KernelRoute] = []
        if kernel:
            for route in node.routes:
                routes.append(KernelRoute(
                    prefix=str(route.prefix),
                    via=str(route.via) if route.via is not None else None,
                    dev=route.interface,
                    type=route.type,
                ))
        return cls(
            hostname=node.name,
            role=node.role,
            mgmt_mac=mgmt_mac,
            authorized_keys=tuple(authorized_keys),
            host_key_private=host_key_private,
            host_key_public=host_key_public,
            interfaces=tuple(interfaces),
            routes=tuple(routes),
            sysctls=sysctls,
            router_config=node.router_config() if node.role == "router" else None,
        )


# -- QEMU arguments for the lab ---------------------------------------------------------------


def management_netdev_options(port: int) -> str:
    """`-netdev user,id=...,` options after the id: restricted slirp, ssh on 127.0.0.1:port."""
    if not 0 < port < 65536:
        raise NodeConfigError(f"management port {port} out of range")
    return (
        f"restrict=on,net={MGMT_NETWORK},host={MGMT_HOST},dns={MGMT_DNS},"
        f"dhcpstart={MGMT_DHCP_START},hostfwd=tcp:127.0.0.1:{port}-{MGMT_GUEST.ip}:22"
    )


def mgmt_netdev_arg(port: int, netdev_id: str = MGMT_NETDEV_ID) -> str:
    """The value of QEMU's `-netdev` for the management NIC."""
    return f"user,id={netdev_id},{management_netdev_options(port)}"


def mgmt_device_arg(mac: str, netdev_id: str = MGMT_NETDEV_ID) -> str:
    """The value of QEMU's `-device` for the management NIC (give it first, before data NICs)."""
    return f"virtio-net-pci,netdev={netdev_id},mac={_check_mac(mac, 'mgmt_mac')}"


def config_drive_arg(path: Path) -> str:
    """The value of QEMU's `-drive` for the config disk: the second virtio disk, read-only."""
    return f"file={path},if=virtio,format=raw,readonly=on"


# -- rendering --------------------------------------------------------------------------------


def render_files(spec: NodeBootSpec) -> dict[str, str]:
    """The config disk's files, name -> text. Raises NodeConfigError on any invalid field."""
    _validate(spec)
    files = {
        "format": FORMAT + "\n",
        "hostname": spec.hostname + "\n",
        "role": spec.role + "\n",
        "interfaces": _render_interfaces(spec),
        "sysctl": "".join(f"{key} {value}\n" for key, value in _sysctls(spec).items()),
        "net.batch": "".join(line + "\n" for line in _net_batch(spec)),
        "authorized_keys": "".join(key.strip() + "\n" for key in spec.authorized_keys),
        "ssh_host_key": spec.host_key_private.strip() + "\n",
        "ssh_host_key.pub": spec.host_key_public.strip() + "\n",
        "node.json": json.dumps(_public_view(spec), indent=2, sort_keys=True) + "\n",
    }
    if spec.role == "router":
        files["router.yaml"] = yaml.safe_dump(dict(spec.router_config or {}), sort_keys=False)
    if spec.restore_macs:
        files["restore-macs"] = "".join(
            f"{_check_mac(old, 'restore_macs')} {_check_mac(new, 'restore_macs')}\n"
            for new, old in spec.restore_macs.items())
    return files


def write_config_disk(spec: NodeBootSpec, path: Path) -> Path:
    """Write the node's config disk (raw ext4) to `path` atomically and return `path`."""
    files = render_files(spec)
    mke2fs = shutil.which("mke2fs") or shutil.which("mkfs.ext4")
    if mke2fs is None:
        raise NodeConfigError("mke2fs not found (apt-get install e2fsprogs)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with tempfile.TemporaryDirectory(prefix="vrlab-config-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        for name, text in files.items():
            target = root / name
            target.write_text(text)
            target.chmod(0o600 if name == "ssh_host_key" else 0o644)
        partial.unlink(missing_ok=True)
        result = subprocess.run(
            [mke2fs, "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-L", CONFIG_DISK_LABEL,
             "-E", "root_owner=0:0", "-d", str(root), str(partial), f"{CONFIG_DISK_MIB}M"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
        )
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            raise NodeConfigError(f"mke2fs failed: {result.stderr.strip()}")
    partial.replace(path)
    return path


def _validate(spec: NodeBootSpec) -> None:
    problem = name_problem(spec.hostname, "hostname")
    if problem is not None:
        raise NodeConfigError(problem)
    if spec.role not in ROLES:
        raise NodeConfigError(f"role {spec.role!r}: expected one of {', '.join(ROLES)}")
    _check_mac(spec.mgmt_mac, "mgmt_mac")
    ipaddress.IPv4Interface(spec.mgmt_address)
    names: set[str] = set()
    macs = {spec.mgmt_mac.lower()}
    for iface in spec.interfaces:
        where = f"interfaces[{iface.name}]"
        if not _IFNAME_RE.match(iface.name) or iface.name in _RESERVED_IFNAMES \
                or iface.name.startswith("vrlabtmp"):
            raise NodeConfigError(f"{where}: {iface.name!r} is not a usable interface name")
        if iface.name in names:
            raise NodeConfigError(f"{where}: duplicate interface name")
        names.add(iface.name)
        mac = _check_mac(iface.mac, f"{where}.mac")
        if mac in macs:
            raise NodeConfigError(f"{where}: MAC {mac} used twice")
        macs.add(mac)
        if iface.mtu is not None and not 68 <= iface.mtu <= 65535:
            raise NodeConfigError(f"{where}: mtu {iface.mtu} out of range")
        for address in iface.addresses:
            try:
                ipaddress.ip_interface(address)
            except ValueError as exc:
                raise NodeConfigError(f"{where}: {exc}") from None
        if iface.addresses and spec.role == "router":
            raise NodeConfigError(
                f"{where}: router interfaces get no kernel addresses (the appliance owns them)")
    for index, route in enumerate(spec.routes):
        where = f"routes[{index}]"
        if spec.role == "router":
            raise NodeConfigError(f"{where}: routers take routes from router_config")
        if route.type not in ROUTE_TYPES:
            raise NodeConfigError(f"{where}: type {route.type!r}")
        try:
            ipaddress.ip_network(route.prefix)
            if route.via is not None:
                ipaddress.ip_address(route.via.split("%", 1)[0])
        except ValueError as exc:
            raise NodeConfigError(f"{where}: {exc}") from None
        dev = _route_dev(route)
        if dev is not None and dev not in names:
            raise NodeConfigError(f"{where}: no interface {dev!r}")
        if route.type == "unicast" and route.via is None and dev is None:
            raise NodeConfigError(f"{where}: a unicast route needs `via` or an interface")
    for key, value in spec.sysctls.items():
        if not _SYSCTL_KEY_RE.match(key) or ".." in key or " " in str(value) \
                or "\n" in str(value) or str(value) == "":
            raise NodeConfigError(f"sysctl {key!r}={value!r} is not a usable sysctl")
    if spec.role == "router" and spec.router_config is None:
        raise NodeConfigError("a router needs router_config")
    if not spec.authorized_keys:
        raise NodeConfigError("authorized_keys is empty: nobody could log in")
    if "PRIVATE KEY" not in spec.host_key_private:
        raise NodeConfigError("host_key_private is not an OpenSSH private key")
    if len(spec.host_key_public.split()) < 2:
        raise NodeConfigError("host_key_public is not an OpenSSH public key line")


def _check_mac(mac: str, where: str) -> str:
    mac = mac.lower()
    if not _MAC_RE.match(mac):
        raise NodeConfigError(f"{where}: {mac!r} is not a MAC address (xx:xx:xx:xx:xx:xx)")
    return mac


def _render_interfaces(spec: NodeBootSpec) -> str:
    lines = [f"{spec.mgmt_mac.lower()} {MGMT_IFNAME} -"]
    for iface in spec.interfaces:
        mtu = "-" if iface.mtu is None else str(iface.mtu)
        lines.append(f"{iface.mac.lower()} {iface.name} {mtu}")
    return "".join(line + "\n" for line in lines)


def sysctl_path(key: str) -> str:
    """A sysctl name as a path under /proc/sys: dots become slashes unless it has slashes.

    Interface names may contain dots, so keys naming one should be written with slashes.
    """
    return key if "/" in key else key.replace(".", "/")


def _sysctls(spec: NodeBootSpec) -> dict[str, str]:
    values: dict[str, str | int] = {f"net/ipv6/conf/{MGMT_IFNAME}/disable_ipv6": 1}
    if spec.role == "router":
        values["net/ipv4/ip_forward"] = 0
        values["net/ipv6/conf/all/forwarding"] = 0
        for iface in spec.interfaces:
            values[f"net/ipv6/conf/{iface.name}/disable_ipv6"] = 1
            values[f"net/ipv4/conf/{iface.name}/arp_ignore"] = 8
    else:
        if spec.role == "kernel-router":  # the reference router: Linux forwards
            values["net/ipv4/ip_forward"] = 1
            values["net/ipv6/conf/all/forwarding"] = 1
        # Addresses are given with nodad too; this also covers addresses added by hand later.
        values["net/ipv6/conf/all/accept_dad"] = 0
        values["net/ipv6/conf/default/accept_dad"] = 0
        for iface in spec.interfaces:
            values[f"net/ipv6/conf/{iface.name}/accept_dad"] = 0
    for key, value in spec.sysctls.items():
        values[sysctl_path(key)] = value
    return {key: str(value) for key, value in values.items()}


def _route_dev(route: KernelRoute) -> str | None:
    if route.dev is not None:
        return route.dev
    if route.via is not None and "%" in route.via:
        return route.via.split("%", 1)[1]
    return None


def _net_batch(spec: NodeBootSpec) -> list[str]:
    lines = [
        "link set dev lo up",
        f"address add {spec.mgmt_address} dev {MGMT_IFNAME}",
        f"link set dev {MGMT_IFNAME} up",
    ]
    for iface in spec.interfaces:
        mtu = f" mtu {iface.mtu}" if iface.mtu is not None else ""
        lines.append(f"link set dev {iface.name}{mtu} up")
    for iface in spec.interfaces:
        for address in iface.addresses:
            nodad = " nodad" if ipaddress.ip_interface(address).version == 6 else ""
            lines.append(f"address add {address} dev {iface.name}{nodad}")
    for route in spec.routes:
        if route.type == "blackhole":
            lines.append(f"route add blackhole {route.prefix}")
            continue
        if route.type == "reject":
            lines.append(f"route add prohibit {route.prefix}")
            continue
        words = ["route", "add", route.prefix]
        if route.via is not None:
            words += ["via", route.via.split("%", 1)[0]]
        dev = _route_dev(route)
        if dev is not None:
            words += ["dev", dev]
        lines.append(" ".join(words))
    return lines


def _public_view(spec: NodeBootSpec) -> dict[str, Any]:
    data = asdict(spec)
    del data["host_key_private"]
    data["sysctls"] = dict(spec.sysctls)
    data["router_config"] = dict(spec.router_config) if spec.router_config is not None else None
    return data
