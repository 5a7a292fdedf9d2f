"""ARP for IPv4 over Ethernet (RFC 826)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from appliance.packet.errors import PacketError

__all__ = ["Arp", "ArpOp"]


class ArpOp(enum.IntEnum):
    """ar$op values (RFC 826 "Packet format")."""

    REQUEST = 1
    REPLY = 2


_ARP = struct.Struct("!HHBBH6s4s6s4s")
_HTYPE_ETHERNET = 1
_PTYPE_IPV4 = 0x0800


@dataclass(frozen=True, slots=True)
class Arp:
    """An Ethernet/IPv4 ARP packet; hardware and protocol type and lengths are implied."""

    LENGTH: ClassVar[int] = 28

    op: int
    """ar$op, an ``ArpOp`` value (RFC 826 "Packet format")."""
    sender_mac: bytes
    """ar$sha, sender hardware address, 6 bytes (RFC 826)."""
    sender_ip: bytes
    """ar$spa, sender protocol address, 4 bytes (RFC 826)."""
    target_mac: bytes
    """ar$tha, target hardware address, 6 bytes; zero in requests (RFC 826)."""
    target_ip: bytes
    """ar$tpa, target protocol address, 4 bytes (RFC 826)."""

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        if len(buf) < 28:
            raise PacketError("arp.toosmall", f"{len(buf)} bytes")
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(buf)
        if htype != _HTYPE_ETHERNET or hlen != 6:
            raise PacketError("arp.badhw", f"htype {htype} hlen {hlen}")
        if ptype != _PTYPE_IPV4 or plen != 4:
            raise PacketError("arp.badproto", f"ptype {ptype:#06x} plen {plen}")
        return cls(op, sha, spa, tha, tpa)

    def pack(self) -> bytes:
        return _ARP.pack(
            _HTYPE_ETHERNET,
            _PTYPE_IPV4,
            6,
            4,
            self.op,
            self.sender_mac,
            self.sender_ip,
            self.target_mac,
            self.target_ip,
        )
