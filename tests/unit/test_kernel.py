"""appliance.host.kernel's read side against this machine's loopback (no root needed): the ioctl
link query and the rtnetlink address dump (appliance.host.netlink)."""

from __future__ import annotations

import socket
from ipaddress import ip_address

import pytest

from appliance.host import kernel, netlink


def test_link_info_of_loopback() -> None:
    lo = kernel.link_info("lo")
    assert lo.ifindex == socket.if_nametoindex("lo")
    assert lo.mac == bytes(6)
    assert lo.flags & kernel.IFF_UP
    assert lo.mtu >= 1280


def test_link_info_names_a_missing_interface() -> None:
    with pytest.raises(kernel.KernelError, match="vrl-nosuch0: no such interface"):
        kernel.link_info("vrl-nosuch0")


def test_interface_name_is_checked_before_any_ioctl() -> None:
    with pytest.raises(kernel.KernelError, match="not a valid interface name"):
        kernel._ifreq("x" * 16)


def test_netlink_dump_lists_loopback_addresses() -> None:
    lo = socket.if_nametoindex("lo")
    found = kernel.kernel_addresses([lo])
    assert found, "the netlink dump returned nothing for lo"
    assert all(a.ifindex == lo for a in found)
    v4 = [a for a in found if a.address.version == 4]
    if v4:  # a namespace may run without 127.0.0.1, but if it is there it is /8
        assert any(a.address == ip_address("127.0.0.1") and a.prefixlen == 8 for a in v4)


def test_rtattr_walk() -> None:
    attrs = (netlink.RTATTR.pack(8, netlink.IFA_ADDRESS) + bytes([192, 0, 2, 1])
             + netlink.RTATTR.pack(5, 3) + b"x\0\0\0"  # padded to 4 bytes
             + netlink.RTATTR.pack(8, netlink.IFA_LOCAL) + bytes([192, 0, 2, 2]))
    assert list(netlink.attributes(attrs)) == [
        (netlink.IFA_ADDRESS, bytes([192, 0, 2, 1])),
        (3, b"x"),
        (netlink.IFA_LOCAL, bytes([192, 0, 2, 2])),
    ]
    # A zero-length attribute ends the walk instead of looping forever.
    assert list(netlink.attributes(netlink.RTATTR.pack(0, 1) + bytes(8))) == []
