"""The machines a lab runs on (the inventory) and which node goes where (placement).

An inventory is a mapping of host name to host, either a topology's `hosts:` section or a file
given with `vrlab up --hosts FILE` (the same mapping under a top-level `hosts:`), so one topology
runs anywhere:

    hosts:
      alpha: {uri: "qemu+ssh://root@alpha.example/system", tunnel: 198.51.100.10}
      beta:  {uri: "qemu+ssh://root@beta.example/system",  tunnel: 198.51.100.11}

- `uri`: the libvirt connection URI; vrlab drives the host only through it.
- `tunnel`: the host's own address that its UDP links and VXLAN segments use (each host must
  reach every other host's tunnel address, UDP, the link ports and 4789).
- `ssh` (optional): `user@host`, how vrlab reaches the host itself: the SSH jump to each
  node's management forward on the host's loopback, and `ip link` for VXLAN devices. With
  `ssh_key` (default: the agent and ~/.ssh keys) and `known_hosts` (default ~/.ssh/known_hosts;
  the host's key must be in it: nothing is accepted unseen).
- `netns` (optional, instead of `ssh`): the host is a network namespace on this machine (the
  simulation of orchestrate.simhosts); vrlab reaches its loopback and kernel directly.
- `memory` (MiB or "32G") and `vcpus` (optional): cap what vrlab places there, below what the
  host reports.

A node may pin `host: NAME`. The others are placed by `place`: largest memory first, each on
the host with the most memory left that still fits its memory and vCPUs (so a lab spreads
evenly and the biggest nodes are placed while there is room). A host's capacity is its free
memory (libvirt `getFreeMemory`) less a reserve for the host itself, and its CPU count
(`getInfo`) times `VCPU_OVERCOMMIT`: lab nodes mostly idle, and under TCG ten 1-vCPU nodes on
two cores boot fine. When the lab does not fit, `place` refuses with every node that did not
fit and what each host had left; nothing has started yet.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HOST_KEYS = ("uri", "tunnel", "netns", "ssh", "ssh_key", "known_hosts", "memory", "vcpus")
HOST_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
URI_RE = re.compile(r"^[a-z0-9+]+://[^\s]*/(system|session)(\?[^\s]*)?$")
NETNS_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SSH_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}@[A-Za-z0-9.-]+$")
MEMORY_RE = re.compile(r"^\s*(\d+)\s*([MG])?(i?B)?\s*$", re.IGNORECASE)
VCPU_OVERCOMMIT = 8
MEMORY_RESERVE_MIB = 1024  # left to the host: libvirtd, QEMU's own overhead, page cache
QEMU_OVERHEAD_MIB = 64  # what one QEMU process takes beyond its guest's memory (TCG buffers)

Report = Callable[[tuple[Any, ...], str, str, bool], None]
"""report(path, message, hint, key): one problem at a place in the YAML document."""


class PlacementError(Exception):
    """The lab does not fit on the hosts (or names a host the inventory lacks)."""


@dataclass(frozen=True, slots=True)
class Host:
    """One machine of the inventory (see the module docstring for each field)."""

    name: str
    uri: str
    tunnel: str
    netns: str | None = None
    memory: int | None = None  # MiB cap
    vcpus: int | None = None
    ssh: str | None = None  # user@host: reach the host itself over SSH
    ssh_key: str | None = None
    known_hosts: str | None = None

    @property
    def tunnel_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.tunnel)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"uri": self.uri, "tunnel": self.tunnel}
        for key in ("netns", "memory", "vcpus", "ssh", "ssh_key", "known_hosts"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> Host:
        return cls(name=name, uri=str(data["uri"]), tunnel=str(data["tunnel"]),
                   netns=data.get("netns"), memory=data.get("memory"), vcpus=data.get("vcpus"),
                   ssh=data.get("ssh"), ssh_key=data.get("ssh_key"),
                   known_hosts=data.get("known_hosts"))


def inventory_to_json(hosts: dict[str, Host]) -> dict[str, dict[str, Any]]:
    return {name: host.to_json() for name, host in hosts.items()}


def inventory_from_json(data: dict[str, Any]) -> dict[str, Host]:
    return {name: Host.from_json(name, body) for name, body in data.items()}


def _memory_mib(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value > 0 else None
    if isinstance(value, str) and (m := MEMORY_RE.match(value)):
        return int(m.group(1)) * (1024 if (m.group(2) or "M").upper() == "G" else 1)
    return None


def validate_inventory(raw: Any, path: tuple[Any, ...], report: Report) -> dict[str, Host]:
    """The hosts of a `hosts:` mapping at `path`; every problem goes to `report`, placed."""
    if not isinstance(raw, dict) or not raw:
        report(path, "hosts must be a non-empty mapping of name: {uri, tunnel}",
               "e.g. hosts: {alpha: {uri: \"qemu+ssh://root@alpha/system\", "
               "tunnel: 198.51.100.10}}", False)
        return {}
    hosts: dict[str, Host] = {}
    tunnels: dict[str, str] = {}
    for name, body in raw.items():
        where = (*path, name)
        if not isinstance(name, str) or not HOST_NAME_RE.match(name):
            report(where, f"host name {name!r} is not a valid name",
                   "lowercase letters, digits and '-', at most 32 characters", True)
            continue
        if not isinstance(body, dict):
            report(where, "a host must be a mapping with uri: and tunnel:",
                   "e.g. {uri: \"qemu+ssh://root@alpha/system\", tunnel: 198.51.100.10}", False)
            continue
        for key in body:
            if key not in HOST_KEYS:
                report((*where, key), f"unknown host key {key!r}",
                       f"expected one of: {', '.join(HOST_KEYS)}", True)
        uri = body.get("uri")
        ok = True
        if not isinstance(uri, str) or not URI_RE.match(uri):
            report((*where, "uri"), f"uri must be a libvirt URI, got {uri!r}",
                   "e.g. qemu+ssh://root@alpha.example/system or qemu+tcp://ADDRESS/system",
                   False)
            ok = False
        tunnel = body.get("tunnel")
        try:
            address = ipaddress.ip_address(str(tunnel)) if tunnel is not None else None
        except ValueError:
            address = None
        if address is None or address.is_unspecified or address.is_multicast:
            report((*where, "tunnel"), f"tunnel must be the host's unicast IP address, "
                   f"got {tunnel!r}", "the address its UDP links and VXLAN segments use",
                   False)
            ok = False
        elif str(address) in tunnels:
            report((*where, "tunnel"), f"tunnel {address} is also host "
                   f"{tunnels[str(address)]}'s", "every host needs its own address", False)
            ok = False
        netns = body.get("netns")
        if netns is not None and (not isinstance(netns, str) or not NETNS_RE.match(netns)):
            report((*where, "netns"), f"netns must be a network namespace name, got {netns!r}",
                   "", False)
            ok = False
        ssh = body.get("ssh")
        if ssh is not None and (not isinstance(ssh, str) or not SSH_RE.match(ssh)):
            report((*where, "ssh"), f"ssh must be user@host, got {ssh!r}", "e.g. root@alpha",
                   False)
            ok = False
        if ssh is not None and netns is not None:
            report((*where, "ssh"), "a host is reached by ssh: or is a netns:, not both", "",
                   False)
            ok = False
        files = {}
        for key in ("ssh_key", "known_hosts"):
            value = body.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                report((*where, key), f"{key} must be a file path, got {value!r}", "", False)
                ok = False
            files[key] = value
        memory = None
        if "memory" in body:
            memory = _memory_mib(body["memory"])
            if memory is None:
                report((*where, "memory"), f"memory must be MiB or like \"32G\", got "
                       f"{body['memory']!r}", "", False)
                ok = False
        vcpus = body.get("vcpus")
        if vcpus is not None and (not isinstance(vcpus, int) or isinstance(vcpus, bool)
                                  or not 1 <= vcpus <= 4096):
            report((*where, "vcpus"), f"vcpus must be an integer 1..4096, got {vcpus!r}",
                   "", False)
            ok = False
        if ok:
            assert address is not None and isinstance(uri, str)
            tunnels[str(address)] = name
            hosts[name] = Host(name, uri, str(address), netns, memory, vcpus, ssh,
                               files["ssh_key"], files["known_hosts"])
    return hosts


def load_inventory(path: str) -> dict[str, Host]:
    """A `--hosts FILE`: a YAML file with a top-level `hosts:` mapping.

    Raises orchestrate.topology's TopologyError with every problem, placed at file:line:col.
    """
    from appliance.yamlsource import YamlSourceError, load_file
    from orchestrate.topology import TopologyError
    from orchestrate.topology.problems import Reporter

    try:
        doc = load_file(path)
    except YamlSourceError as exc:
        raise TopologyError(exc.problems) from None
    reporter = Reporter(doc, path)

    def report(where: tuple[Any, ...], message: str, hint: str, key: bool) -> None:
        reporter.error(where, message, hint, key=key)

    data = doc.data
    hosts: dict[str, Host] = {}
    if not isinstance(data, dict) or "hosts" not in data:
        report((), "an inventory file is a mapping with hosts:",
               "hosts: {alpha: {uri: ..., tunnel: ...}}", False)
    else:
        for key in data:
            if key != "hosts":
                report((key,), f"unknown inventory key {key!r}", "expected hosts: only", True)
        hosts = validate_inventory(data["hosts"], ("hosts",), report)
    if reporter.problems:
        raise TopologyError(sorted(reporter.problems, key=lambda p: (p.line, p.col)))
    return hosts


# -- capacity and placement -----------------------------------------------------------------


@dataclass(slots=True)
class Capacity:
    """What a host can still take: memory in MiB and vCPUs."""

    memory: int
    vcpus: int


def host_capacity(host: Host, info: list[Any], free_memory_bytes: int) -> Capacity:
    """From libvirt's getInfo() ([model, memory MiB, cpus, ...]) and getFreeMemory()."""
    memory = free_memory_bytes // (1024 * 1024) - MEMORY_RESERVE_MIB
    vcpus = int(info[2]) * VCPU_OVERCOMMIT
    if host.memory is not None:
        memory = min(memory, host.memory)
    if host.vcpus is not None:
        vcpus = min(vcpus, host.vcpus)
    return Capacity(max(memory, 0), vcpus)


@dataclass(frozen=True, slots=True)
class Demand:
    """What one node needs from its host."""

    memory: int  # guest MiB
    vcpus: int
    pin: str | None = None

    @property
    def footprint(self) -> int:
        return self.memory + QEMU_OVERHEAD_MIB


def place(demands: dict[str, Demand], capacity: dict[str, Capacity]) -> dict[str, str]:
    """node -> host. Pinned nodes first, then the rest largest first onto the roomiest host."""
    left = {name: Capacity(c.memory, c.vcpus) for name, c in capacity.items()}
    placement: dict[str, str] = {}
    refused: list[str] = []
    for node, demand in demands.items():
        if demand.pin is None:
            continue
        if demand.pin not in left:
            raise PlacementError(f"node {node} is pinned to host {demand.pin!r}, which the "
                                 f"inventory lacks (hosts: {', '.join(capacity)})")
        room = left[demand.pin]
        if demand.footprint > room.memory or demand.vcpus > room.vcpus:
            refused.append(f"{node} (pinned to {demand.pin}, needs {demand.footprint} MiB and "
                           f"{demand.vcpus} vCPU)")
            continue
        room.memory -= demand.footprint
        room.vcpus -= demand.vcpus
        placement[node] = demand.pin
    order = sorted((n for n, d in demands.items() if d.pin is None),
                   key=lambda n: (-demands[n].footprint, -demands[n].vcpus, n))
    for node in order:
        demand = demands[node]
        fitting = [name for name, room in left.items()
                   if demand.footprint <= room.memory and demand.vcpus <= room.vcpus]
        if not fitting:
            refused.append(f"{node} (needs {demand.footprint} MiB and {demand.vcpus} vCPU)")
            continue
        best = max(fitting, key=lambda name: (left[name].memory, -list(left).index(name)))
        left[best].memory -= demand.footprint
        left[best].vcpus -= demand.vcpus
        placement[node] = best
    if refused:
        rooms = ", ".join(f"{name} {room.memory} MiB/{room.vcpus} vCPU"
                          for name, room in left.items())
        raise PlacementError(f"the lab does not fit on its hosts: {'; '.join(refused)} "
                             f"(left after placing the rest: {rooms}); add a host, or lower "
                             f"memory:/cpus:")
    return placement
