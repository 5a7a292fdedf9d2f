"""UDP header (RFC 768)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from appliance.packet.errors import PacketError

__all__ = ["UDP_CHECKSUM_OFFSET", "Udp"]

UDP_CHECKSUM_OFFSET = 6
"""Offset of the checksum field in the UDP header (RFC 768)."""

_UDP = struct.Struct("!HHHH")


@dataclass(frozen=True, slots=True)
class Udp:
    """The 8-byte UDP header."""

    LENGTH: ClassVar[int] = 8

    src_port: int
    """Source Port (RFC 768)."""
    dst_port: int
    """Destination Port (RFC 768)."""
    length: int
    """Length of header and data in bytes (RFC 768)."""
    checksum: int
    """Checksum over pseudo-header, header and data; 0 = none over IPv4 (RFC 768,
    RFC 8200 §8.1 makes it mandatory over IPv6)."""

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Parse the header; raises ``PacketError("udp.hdrops")`` under 8 bytes."""
        if len(buf) < 8:
            raise PacketError("udp.hdrops", f"{len(buf)} bytes")
        return cls(*_UDP.unpack_from(buf))

    def pack(self) -> bytes:
        return _UDP.pack(self.src_port, self.dst_port, self.length, self.checksum)
