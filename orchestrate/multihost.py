"""Links and management across hosts: what changes when a lab's nodes are on several machines.

- **Point-to-point links** stay UDP socket pairs. Both ends on one host: 127.0.0.1, as on one
  machine. Ends on two hosts: each end binds its own host's tunnel address and sends to the
  peer host's (libvirt `<interface type='udp'>` with `<source address=PEER>` and
  `<local address=SELF>`); `route_links` rewrites the planned NICs accordingly.
- **LAN segments** are a libvirt network per segment on each host that has an endpoint of it:
  an isolated `<network>` whose `<bridge>` libvirt creates on that host, the NICs being
  `<interface type='network'>`. A segment on several hosts is joined by one VXLAN device per
  host (RFC 7348, unicast, one VNI per segment, UDP 4789 between the tunnel addresses) on that
  host's bridge, with one all-zeros FDB entry per other host (head-end replication of
  broadcast and unknown unicast; known unicast is learned). libvirt has no VXLAN, so the device
  is made in the host's kernel: over SSH (`ssh:` in the inventory: `ip link add ... type
  vxlan`, `bridge fdb append`), or through pyroute2 in the host's network namespace when the
  host is one (`netns:`, the simulation). A host with neither is refused for such a segment.
- **MTU**: a guest keeps its link MTU (1500 stays 1500). The tunnels carry the overhead
  instead: a UDP link adds an IP and a UDP header around the guest's Ethernet frame, VXLAN also
  its own header; `check_underlay` refuses a lab whose hosts' tunnel interfaces cannot carry
  the largest crossing frame unfragmented, saying the MTU they need.
- **Management**: each node's SSH forward listens on its host's loopback (never on the
  network). `open_tcp` reaches it through the host: an SSH jump (a `direct-tcpip` channel from
  a session to `ssh:`, whose own host key must already be known) or a socket created inside
  the host's network namespace. The nodes' pinned host keys are the same as on one machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import os
import shlex
import socket
import threading
from typing import Any

from orchestrate.hosts import Host
from orchestrate.links import NicSpec

VXLAN_PORT = 4789  # IANA, RFC 7348 §5
ETHERNET_HEADER = 14
UDP_HEADER = 8
VXLAN_HEADER = 8
LOOPBACK = "127.0.0.1"


class MultiHostError(Exception):
    """A link or a management path across hosts cannot be made."""


def ip_header(address: str) -> int:
    return 40 if ipaddress.ip_address(address).version == 6 else 20


def udp_link_overhead(tunnel: str) -> int:
    """Bytes a UDP link adds around the guest's IP packet: Ethernet + UDP + outer IP."""
    return ETHERNET_HEADER + UDP_HEADER + ip_header(tunnel)


def vxlan_overhead(tunnel: str) -> int:
    """RFC 7348 §4: inner Ethernet + VXLAN + UDP + outer IP."""
    return ETHERNET_HEADER + VXLAN_HEADER + UDP_HEADER + ip_header(tunnel)


def lab_tag(lab: str) -> str:
    return hashlib.sha256(lab.encode()).hexdigest()[:6]


def network_name(lab: str, link: int) -> str:
    """The libvirt network of LAN segment `link` (one per host that has an endpoint)."""
    return f"vrlab-{lab}-seg{link}"


def bridge_name(lab: str, link: int) -> str:
    """The segment's bridge device on each host (15 characters at most, unique per lab)."""
    return f"vl{lab_tag(lab)}s{link}"


def vxlan_name(lab: str, link: int) -> str:
    return f"vx{lab_tag(lab)}s{link}"


def vni(lab: str, link: int) -> int:
    """A VNI per segment (24 bits, RFC 7348 §5), from the lab and segment."""
    digest = hashlib.sha256(f"{lab}\0{link}".encode()).digest()
    return 1 + int.from_bytes(digest[:3], "big") % (2**24 - 2)


def route_links(nics: dict[str, list[NicSpec]], placement: dict[str, str],
                hosts: dict[str, Host]) -> dict[str, list[NicSpec]]:
    """The NICs with every crossing point-to-point link between the hosts' tunnel addresses."""
    peers: dict[tuple[int, str], str] = {}  # (link, node) -> the other end's node
    by_link: dict[int, list[str]] = {}
    for node, node_nics in nics.items():
        for nic in node_nics:
            if nic.kind == "udp":
                by_link.setdefault(nic.link, []).append(node)
    for link, ends in by_link.items():
        if len(ends) == 2:
            peers[(link, ends[0])], peers[(link, ends[1])] = ends[1], ends[0]
        else:  # a node linked to itself: both ends on one host
            for end in ends:
                peers[(link, end)] = end
    routed: dict[str, list[NicSpec]] = {}
    for node, node_nics in nics.items():
        routed[node] = []
        for nic in node_nics:
            if nic.kind == "udp":
                peer = peers[(nic.link, node)]
                here, there = hosts[placement[node]], hosts[placement[peer]]
                if here.name != there.name:
                    nic = dataclasses.replace(nic, local_address=here.tunnel,
                                              remote_address=there.tunnel)
            routed[node].append(nic)
    return routed


@dataclasses.dataclass(frozen=True, slots=True)
class Segment:
    """One LAN segment of a lab: its hosts and the MTU its guests use."""

    link: int
    mtu: int
    hosts: tuple[str, ...]


def lan_segments(nics: dict[str, list[NicSpec]], placement: dict[str, str]) -> list[Segment]:
    seen: dict[int, tuple[int, set[str]]] = {}
    for node, node_nics in nics.items():
        for nic in node_nics:
            if nic.kind == "lan":
                mtu, on = seen.get(nic.link, (0, set()))
                seen[nic.link] = (max(mtu, nic.mtu), on | {placement[node]})
    return [Segment(link, mtu, tuple(sorted(on))) for link, (mtu, on) in sorted(seen.items())]


def crossing_frames(nics: dict[str, list[NicSpec]], placement: dict[str, str],
                    hosts: dict[str, Host]) -> dict[str, tuple[int, str]]:
    """host -> (largest tunnel packet it sends, what it is for), over crossing links only."""
    largest: dict[str, tuple[int, str]] = {}

    def need(host: str, size: int, what: str) -> None:
        if size > largest.get(host, (0, ""))[0]:
            largest[host] = (size, what)

    for node, node_nics in nics.items():
        host = hosts[placement[node]]
        for nic in node_nics:
            if nic.kind == "udp" and nic.local_address != LOOPBACK:
                need(host.name, nic.mtu + udp_link_overhead(host.tunnel),
                     f"{node}:{nic.ifname} (mtu {nic.mtu}, UDP link)")
    for segment in lan_segments(nics, placement):
        if len(segment.hosts) > 1:
            for name in segment.hosts:
                need(name, segment.mtu + vxlan_overhead(hosts[name].tunnel),
                     f"LAN segment links[{segment.link}] (mtu {segment.mtu}, VXLAN)")
    return largest


# -- a host itself: through its network namespace (simulation) or over SSH (a real machine) --


def _require_access(host: Host, what: str) -> None:
    if host.netns is None and host.ssh is None:
        raise MultiHostError(
            f"host {host.name}: {what} needs the host itself, and the inventory gives no way "
            f"to reach it: add ssh: user@host (or netns: for a simulated host)")


def _in_netns(netns: str, work: Any) -> Any:
    """Run `work()` on a thread that entered `netns`; sockets it makes stay in that netns."""
    from pyroute2 import netns as pyroute2_netns

    result: dict[str, Any] = {}

    def body() -> None:
        try:
            pyroute2_netns.setns(netns, flags=0)
            result["value"] = work()
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=body, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


_jumps: dict[str, Any] = {}
_jumps_lock = threading.Lock()


def _jump(host: Host) -> Any:
    """A paramiko client logged in to the host (one per host and process), host key pinned."""
    import paramiko

    assert host.ssh is not None
    with _jumps_lock:
        client = _jumps.get(host.name)
        transport = client.get_transport() if client is not None else None
        if transport is not None and transport.is_active():
            return client
        user, _, address = host.ssh.partition("@")
        client = paramiko.SSHClient()
        known = host.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
        with contextlib.suppress(FileNotFoundError):
            client.load_host_keys(known)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(address, username=user, key_filename=host.ssh_key,
                           look_for_keys=host.ssh_key is None,
                           allow_agent=host.ssh_key is None, timeout=15, banner_timeout=15,
                           auth_timeout=30)
        except (paramiko.SSHException, OSError) as exc:
            client.close()
            raise MultiHostError(f"host {host.name}: ssh {host.ssh}: {exc}") from exc
        _jumps[host.name] = client
        return client


def close_jumps() -> None:
    """Log out of every host reached over SSH (`down` does, once a lab is gone)."""
    with _jumps_lock:
        for client in _jumps.values():
            client.close()
        _jumps.clear()


def run_on_host(host: Host, command: str, timeout: float = 60.0) -> str:
    """Run a shell command on a host reached over SSH; its stdout, or MultiHostError."""
    from orchestrate import ssh

    result = ssh.run(_jump(host), command, timeout=timeout)
    if not result.ok:
        raise MultiHostError(f"host {host.name}: {command}: exit {result.exit_status}: "
                             f"{result.stderr.strip()}")
    return result.stdout


def open_tcp(host: Host, port: int, timeout: float) -> Any:
    """A connection to `port` on the host's loopback, made through the host: a socket from
    inside its network namespace, or an SSH `direct-tcpip` channel (RFC 4254 §7.2)."""
    _require_access(host, "reaching the management forward")
    if host.netns is None:
        transport = _jump(host).get_transport()
        return transport.open_channel("direct-tcpip", (LOOPBACK, port), (LOOPBACK, 0),
                                      timeout=timeout)
    netns = host.netns
    sock: socket.socket = _in_netns(netns, lambda: socket.socket(socket.AF_INET,
                                                                 socket.SOCK_STREAM))
    sock.settimeout(timeout)
    try:
        sock.connect((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    return sock


def proxy_command(host: Host) -> str:
    """An OpenSSH ProxyCommand that reaches the host's loopback (`%p`: the node's port)."""
    _require_access(host, "reaching the management forward")
    if host.netns is not None:
        return f"ip netns exec {host.netns} nc {LOOPBACK} %p"
    assert host.ssh is not None
    options = ["-o StrictHostKeyChecking=yes", "-o BatchMode=yes"]
    if host.known_hosts:
        options.append(f"-o UserKnownHostsFile={shlex.quote(host.known_hosts)}")
    if host.ssh_key:
        options += [f"-i {shlex.quote(host.ssh_key)}", "-o IdentitiesOnly=yes"]
    return f"ssh {' '.join(options)} -W {LOOPBACK}:%p {shlex.quote(host.ssh)}"


def underlay_mtu(host: Host) -> int:
    """The MTU of the host's interface that holds its tunnel address."""
    _require_access(host, "reading the tunnel interface's MTU")
    if host.netns is None:
        for link in json.loads(run_on_host(host, "ip -j address show")):
            if any(a.get("local") == host.tunnel for a in link.get("addr_info", [])):
                return int(link["mtu"])
    else:
        from pyroute2 import NetNS

        with NetNS(host.netns) as ns:
            for addr in ns.get_addr():
                if addr.get_attr("IFA_ADDRESS") == host.tunnel:
                    return int(ns.get_links(addr["index"])[0].get_attr("IFLA_MTU"))
    raise MultiHostError(f"host {host.name}: no interface holds its tunnel address "
                         f"{host.tunnel}")


def check_underlay(hosts: dict[str, Host], largest: dict[str, tuple[int, str]]) -> None:
    """Refuse a lab whose crossing links would not fit the hosts' tunnel interfaces."""
    problems = []
    for name, (size, what) in sorted(largest.items()):
        mtu = underlay_mtu(hosts[name])
        if mtu < size:
            problems.append(f"host {name}: its tunnel interface has MTU {mtu}, but "
                            f"{what} sends {size}-byte packets; raise the interface's MTU to "
                            f"at least {size} (the guests keep their MTU)")
    if problems:
        raise MultiHostError("; ".join(problems))


def create_vxlan(host: Host, name: str, vni_id: int, bridge: str, peers: list[str],
                 mtu: int) -> None:
    """A VXLAN device on the host's bridge, flooding to every peer tunnel address."""
    _require_access(host, "a LAN segment across hosts (VXLAN)")
    if host.netns is None:
        commands = [
            f"ip link add {name} type vxlan id {vni_id} local {host.tunnel} "
            f"dstport {VXLAN_PORT} learning",
            f"ip link set {name} mtu {mtu} master {bridge} up",
            *[f"bridge fdb append 00:00:00:00:00:00 dev {name} dst {shlex.quote(peer)}"
              for peer in peers],
        ]
        run_on_host(host, " && ".join(commands))
        return
    from pyroute2 import NetNS

    with NetNS(host.netns) as ns:
        ns.link("add", ifname=name, kind="vxlan", vxlan_id=vni_id, vxlan_local=host.tunnel,
                vxlan_port=VXLAN_PORT, vxlan_learning=1)
        index = ns.link_lookup(ifname=name)[0]
        found = ns.link_lookup(ifname=bridge)
        if not found:
            raise MultiHostError(f"host {host.name}: bridge {bridge} is missing")
        ns.link("set", index=index, mtu=mtu, master=found[0], state="up")
        for peer in peers:
            ns.fdb("append", ifindex=index, lladdr="00:00:00:00:00:00", dst=peer)


def remove_vxlan(host: Host, name: str) -> None:
    """Delete the device; missing is fine (the namespace or the host already lost it)."""
    _require_access(host, "removing a VXLAN device")
    if host.netns is None:
        run_on_host(host, f"! ip link show {name} >/dev/null 2>&1 || ip link del {name}")
        return
    from pyroute2 import NetNS, netns

    if host.netns not in netns.listnetns():
        return
    with NetNS(host.netns) as ns:
        found = ns.link_lookup(ifname=name)
        if found:
            ns.link("del", index=found[0])
