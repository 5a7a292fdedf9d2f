"""IPv4 header (RFC 791 §3.1) and address classification helpers (RFC 1812 §4.2.2.11, §5.3.7)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from appliance.packet.checksum import internet_checksum
from appliance.packet.errors import PacketError

__all__ = [
    "IPV4_DF",
    "IPV4_MF",
    "IPv4Header",
    "Ipv4OptionType",
    "ipv4_is_class_e",
    "ipv4_is_limited_broadcast",
    "ipv4_is_loopback",
    "ipv4_is_multicast",
    "ipv4_is_unspecified",
    "ipv4_option_copied",
    "split_ipv4_options",
]

IPV4_DF = 0x2
"""Don't Fragment, in the 3-bit ``flags`` field (RFC 791 §3.1)."""
IPV4_MF = 0x1
"""More Fragments, in the 3-bit ``flags`` field (RFC 791 §3.1)."""

_IPV4 = struct.Struct("!BBHHHBBH4s4s")


class Ipv4OptionType:
    """Option types that need special handling (RFC 791 §3.1 "Options")."""

    END = 0
    NOP = 1


@dataclass(frozen=True, slots=True)
class IPv4Header:
    """The IPv4 header with its options; the payload is not part of it."""

    LENGTH: ClassVar[int] = 20

    tos: int
    """Type of Service / DSCP+ECN byte (RFC 791 §3.1, RFC 2474, RFC 3168)."""
    total_length: int
    """Total Length of the datagram in bytes, header included (RFC 791 §3.1)."""
    ident: int
    """Identification, shared by all fragments of a datagram (RFC 791 §3.1, RFC 6864)."""
    flags: int
    """The 3-bit flags field: ``IPV4_DF`` | ``IPV4_MF``; bit 0x4 is reserved (RFC 791 §3.1)."""
    frag_offset: int
    """Fragment Offset in 8-byte units (RFC 791 §3.1)."""
    ttl: int
    """Time to Live (RFC 791 §3.1, RFC 1812 §5.3.1)."""
    proto: int
    """Protocol of the payload, an ``IPProto`` value (RFC 791 §3.1)."""
    checksum: int
    """Header Checksum as carried (RFC 791 §3.1); ``pack()`` recomputes it by default."""
    src: bytes
    """Source Address, 4 bytes (RFC 791 §3.1)."""
    dst: bytes
    """Destination Address, 4 bytes (RFC 791 §3.1)."""
    options: bytes = b""
    """Options as carried, padding included; a multiple of 4 bytes, at most 40 (RFC 791 §3.1)."""

    @property
    def ihl(self) -> int:
        """Internet Header Length in 32-bit words (RFC 791 §3.1)."""
        return 5 + (len(self.options) + 3) // 4

    @property
    def header_length(self) -> int:
        """Header length in bytes."""
        return 20 + ((len(self.options) + 3) & ~3)

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags & IPV4_DF)

    @property
    def more_fragments(self) -> bool:
        return bool(self.flags & IPV4_MF)

    @property
    def is_fragment(self) -> bool:
        """True for any fragment of a larger datagram (MF set or a non-zero offset)."""
        return bool(self.flags & IPV4_MF) or self.frag_offset != 0

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Parse the header at the start of ``buf``.

        Raises ``PacketError`` with reason ``ip.toosmall`` (under 20 bytes), ``ip.badvers``,
        or ``ip.badhlen`` (IHL under 5 or beyond the buffer), the FreeBSD ``ipstat`` names.
        Checksum, TTL and total length are the caller's to judge.
        """
        if len(buf) < 20:
            raise PacketError("ip.toosmall", f"{len(buf)} bytes")
        vihl, tos, total_length, ident, flags_off, ttl, proto, checksum, src, dst = (
            _IPV4.unpack_from(buf)
        )
        if vihl >> 4 != 4:
            raise PacketError("ip.badvers", f"version {vihl >> 4}")
        hlen = (vihl & 0x0F) << 2
        if hlen < 20:
            raise PacketError("ip.badhlen", f"ihl {vihl & 0x0F}")
        if hlen > len(buf):
            raise PacketError("ip.badhlen", f"header {hlen} bytes, buffer {len(buf)}")
        options = bytes(buf[20:hlen]) if hlen > 20 else b""
        return cls(
            tos,
            total_length,
            ident,
            flags_off >> 13,
            flags_off & 0x1FFF,
            ttl,
            proto,
            checksum,
            src,
            dst,
            options,
        )

    def pack(self, with_checksum: bool = True) -> bytes:
        """The header bytes; the checksum is recomputed unless ``with_checksum`` is False."""
        options = self.options
        if len(options) > 40:
            raise ValueError(f"IPv4 options are at most 40 bytes, got {len(options)}")
        if len(options) & 3:
            options += b"\x00" * (4 - (len(options) & 3))
        vihl = 0x40 | (5 + len(options) // 4)
        flags_off = (self.flags << 13) | self.frag_offset
        raw = _IPV4.pack(
            vihl,
            self.tos,
            self.total_length,
            self.ident,
            flags_off,
            self.ttl,
            self.proto,
            self.checksum if not with_checksum else 0,
            self.src,
            self.dst,
        ) + options
        if not with_checksum:
            return raw
        checksum = internet_checksum(raw)
        return raw[:10] + checksum.to_bytes(2, "big") + raw[12:]


def split_ipv4_options(options: bytes | bytearray | memoryview) -> list[bytes]:
    """Split an options field into single options (RFC 791 §3.1 "Options").

    End of Option List stops the walk (the padding after it is not returned); No Operation is
    returned as ``b"\\x01"``. Raises ``PacketError("ip.badoptions")`` for a length byte that is
    missing, below 2 or past the end.
    """
    out: list[bytes] = []
    i = 0
    n = len(options)
    while i < n:
        kind = options[i]
        if kind == Ipv4OptionType.END:
            break
        if kind == Ipv4OptionType.NOP:
            out.append(b"\x01")
            i += 1
            continue
        if i + 1 >= n:
            raise PacketError("ip.badoptions", f"option {kind} has no length byte")
        olen = options[i + 1]
        if olen < 2 or i + olen > n:
            raise PacketError("ip.badoptions", f"option {kind} length {olen}")
        out.append(bytes(options[i : i + olen]))
        i += olen
    return out


def ipv4_option_copied(option_type: int) -> bool:
    """The copied flag: copy this option into every fragment (RFC 791 §3.1, §3.2)."""
    return bool(option_type & 0x80)


def ipv4_is_unspecified(addr: bytes) -> bool:
    """0.0.0.0 ("this host on this network", RFC 1122 §3.2.1.3 (a))."""
    return addr == b"\x00\x00\x00\x00"


def ipv4_is_loopback(addr: bytes) -> bool:
    """127.0.0.0/8 (RFC 1122 §3.2.1.3 (g))."""
    return addr[0] == 127


def ipv4_is_multicast(addr: bytes) -> bool:
    """224.0.0.0/4, class D (RFC 1112 §4)."""
    return addr[0] & 0xF0 == 0xE0


def ipv4_is_class_e(addr: bytes) -> bool:
    """240.0.0.0/4 except the limited broadcast, class E (RFC 1812 §4.2.2.11 (d))."""
    return addr[0] & 0xF0 == 0xF0 and addr != b"\xff\xff\xff\xff"


def ipv4_is_limited_broadcast(addr: bytes) -> bool:
    """255.255.255.255 (RFC 1122 §3.2.1.3 (c))."""
    return addr == b"\xff\xff\xff\xff"
