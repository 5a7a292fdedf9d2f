"""ICMPv6 (RFC 4443) and the type numbers of Neighbor Discovery (RFC 4861 §4)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from appliance.packet.checksum import internet_checksum, pseudo_header_v6, verify
from appliance.packet.errors import PacketError
from appliance.packet.ipproto import IPProto

__all__ = [
    "Icmp6",
    "Icmp6Type",
    "ParamProblem6Code",
    "TimeExceeded6Code",
    "Unreach6Code",
    "is_error_type6",
    "verify_icmp6",
]


class Icmp6Type(enum.IntEnum):
    """ICMPv6 Type field (RFC 4443 §2.1, RFC 4861 §4, RFC 2710, RFC 3810)."""

    DEST_UNREACH = 1
    PACKET_TOO_BIG = 2
    TIME_EXCEEDED = 3
    PARAM_PROBLEM = 4
    ECHO_REQUEST = 128
    ECHO_REPLY = 129
    MLD_QUERY = 130
    MLD_REPORT = 131
    MLD_DONE = 132
    ROUTER_SOLICIT = 133
    ROUTER_ADVERT = 134
    NEIGHBOR_SOLICIT = 135
    NEIGHBOR_ADVERT = 136
    REDIRECT = 137
    MLD2_REPORT = 143


class Unreach6Code(enum.IntEnum):
    """Destination Unreachable codes (RFC 4443 §3.1)."""

    NO_ROUTE = 0
    ADMIN_PROHIBITED = 1
    BEYOND_SCOPE = 2
    ADDRESS = 3
    PORT = 4
    SRC_POLICY = 5
    REJECT_ROUTE = 6


class TimeExceeded6Code(enum.IntEnum):
    """Time Exceeded codes (RFC 4443 §3.3)."""

    HOP_LIMIT = 0
    REASSEMBLY = 1


class ParamProblem6Code(enum.IntEnum):
    """Parameter Problem codes (RFC 4443 §3.4, RFC 7112 §5)."""

    HEADER = 0
    NEXT_HEADER = 1
    OPTION = 2
    INCOMPLETE_CHAIN = 3
    """IPv6 First Fragment has incomplete IPv6 Header Chain (RFC 7112 §5)."""


def is_error_type6(icmp6_type: int) -> bool:
    """Error messages have types 0-127, informational ones 128-255 (RFC 4443 §2.1)."""
    return icmp6_type < 128


_ICMP6 = struct.Struct("!BBH4s")


@dataclass(frozen=True, slots=True)
class Icmp6:
    """An ICMPv6 message: the 8-byte header and the body that follows it."""

    LENGTH: ClassVar[int] = 8

    type: int
    """Type, an ``Icmp6Type`` value (RFC 4443 §2.1)."""
    code: int
    """Code, meaning depends on the type (RFC 4443 §2.1)."""
    checksum: int
    """Checksum over pseudo-header and message as carried (RFC 4443 §2.3)."""
    rest: bytes
    """The 4 type-specific bytes after the checksum: MTU, pointer, identifier and sequence,
    flags, or unused (RFC 4443 §3, §4; RFC 4861 §4)."""
    body: bytes
    """Everything after the first 8 bytes (RFC 4443 §2.1)."""

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Parse a whole message; raises ``PacketError("icmp6.tooshort")`` under 8 bytes."""
        if len(buf) < 8:
            raise PacketError("icmp6.tooshort", f"{len(buf)} bytes")
        icmp_type, code, checksum, rest = _ICMP6.unpack_from(buf)
        return cls(icmp_type, code, checksum, rest, bytes(buf[8:]))

    def pack(self, src: bytes, dst: bytes, with_checksum: bool = True) -> bytes:
        """The message with its checksum over the IPv6 pseudo-header (RFC 4443 §2.3)."""
        if not with_checksum:
            return _ICMP6.pack(self.type, self.code, self.checksum, self.rest) + self.body
        raw = _ICMP6.pack(self.type, self.code, 0, self.rest) + self.body
        checksum = internet_checksum(raw, pseudo_header_v6(src, dst, IPProto.ICMPV6, len(raw)))
        return raw[:2] + checksum.to_bytes(2, "big") + raw[4:]


def verify_icmp6(src: bytes, dst: bytes, buf: bytes | bytearray | memoryview) -> bool:
    """True when the ICMPv6 message ``buf`` carries a correct checksum (RFC 4443 §2.3)."""
    return verify(buf, pseudo_header_v6(src, dst, IPProto.ICMPV6, len(buf)))
