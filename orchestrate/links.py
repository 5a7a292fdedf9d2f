"""Data links between lab nodes: UDP socket pairs and LAN bridges.

Point-to-point links (two endpoints) are a pair of UDP sockets on 127.0.0.1, one per end, each
sending to the other's port: QEMU's `-netdev socket,udp=REMOTE,localaddr=LOCAL` (libvirt's
`<interface type='udp'>` is the same thing). They need no root and no host network objects.

Impairments (delay, loss... on the link: orchestrate.topology.impairment) do not change how a
link is carried: they are netem qdiscs inside the guests (orchestrate.netem), on each sender's
egress. A NIC's `netem` is what its own egress does; `impaired` marks every NIC of a link the
topology impairs (a vrlab-router sends through the qdisc there, so `vrlab link set` can change
it at run time).

LAN segments (three or more endpoints) are a Linux bridge inside a network namespace the lab
owns (`vrlab-<lab>`), one tap per endpoint in that namespace. QEMU itself stays in the root
namespace (its management host-forward must listen on the host's 127.0.0.1): vrlab enters the
lab namespace on its own thread just long enough to open `/dev/net/tun` with the tap's name
(TUNSETIFF creates the tap in the caller's namespace), then passes that file descriptor to QEMU
(`-netdev tap,fd=N`). The tap is not persistent, so it disappears when QEMU exits; the bridge
and anything else disappear with the namespace. Two labs never share a namespace, so bridge and
tap names only need to be unique inside one lab.

MAC addresses are deterministic and lab-unique: 52:54:00 (locally administered) followed by
24 bits of SHA-256 over lab, node and interface, re-hashed on the rare collision in a lab.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict

if TYPE_CHECKING:
    from orchestrate.topology import Topology

MGMT_IFNAME = "mgmt0"
DEFAULT_MTU = 1500

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000


class LinkError(Exception):
    """A link could not be planned or created."""


NicKind = Literal["udp", "lan", "none"]
"""udp: one end of a point-to-point UDP pair; lan: a tap on a LAN bridge; none: an interface
on no link (an empty QEMU hub)."""


class NicJson(TypedDict):
    """A NicSpec as the lab journal (`record.json`) keeps it; the node is the key above it."""

    ifname: str
    mac: str
    mtu: int
    link: int
    kind: NicKind
    local_port: int | None
    remote_port: int | None
    netns: str | None
    bridge: str | None
    tap: str | None
    netem: NotRequired[dict[str, str] | None]
    impaired: NotRequired[bool]
    local_address: NotRequired[str]
    remote_address: NotRequired[str]


@dataclass(frozen=True, slots=True)
class NicSpec:
    """One data NIC of one node, and how its far side is wired."""

    node: str
    ifname: str
    mac: str
    mtu: int
    link: int  # index into topology.links; -1 for an interface on no link
    kind: NicKind
    local_port: int | None = None
    remote_port: int | None = None
    netns: str | None = None
    bridge: str | None = None
    tap: str | None = None
    netem: dict[str, str] | None = None  # netem on this NIC's egress in the guest (topology
    # units): what its peer receives on a point-to-point link, every member on a LAN
    impaired: bool = False  # on a link the topology impairs (orchestrate.netem)
    local_address: str = "127.0.0.1"  # a UDP link's own end (a host's tunnel address if it
    remote_address: str = "127.0.0.1"  # crosses hosts: orchestrate.multihost.route_links)

    def to_json(self) -> NicJson:
        return {
            "ifname": self.ifname, "mac": self.mac, "mtu": self.mtu, "link": self.link,
            "kind": self.kind, "local_port": self.local_port, "remote_port": self.remote_port,
            "netns": self.netns, "bridge": self.bridge, "tap": self.tap, "netem": self.netem,
            "impaired": self.impaired,
            "local_address": self.local_address, "remote_address": self.remote_address,
        }

    @classmethod
    def from_json(cls, node: str, data: NicJson) -> NicSpec:
        return cls(node=node, **data)


def mac_address(lab: str, node: str, ifname: str, salt: int = 0) -> str:
    digest = hashlib.sha256(f"{lab}\0{node}\0{ifname}\0{salt}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


class MacAllocator:
    """Deterministic MACs, unique within one lab."""

    def __init__(self, lab: str) -> None:
        self.lab = lab
        self.used: set[str] = set()

    def mac(self, node: str, ifname: str) -> str:
        for salt in range(1000):
            mac = mac_address(self.lab, node, ifname, salt)
            # 52:54:00:12:34:xx are QEMU's own defaults; never hand those out.
            if mac not in self.used and not mac.startswith("52:54:00:12:34:"):
                self.used.add(mac)
                return mac
        raise LinkError(f"no free MAC for {node}:{ifname}")


def netns_name(lab: str) -> str:
    return f"vrlab-{lab}"


def udp_port_purpose(node: str, ifname: str) -> str:
    return f"udp:{node}:{ifname}"


def link_endpoints(topology: Topology) -> list[list[tuple[str, str]]]:
    return [[(ep.node, ep.ifname) for ep in link.endpoints] for link in topology.links]


def udp_purposes(topology: Topology) -> list[str]:
    """Port purposes every point-to-point endpoint needs."""
    purposes = []
    for endpoints in link_endpoints(topology):
        if len(endpoints) == 2:
            purposes += [udp_port_purpose(node, ifname) for node, ifname in endpoints]
    return purposes


def _interface_mtu(topology: Topology, node: str, ifname: str) -> int | None:
    for iface in topology.nodes[node].interfaces:
        if iface.name == ifname:
            return iface.mtu
    return None


def plan_nics(topology: Topology, lab: str, ports: dict[str, int], macs: MacAllocator,
              ) -> dict[str, list[NicSpec]]:
    """Every node's data NICs, in the order of the node's interfaces in the topology."""
    from orchestrate.netem import egress
    from orchestrate.topology.impairment import to_yaml as impairment_yaml  # imports this

    wiring: dict[tuple[str, str], NicSpec] = {}
    for index, link in enumerate(topology.links):
        endpoints = [(ep.node, ep.ifname) for ep in link.endpoints]
        # The topology refused what egress cannot do (a per-endpoint value on a LAN).
        shaped = egress([link.impairment_at(node) for node, _ in endpoints])
        for position, (node, ifname) in enumerate(endpoints):
            mtu = link.mtu or _interface_mtu(topology, node, ifname) or DEFAULT_MTU
            mac = macs.mac(node, ifname)
            own = shaped[position]
            netem = impairment_yaml(own) if own else None
            if len(endpoints) == 2:
                peer_node, peer_if = endpoints[1 - position]
                nic = NicSpec(
                    node, ifname, mac, mtu, index, "udp",
                    local_port=ports[udp_port_purpose(node, ifname)],
                    remote_port=ports[udp_port_purpose(peer_node, peer_if)],
                    netem=netem, impaired=link.impaired,
                )
            else:
                nic = NicSpec(
                    node, ifname, mac, mtu, index, "lan",
                    netns=netns_name(lab), bridge=f"br{index}", tap=f"t{index}p{position}",
                    netem=netem, impaired=link.impaired,
                )
            wiring[(node, ifname)] = nic
    result: dict[str, list[NicSpec]] = {}
    for name, spec in topology.nodes.items():
        nics = []
        for iface in spec.interfaces:
            wired = wiring.get((name, iface.name))
            if wired is None:
                mtu = iface.mtu or DEFAULT_MTU
                wired = NicSpec(name, iface.name, macs.mac(name, iface.name), mtu, -1, "none")
            nics.append(wired)
        result[name] = nics
    return result


def lan_bridges(nics: Iterable[NicSpec]) -> dict[str, int]:
    """bridge name -> MTU, for every LAN segment among `nics`."""
    bridges: dict[str, int] = {}
    for nic in nics:
        if nic.kind == "lan" and nic.bridge:
            bridges[nic.bridge] = max(bridges.get(nic.bridge, 0), nic.mtu)
    return bridges


# -- namespace, bridge and tap operations (root only; used when a lab has LAN segments) --------


def create_namespace(name: str) -> None:
    from pyroute2 import netns

    if name in netns.listnetns():
        raise LinkError(f"network namespace {name} already exists (another lab? `vrlab down`)")
    netns.create(name)
    from pyroute2 import NetNS

    with NetNS(name) as ns:
        lo = ns.link_lookup(ifname="lo")
        if lo:
            ns.link("set", index=lo[0], state="up")


def namespace_exists(name: str) -> bool:
    from pyroute2 import netns

    return name in netns.listnetns()


def remove_namespace(name: str) -> None:
    """Delete the namespace; its bridges and taps go with it. Missing is fine."""
    from pyroute2 import netns

    if name in netns.listnetns():
        netns.remove(name)


def create_bridge(namespace: str, bridge: str, mtu: int) -> None:
    from pyroute2 import NetNS

    with NetNS(namespace) as ns:
        ns.link("add", ifname=bridge, kind="bridge")
        index = ns.link_lookup(ifname=bridge)[0]
        ns.link("set", index=index, mtu=mtu, state="up")


def open_tap(namespace: str, tap: str, bridge: str, mtu: int) -> int:
    """Create tap `tap` inside `namespace` on `bridge`; return its fd (owned by the caller).

    The fd keeps the tap alive; hand it to QEMU and close the caller's copy afterwards.
    """
    from pyroute2 import NetNS, netns

    saved = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        netns.setns(namespace, flags=0)
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR)
            try:
                ifr = struct.pack("16sH", tap.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
                fcntl.ioctl(fd, TUNSETIFF, ifr)
            except OSError:
                os.close(fd)
                raise
        finally:
            netns.setns(saved, flags=0)
    finally:
        os.close(saved)
    try:
        with NetNS(namespace) as ns:
            index = ns.link_lookup(ifname=tap)[0]
            master = ns.link_lookup(ifname=bridge)[0]
            ns.link("set", index=index, master=master, mtu=mtu, state="up")
    except Exception:
        os.close(fd)
        raise
    return fd


def namespace_links(namespace: str) -> list[str]:
    from pyroute2 import NetNS

    with NetNS(namespace) as ns:
        return [str(link.get_attr("IFLA_IFNAME")) for link in ns.get_links()]
