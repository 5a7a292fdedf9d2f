"""Ethernet II header (IEEE 802.3 / RFC 894) and MAC address helpers."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from appliance.packet.errors import PacketError

__all__ = [
    "BROADCAST_MAC",
    "EtherType",
    "Ethernet",
    "ipv4_multicast_mac",
    "ipv6_multicast_mac",
    "is_multicast_mac",
]

BROADCAST_MAC = b"\xff" * 6


class EtherType(enum.IntEnum):
    """EtherType values (IEEE registry; RFC 894, RFC 826, RFC 2464, IEEE 802.1Q)."""

    IPV4 = 0x0800
    ARP = 0x0806
    VLAN = 0x8100
    IPV6 = 0x86DD


_ETHERNET = struct.Struct("!6s6sH")


@dataclass(frozen=True, slots=True)
class Ethernet:
    """Ethernet II header; the frame check sequence is not part of it."""

    LENGTH: ClassVar[int] = 14

    dst: bytes
    """Destination MAC, 6 bytes (RFC 894)."""
    src: bytes
    """Source MAC, 6 bytes (RFC 894)."""
    ethertype: int
    """Payload type, an ``EtherType`` value or any other 16-bit number (RFC 894)."""

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        if len(buf) < 14:
            raise PacketError("ether.tooshort", f"{len(buf)} bytes")
        dst, src, ethertype = _ETHERNET.unpack_from(buf)
        return cls(dst, src, ethertype)

    def pack(self) -> bytes:
        return _ETHERNET.pack(self.dst, self.src, self.ethertype)


def is_multicast_mac(mac: bytes | bytearray | memoryview) -> bool:
    """True for group addresses, broadcast included (I/G bit, IEEE 802 §8.2)."""
    return bool(mac[0] & 0x01)


def ipv6_multicast_mac(addr16: bytes) -> bytes:
    """33:33 followed by the low 32 bits of an IPv6 multicast address (RFC 2464 §7)."""
    return b"\x33\x33" + bytes(addr16[12:16])


def ipv4_multicast_mac(addr4: bytes) -> bytes:
    """01:00:5e followed by the low 23 bits of an IPv4 multicast address (RFC 1112 §6.4)."""
    return b"\x01\x00\x5e" + bytes((addr4[1] & 0x7F, addr4[2], addr4[3]))
