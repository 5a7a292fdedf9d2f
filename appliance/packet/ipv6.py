"""IPv6 header (RFC 8200 §3), extension header walk (RFC 8200 §4), address helpers (RFC 4291)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar, Self

from appliance.packet.errors import PacketError
from appliance.packet.ipproto import IPProto

__all__ = [
    "ExtensionWalk",
    "IPv6Fragment",
    "IPv6Header",
    "ipv6_is_link_local",
    "ipv6_is_loopback",
    "ipv6_is_multicast",
    "ipv6_is_unspecified",
    "link_local_from_mac",
    "solicited_node_multicast",
    "walk_extension_headers",
]

_IPV6 = struct.Struct("!IHBB16s16s")
_FRAG = struct.Struct("!BxHI")

UNSPECIFIED = b"\x00" * 16
LOOPBACK = b"\x00" * 15 + b"\x01"
ALL_NODES = b"\xff\x02" + b"\x00" * 13 + b"\x01"
ALL_ROUTERS = b"\xff\x02" + b"\x00" * 13 + b"\x02"


@dataclass(frozen=True, slots=True)
class IPv6Header:
    """The fixed 40-byte IPv6 header."""

    LENGTH: ClassVar[int] = 40

    traffic_class: int
    """Traffic Class, 8 bits (RFC 8200 §7, RFC 2474)."""
    flow_label: int
    """Flow Label, 20 bits (RFC 8200 §6, RFC 6437)."""
    payload_length: int
    """Payload Length: bytes after this header, extension headers included (RFC 8200 §3)."""
    next_header: int
    """Next Header: the first extension header or upper-layer protocol (RFC 8200 §3)."""
    hop_limit: int
    """Hop Limit (RFC 8200 §3)."""
    src: bytes
    """Source Address, 16 bytes (RFC 8200 §3)."""
    dst: bytes
    """Destination Address, 16 bytes (RFC 8200 §3)."""

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Parse the header at the start of ``buf``.

        Raises ``PacketError`` with reason ``ip6.toosmall`` (under 40 bytes) or ``ip6.badvers``.
        """
        if len(buf) < 40:
            raise PacketError("ip6.toosmall", f"{len(buf)} bytes")
        vtf, payload_length, next_header, hop_limit, src, dst = _IPV6.unpack_from(buf)
        if vtf >> 28 != 6:
            raise PacketError("ip6.badvers", f"version {vtf >> 28}")
        return cls(
            (vtf >> 20) & 0xFF, vtf & 0xFFFFF, payload_length, next_header, hop_limit, src, dst
        )

    def pack(self) -> bytes:
        vtf = 0x60000000 | (self.traffic_class << 20) | self.flow_label
        return _IPV6.pack(
            vtf, self.payload_length, self.next_header, self.hop_limit, self.src, self.dst
        )


@dataclass(frozen=True, slots=True)
class IPv6Fragment:
    """The Fragment extension header (RFC 8200 §4.5)."""

    LENGTH: ClassVar[int] = 8

    next_header: int
    """Next Header of the fragmentable part of the original packet (RFC 8200 §4.5)."""
    offset: int
    """Fragment Offset in 8-byte units (RFC 8200 §4.5)."""
    more: bool
    """M flag: more fragments follow (RFC 8200 §4.5)."""
    ident: int
    """Identification, 32 bits (RFC 8200 §4.5, RFC 7739)."""

    @property
    def byte_offset(self) -> int:
        """Fragment Offset in bytes."""
        return self.offset << 3

    @property
    def is_atomic(self) -> bool:
        """Offset 0 and no more fragments: a whole packet in a fragment header (RFC 6946)."""
        return self.offset == 0 and not self.more

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        if len(buf) < 8:
            raise PacketError("ip6.tooshort", f"fragment header in {len(buf)} bytes")
        next_header, off_m, ident = _FRAG.unpack_from(buf)
        return cls(next_header, off_m >> 3, bool(off_m & 1), ident)

    def pack(self) -> bytes:
        return _FRAG.pack(self.next_header, (self.offset << 3) | int(self.more), self.ident)


@dataclass(frozen=True, slots=True)
class ExtensionWalk:
    """What ``walk_extension_headers`` found."""

    upper_protocol: int
    """Next Header value after the last extension header walked (RFC 8200 §4)."""
    upper_offset: int
    """Offset in the buffer where the upper-layer header (or fragment data) starts."""
    headers: list[tuple[int, int]] = field(default_factory=list)
    """Every extension header walked, as (type, offset), in order."""
    fragment: IPv6Fragment | None = None
    """The Fragment header, if one was walked (RFC 8200 §4.5)."""
    fragment_offset: int | None = None
    """Offset of the Fragment header in the buffer."""


# Extension headers that use the generic (next header, length in 8-byte units - 1) layout
# (RFC 8200 §4.3, §4.4, §4.6); AH counts in 4-byte units - 2 (RFC 4302 §2.2).
_GENERIC_EXT = frozenset((IPProto.HOPOPTS, IPProto.IPV6_ROUTE, IPProto.IPV6_DSTOPTS))


def walk_extension_headers(
    next_header: int, buf: bytes | bytearray | memoryview, offset: int
) -> ExtensionWalk:
    """Walk the extension header chain of the packet in ``buf`` starting at ``offset``.

    ``next_header`` is the IPv6 header's Next Header field and ``offset`` where the first
    extension header starts (normally 40). Hop-by-Hop, Routing, Destination Options, AH and
    Fragment headers are walked; anything else (upper-layer protocols, ESP, No Next Header)
    ends the walk. A Fragment header with a non-zero offset also ends it: what follows is
    fragment data, not a header, so ``upper_protocol`` is then the Fragment header's Next
    Header and ``upper_offset`` the start of the data. Order rules (RFC 8200 §4.1) are not
    judged. Raises ``PacketError("ip6.tooshort")`` when a header runs past the buffer.
    """
    headers: list[tuple[int, int]] = []
    fragment: IPv6Fragment | None = None
    fragment_offset: int | None = None
    n = len(buf)
    while True:
        if next_header in _GENERIC_EXT or next_header == IPProto.AH:
            if offset + 2 > n:
                raise PacketError("ip6.tooshort", f"extension header {next_header} at {offset}")
            hlen = buf[offset + 1]
            length = (hlen + 2) * 4 if next_header == IPProto.AH else (hlen + 1) * 8
            if offset + length > n:
                raise PacketError("ip6.tooshort", f"extension header {next_header} at {offset}")
            headers.append((next_header, offset))
            next_header = buf[offset]
            offset += length
        elif next_header == IPProto.IPV6_FRAG:
            if offset + 8 > n:
                raise PacketError("ip6.tooshort", f"fragment header at {offset}")
            fragment = IPv6Fragment.parse(buf[offset : offset + 8])
            headers.append((next_header, offset))
            fragment_offset = offset
            next_header = fragment.next_header
            offset += 8
            if fragment.offset != 0:
                break
        else:
            break
    return ExtensionWalk(next_header, offset, headers, fragment, fragment_offset)


def link_local_from_mac(mac: bytes) -> bytes:
    """fe80::/64 with the modified EUI-64 interface identifier of ``mac`` (RFC 4291 app. A).

    The MAC is split around ff:fe and the universal/local bit (0x02 of the first byte) is
    inverted: 52:54:00:12:34:56 gives fe80::5054:ff:fe12:3456.
    """
    return b"\xfe\x80\x00\x00\x00\x00\x00\x00" + bytes(
        (mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5])
    )


def solicited_node_multicast(addr: bytes) -> bytes:
    """ff02::1:ffXX:XXXX, the low 24 bits of ``addr`` appended (RFC 4291 §2.7.1)."""
    return b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + bytes(addr[13:16])


def ipv6_is_multicast(addr: bytes) -> bool:
    """ff00::/8 (RFC 4291 §2.7)."""
    return addr[0] == 0xFF


def ipv6_is_unspecified(addr: bytes) -> bool:
    """:: (RFC 4291 §2.5.2)."""
    return addr == UNSPECIFIED


def ipv6_is_loopback(addr: bytes) -> bool:
    """::1 (RFC 4291 §2.5.3)."""
    return addr == LOOPBACK


def ipv6_is_link_local(addr: bytes) -> bool:
    """fe80::/10 (RFC 4291 §2.5.6)."""
    return addr[0] == 0xFE and addr[1] & 0xC0 == 0x80
