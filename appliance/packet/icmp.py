"""ICMP for IPv4 (RFC 792, RFC 1812 §4.3)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from appliance.packet.checksum import internet_checksum
from appliance.packet.errors import PacketError

__all__ = [
    "Icmp",
    "IcmpType",
    "ParamProblemCode",
    "RedirectCode",
    "TimeExceededCode",
    "UnreachCode",
    "frag_needed_rest",
    "is_error_type",
    "param_problem_rest",
]


class IcmpType(enum.IntEnum):
    """ICMP Type field (RFC 792; RFC 950 for mask; RFC 1256 for router discovery)."""

    ECHO_REPLY = 0
    DEST_UNREACH = 3
    SOURCE_QUENCH = 4
    REDIRECT = 5
    ECHO_REQUEST = 8
    ROUTER_ADVERT = 9
    ROUTER_SOLICIT = 10
    TIME_EXCEEDED = 11
    PARAM_PROBLEM = 12
    TIMESTAMP = 13
    TIMESTAMP_REPLY = 14
    INFO_REQUEST = 15
    INFO_REPLY = 16
    MASK_REQUEST = 17
    MASK_REPLY = 18


class UnreachCode(enum.IntEnum):
    """Destination Unreachable codes (RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1)."""

    NET = 0
    HOST = 1
    PROTOCOL = 2
    PORT = 3
    FRAG_NEEDED = 4
    SRC_ROUTE_FAILED = 5
    NET_UNKNOWN = 6
    HOST_UNKNOWN = 7
    ISOLATED = 8
    NET_PROHIBITED = 9
    HOST_PROHIBITED = 10
    TOS_NET = 11
    TOS_HOST = 12
    ADMIN_PROHIBITED = 13
    PRECEDENCE_VIOLATION = 14
    PRECEDENCE_CUTOFF = 15


class RedirectCode(enum.IntEnum):
    """Redirect codes (RFC 792)."""

    NET = 0
    HOST = 1
    TOS_NET = 2
    TOS_HOST = 3


class TimeExceededCode(enum.IntEnum):
    """Time Exceeded codes (RFC 792)."""

    TTL = 0
    REASSEMBLY = 1


class ParamProblemCode(enum.IntEnum):
    """Parameter Problem codes (RFC 792, RFC 1122 §3.2.2.5, RFC 1812 §5.2.7.3)."""

    POINTER = 0
    MISSING_OPTION = 1
    BAD_LENGTH = 2


_ERROR_TYPES = frozenset(
    (
        IcmpType.DEST_UNREACH,
        IcmpType.SOURCE_QUENCH,
        IcmpType.REDIRECT,
        IcmpType.TIME_EXCEEDED,
        IcmpType.PARAM_PROBLEM,
    )
)


def is_error_type(icmp_type: int) -> bool:
    """True for ICMP error messages (RFC 1812 §4.3.2.7; the BSD ``ICMP_INFOTYPE`` complement).

    Unknown types count as not errors, as in BSD ``icmp_error``.
    """
    return icmp_type in _ERROR_TYPES


_ICMP = struct.Struct("!BBH4s")


@dataclass(frozen=True, slots=True)
class Icmp:
    """An ICMP message: the 8-byte header and the body that follows it."""

    LENGTH: ClassVar[int] = 8

    type: int
    """Type, an ``IcmpType`` value (RFC 792)."""
    code: int
    """Code, meaning depends on the type (RFC 792)."""
    checksum: int
    """Checksum over the whole message as carried (RFC 792); ``pack()`` recomputes it."""
    rest: bytes
    """The 4 type-specific bytes after the checksum: identifier and sequence, gateway,
    pointer, next-hop MTU, or unused (RFC 792, RFC 1191 §4)."""
    body: bytes
    """Everything after the header: echo data, or the quoted datagram of an error (RFC 792)."""

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Parse a whole message; raises ``PacketError("icmp.tooshort")`` under 8 bytes."""
        if len(buf) < 8:
            raise PacketError("icmp.tooshort", f"{len(buf)} bytes")
        icmp_type, code, checksum, rest = _ICMP.unpack_from(buf)
        return cls(icmp_type, code, checksum, rest, bytes(buf[8:]))

    def pack(self, with_checksum: bool = True) -> bytes:
        """The message; the checksum is computed over header and body unless told not to."""
        if not with_checksum:
            return _ICMP.pack(self.type, self.code, self.checksum, self.rest) + self.body
        raw = _ICMP.pack(self.type, self.code, 0, self.rest) + self.body
        checksum = internet_checksum(raw)
        return raw[:2] + checksum.to_bytes(2, "big") + raw[4:]


def frag_needed_rest(next_hop_mtu: int) -> bytes:
    """``rest`` of a Fragmentation Needed message: unused, next-hop MTU (RFC 1191 §4)."""
    return b"\x00\x00" + (next_hop_mtu & 0xFFFF).to_bytes(2, "big")


def param_problem_rest(pointer: int) -> bytes:
    """``rest`` of a Parameter Problem message: pointer to the bad octet (RFC 792)."""
    return bytes((pointer & 0xFF, 0, 0, 0))
