"""Ethernet and ARP against scapy-built golden frames."""

from __future__ import annotations

from scapy.all import ARP, Ether, raw  # type: ignore[attr-defined]

from appliance.packet.arp import Arp, ArpOp
from appliance.packet.ethernet import (
    BROADCAST_MAC,
    Ethernet,
    EtherType,
    ipv4_multicast_mac,
    ipv6_multicast_mac,
    is_multicast_mac,
)

MAC_A = bytes.fromhex("525400000001")
MAC_B = bytes.fromhex("525400000002")


def test_ethernet_parse_and_pack_match_scapy() -> None:
    wire = raw(Ether(dst="52:54:00:00:00:02", src="52:54:00:00:00:01", type=0x86DD) / (b"x" * 3))
    eth = Ethernet.parse(wire)
    assert eth.dst == MAC_B
    assert eth.src == MAC_A
    assert eth.ethertype == EtherType.IPV6
    assert eth.pack() == wire[:14]
    assert Ethernet.LENGTH == 14


def test_ethernet_unknown_ethertype_is_kept() -> None:
    wire = raw(Ether(dst="ff:ff:ff:ff:ff:ff", src="52:54:00:00:00:01", type=0x88B5))
    eth = Ethernet.parse(memoryview(wire))
    assert eth.ethertype == 0x88B5
    assert eth.dst == BROADCAST_MAC
    assert eth.pack() == wire[:14]


def test_mac_helpers() -> None:
    assert is_multicast_mac(BROADCAST_MAC)
    assert is_multicast_mac(bytes.fromhex("333300000001"))
    assert is_multicast_mac(bytes.fromhex("01005e000001"))
    assert not is_multicast_mac(MAC_A)
    assert ipv6_multicast_mac(bytes.fromhex("ff0200000000000000000001ff123456")) == bytes.fromhex(
        "3333ff123456"
    )
    assert ipv4_multicast_mac(bytes((224, 129, 2, 3))) == bytes.fromhex("01005e010203")


def test_arp_request_matches_scapy() -> None:
    wire = raw(ARP(op=1, hwsrc="52:54:00:00:00:01", psrc="192.0.2.1", pdst="192.0.2.2"))
    arp = Arp.parse(wire)
    assert arp.op == ArpOp.REQUEST
    assert arp.sender_mac == MAC_A
    assert arp.sender_ip == bytes((192, 0, 2, 1))
    assert arp.target_mac == b"\x00" * 6
    assert arp.target_ip == bytes((192, 0, 2, 2))
    assert arp.pack() == wire


def test_arp_reply_pack_is_what_scapy_builds() -> None:
    arp = Arp(ArpOp.REPLY, MAC_B, bytes((192, 0, 2, 2)), MAC_A, bytes((192, 0, 2, 1)))
    expected = raw(
        ARP(
            op=2,
            hwsrc="52:54:00:00:00:02",
            psrc="192.0.2.2",
            hwdst="52:54:00:00:00:01",
            pdst="192.0.2.1",
        )
    )
    assert arp.pack() == expected
    assert Arp.parse(expected) == arp
