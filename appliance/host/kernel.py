"""Take the data interfaces away from the Linux kernel so that only the appliance answers.

The appliance receives and sends every frame on its own packet rings; the kernel must not
also act on those frames. For each configured data interface `take_interfaces`:

1. disables kernel IPv6 on it (``net.ipv6.conf.IF.disable_ipv6 = 1``): the kernel forgets its
   link-local and any global address, sends no DAD, RS, MLD or neighbor adverts, and drops
   IPv6 it receives there. The appliance answers ND itself (RFC 4861).
2. turns kernel forwarding off on it (``net.ipv4.conf.IF.forwarding = 0``,
   ``net.ipv6.conf.IF.forwarding = 0``), so a transit frame the kernel also sees is dropped,
   never forwarded twice nor answered with a kernel ICMP error.
3. sets ``net.ipv4.conf.IF.arp_ignore = 8``: the kernel answers no ARP request on it, not even
   for an address it owns on another interface (the management NIC of a VM).
4. **removes every IPv4 address the kernel holds on it** (netlink RTM_DELADDR), logging each.
   Decision: remove rather than refuse. The router configuration is the single source of the
   interface's addresses, a VM image or a person may have left an address behind, and a
   kernel address on a data interface would make the kernel answer ARP and ICMP next to the
   appliance. Removal is logged so nothing disappears silently; nothing is restored on exit.
5. turns GRO and LRO off (ethtool ioctls): a packet socket sees frames after GRO, and a
   router must see (and forward) the frames as they were on the wire, not coalesced.
6. sets the MTU when the configuration gives one, and brings the link up with ALLMULTI (the
   appliance needs the solicited-node and all-nodes multicast frames a NIC would otherwise
   filter; the kernel no longer joins those groups once its IPv6 is off).
7. detaches the kernel's own receive path from it (`detach_stack`): the interface becomes a
   port of ``vrlab-detach``, a bridge that is never brought up. The kernel hands every frame
   to the packet sockets (our rings) first and only then to the device's rx_handler, which
   for a port of a bridge that is down drops it. Without this the kernel's IPv4 input still
   parses every transit frame, looks up a route and drops it (forwarding is off): as much CPU
   as forwarding it, spent on the core that receives. An interface that is already a port of
   something else is left as it is (logged); without bridge support in the kernel this step
   is skipped (logged). `release_stack` undoes it when the daemon stops. The bridge must stay
   down: brought up, it would switch frames between the router's interfaces.

It then reads everything back and raises `KernelError` naming the interface and the setting if
anything did not take, so the daemon refuses to start rather than run next to a kernel that
still answers. Only /proc/sys, ioctl() and the appliance's small rtnetlink client
(`appliance.host.netlink`, which says why it is not pyroute2) are used: the appliance needs
nothing beyond the Python standard library here.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import socket
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.host.netlink import IFF_ALLMULTI, IFF_LOOPBACK, IFF_UP, KernelAddress, Netlink

PROC_SYS = Path("/proc/sys")

# linux/sockios.h
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
SIOCGIFHWADDR = 0x8927
SIOCETHTOOL = 0x8946
IFNAMSIZ = 16
# linux/ethtool.h
ETHTOOL_GFLAGS = 0x25
ETHTOOL_SFLAGS = 0x26
ETHTOOL_GGRO = 0x2B
ETHTOOL_SGRO = 0x2C
ETH_FLAG_LRO = 1 << 15
DETACH_BRIDGE = "vrlab-detach"


class KernelError(RuntimeError):
    """The kernel still owns (or we could not inspect) a data interface."""


@dataclass(frozen=True, slots=True)
class KernelLink:
    """What the kernel says about one interface."""

    name: str
    ifindex: int
    mac: bytes
    mtu: int
    flags: int


# ---------------------------------------------------------------------------- ioctl


def _ifreq(name: str, payload: bytes = b"") -> bytearray:
    encoded = name.encode()
    if not encoded or len(encoded) >= IFNAMSIZ:
        raise KernelError(f"{name!r} is not a valid interface name")
    return bytearray(encoded.ljust(IFNAMSIZ, b"\0") + payload.ljust(24, b"\0"))


def _ioctl(sock: socket.socket, request: int, name: str, payload: bytes = b"") -> bytearray:
    buf = _ifreq(name, payload)
    fcntl.ioctl(sock.fileno(), request, buf)
    return buf


def _control_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def link_info(name: str) -> KernelLink:
    """ifindex, MAC, MTU and flags of `name` in this process's network namespace."""
    try:
        ifindex = socket.if_nametoindex(name)
    except OSError:
        raise KernelError(f"{name}: no such interface") from None
    with _control_socket() as s:
        try:
            mac = bytes(_ioctl(s, SIOCGIFHWADDR, name)[IFNAMSIZ + 2 : IFNAMSIZ + 8])
            mtu = struct.unpack_from("=i", _ioctl(s, SIOCGIFMTU, name), IFNAMSIZ)[0]
            flags = struct.unpack_from("=H", _ioctl(s, SIOCGIFFLAGS, name), IFNAMSIZ)[0]
        except OSError as e:
            raise KernelError(f"{name}: cannot read link settings: {e.strerror}") from None
    return KernelLink(name, ifindex, mac, int(mtu), int(flags))


def set_mtu(name: str, mtu: int) -> None:
    with _control_socket() as s:
        try:
            _ioctl(s, SIOCSIFMTU, name, struct.pack("=i", mtu))
        except OSError as e:
            raise KernelError(f"{name}: cannot set MTU {mtu}: {e.strerror}") from None


def set_flags(name: str, add: int) -> None:
    """OR `add` into the interface flags (IFF_UP, IFF_ALLMULTI ...)."""
    with _control_socket() as s:
        try:
            flags = struct.unpack_from("=H", _ioctl(s, SIOCGIFFLAGS, name), IFNAMSIZ)[0]
            if flags & add != add:
                _ioctl(s, SIOCSIFFLAGS, name, struct.pack("=H", flags | add))
        except OSError as e:
            raise KernelError(f"{name}: cannot set interface flags: {e.strerror}") from None


def _ethtool(sock: socket.socket, name: str, cmd: int, data: int = 0) -> int:
    value = array.array("I", [cmd, data])
    address, _ = value.buffer_info()
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, _ifreq(name, struct.pack("P", address)))
    return int(value[1])


def disable_receive_offloads(name: str) -> list[str]:
    """GRO and LRO off; returns what was changed. Drivers without the feature are fine."""
    changed = []
    with _control_socket() as s:
        try:
            if _ethtool(s, name, ETHTOOL_GGRO):
                _ethtool(s, name, ETHTOOL_SGRO, 0)
                changed.append("gro")
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise KernelError(f"{name}: cannot turn GRO off: {e.strerror}") from None
        try:
            flags = _ethtool(s, name, ETHTOOL_GFLAGS)
            if flags & ETH_FLAG_LRO:
                _ethtool(s, name, ETHTOOL_SFLAGS, flags & ~ETH_FLAG_LRO)
                changed.append("lro")
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise KernelError(f"{name}: cannot turn LRO off: {e.strerror}") from None
    return changed


def receive_offloads(name: str) -> dict[str, bool]:
    """Whether GRO and LRO are on (absent features read as off)."""
    out = {"gro": False, "lro": False}
    with _control_socket() as s:
        with contextlib.suppress(OSError):
            out["gro"] = bool(_ethtool(s, name, ETHTOOL_GGRO))
        with contextlib.suppress(OSError):
            out["lro"] = bool(_ethtool(s, name, ETHTOOL_GFLAGS) & ETH_FLAG_LRO)
    return out


# ---------------------------------------------------------------------------- netlink


def kernel_addresses(ifindexes: Sequence[int] | None = None) -> list[KernelAddress]:
    """Addresses the kernel holds (on `ifindexes` only, when given)."""
    with Netlink() as nl:
        found = nl.addresses()
    return [a for a in found if ifindexes is None or a.ifindex in ifindexes]


def _bridge_index(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return 0


def detach_stack(names: Sequence[str], log: Callable[[str], None] = print) -> list[str]:
    """Make each of `names` a port of the down bridge DETACH_BRIDGE (module doc, step 7), so
    the kernel's IP input no longer sees its frames; returns the names detached. Never raises:
    the router works without it, only slower."""
    detached: list[str] = []
    try:
        with Netlink() as nl:
            bridge = _bridge_index(DETACH_BRIDGE)
            if not bridge:
                nl.add_bridge(DETACH_BRIDGE)
                bridge = _bridge_index(DETACH_BRIDGE)
            for name in names:
                ifindex = socket.if_nametoindex(name)
                master = nl.master(ifindex)
                if master and master != bridge:
                    other = socket.if_indextoname(master)
                    log(f"{name}: kernel receive path left attached (the interface is a port "
                        f"of {other})")
                    continue
                if not master:
                    nl.set_master(ifindex, bridge)
                detached.append(name)
    except OSError as e:
        log(f"kernel receive path not detached ({DETACH_BRIDGE}: {e.strerror or e}): the "
            "kernel's IPv4 input also sees every frame and drops it")
        return detached
    if detached:
        log(f"{', '.join(detached)}: kernel receive path detached (ports of {DETACH_BRIDGE}, "
            "a bridge kept down: frames reach only the router's rings)")
    return detached


def preflight(names: Sequence[str]) -> list[str]:
    """What stops the router from taking `names`, found without changing anything: an
    interface that does not exist, or a loopback (taking it would cut the machine's own
    127.0.0.1 and ::1)."""
    problems = []
    for name in names:
        try:
            link = link_info(name)
        except KernelError:
            problems.append(f"interfaces: {name}: no such interface in this network namespace")
            continue
        if link.flags & IFF_LOOPBACK:
            problems.append(f"interfaces: {name}: a loopback interface, not a data interface")
    return problems


def clear_leftovers(names: Sequence[str], stale_socket: bool,
                    log: Callable[[str], None] = print) -> list[str]:
    """Remove the DETACH_BRIDGE a router killed without its clean stop left (`kill -9`, an
    OOM kill): its ports get their kernel receive path back and the bridge goes; returns the
    ports released. It counts as left over when one of `names` is still its port, or when the
    caller found the stale control socket of the killed run; a bridge holding only other
    interfaces belongs to another router in this namespace and stays. Never raises."""
    bridge = _bridge_index(DETACH_BRIDGE)
    if not bridge:
        return []
    released: list[str] = []
    try:
        with Netlink() as nl:
            ports = {i: n for i, n in socket.if_nameindex() if nl.master(i) == bridge}
            if not stale_socket and not set(ports.values()) & set(names):
                return []
            for ifindex, name in ports.items():
                nl.set_master(ifindex, 0)
                released.append(name)
            nl.delete_link(bridge)
    except OSError as e:
        log(f"{DETACH_BRIDGE} left by a previous run could not be removed: {e.strerror or e}")
        return released
    log(f"removed {DETACH_BRIDGE} left by a previous run that did not stop cleanly"
        + (f" (ports released: {', '.join(sorted(released))})" if released else ""))
    return released


def release_stack(names: Sequence[str], log: Callable[[str], None] = print) -> None:
    """Undo `detach_stack`: `names` leave DETACH_BRIDGE, which is deleted once it has no
    port left. Never raises."""
    bridge = _bridge_index(DETACH_BRIDGE)
    if not bridge:
        return
    try:
        with Netlink() as nl:
            for name in names:
                with contextlib.suppress(OSError):  # gone already (a VM shutting down)
                    ifindex = socket.if_nametoindex(name)
                    if nl.master(ifindex) == bridge:
                        nl.set_master(ifindex, 0)
            ports = [i for i, _name in socket.if_nameindex() if nl.master(i) == bridge]
            if not ports:
                nl.delete_link(bridge)
    except OSError as e:
        log(f"{DETACH_BRIDGE}: could not be removed: {e.strerror or e}")


# ---------------------------------------------------------------------------- /proc/sys


def _sysctl_path(family: str, name: str, key: str) -> Path:
    return PROC_SYS / "net" / family / "conf" / name / key


def read_sysctl(path: Path) -> str:
    return path.read_text().strip()


def write_sysctl(path: Path, value: int) -> None:
    try:
        path.write_text(f"{value}\n")
    except OSError as e:
        raise KernelError(f"cannot write {value} to {path}: {e.strerror}") from None


def ipv6_present(name: str) -> bool:
    """Whether the kernel has IPv6 on this interface at all (the module may be disabled)."""
    return _sysctl_path("ipv6", name, "disable_ipv6").exists()


# ---------------------------------------------------------------------------- the whole job

_V4_SETTINGS = (("forwarding", 0), ("arp_ignore", 8))
_V6_SETTINGS = (("disable_ipv6", 1), ("forwarding", 0))


def take_interfaces(
    names: Sequence[str],
    mtus: Mapping[str, int | None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, KernelLink]:
    """Take `names` away from the kernel (see the module doc); returns their link info.

    Raises KernelError if an interface is missing or the kernel keeps any part of it.
    """
    mtus = mtus or {}
    links: dict[str, KernelLink] = {}
    for name in names:
        link_info(name)  # exists? (clear error before we change anything)
    for name in names:
        # IPv6 first, before the link comes up, so the kernel never starts DAD, RS or MLD.
        if ipv6_present(name):
            for key, value in _V6_SETTINGS:
                write_sysctl(_sysctl_path("ipv6", name, key), value)
        for key, value in _V4_SETTINGS:
            write_sysctl(_sysctl_path("ipv4", name, key), value)
        ifindex = socket.if_nametoindex(name)
        with Netlink() as nl:
            for addr in nl.addresses():
                if addr.ifindex != ifindex:
                    continue
                try:
                    nl.delete_address(addr)
                except OSError as e:
                    raise KernelError(
                        f"{name}: cannot remove kernel address {addr.address}/{addr.prefixlen}:"
                        f" {e.strerror}") from None
                log(f"{name}: removed kernel address {addr.address}/{addr.prefixlen} "
                    "(the router configuration owns this interface's addresses)")
        mtu = mtus.get(name)
        if mtu is not None and link_info(name).mtu != mtu:
            set_mtu(name, mtu)
            log(f"{name}: MTU set to {mtu}")
        changed = disable_receive_offloads(name)
        if changed:
            log(f"{name}: {' and '.join(changed)} off (the router must see frames as on the wire)")
        set_flags(name, IFF_UP | IFF_ALLMULTI)
        links[name] = link_info(name)
    check_interfaces(names, mtus)
    detach_stack(names, log)
    return links


def check_interfaces(names: Sequence[str], mtus: Mapping[str, int | None] | None = None
                     ) -> None:
    """Raise KernelError if the kernel still owns any part of an interface in `names`."""
    mtus = mtus or {}
    problems = []
    ifindexes = {}
    for name in names:
        link = link_info(name)
        ifindexes[link.ifindex] = name
        if ipv6_present(name):
            for key, value in _V6_SETTINGS:
                got = read_sysctl(_sysctl_path("ipv6", name, key))
                if got != str(value):
                    problems.append(f"{name}: net.ipv6.conf.{name}.{key} is {got}, not {value}")
        for key, value in _V4_SETTINGS:
            got = read_sysctl(_sysctl_path("ipv4", name, key))
            if got != str(value):
                problems.append(f"{name}: net.ipv4.conf.{name}.{key} is {got}, not {value}")
        if not link.flags & IFF_UP:
            problems.append(f"{name}: link is down")
        mtu = mtus.get(name)
        if mtu is not None and link.mtu != mtu:
            problems.append(f"{name}: MTU is {link.mtu}, configured {mtu}")
        offloads = receive_offloads(name)
        problems.extend(f"{name}: {k} is still on" for k, on in offloads.items() if on)
    for addr in kernel_addresses(list(ifindexes)):
        problems.append(f"{ifindexes[addr.ifindex]}: the kernel still has address "
                        f"{addr.address}/{addr.prefixlen}")
    if problems:
        raise KernelError("the kernel still owns a data interface:\n  " + "\n  ".join(problems))


def describe(name: str) -> str:
    """One line saying how the kernel stands on `name` (for the start-up log)."""
    v6 = "kernel IPv6 disabled" if ipv6_present(name) else "kernel has no IPv6"
    return f"{name}: {v6}, kernel forwarding off, no kernel addresses, arp_ignore 8"
