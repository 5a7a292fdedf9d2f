"""IPv6 Neighbor Discovery messages and options (RFC 4861 §4, §4.6)."""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Self

from appliance.packet.errors import PacketError
from appliance.packet.icmpv6 import Icmp6, Icmp6Type

__all__ = [
    "NdOption",
    "NdOptionType",
    "NeighborAdvertisement",
    "NeighborSolicitation",
    "Redirect",
    "link_layer_option",
    "mtu_option",
    "pack_nd_options",
    "parse_nd_options",
    "redirected_header_option",
    "source_ll",
    "target_ll",
]


class NdOptionType(enum.IntEnum):
    """Neighbor Discovery option types (RFC 4861 §4.6)."""

    SOURCE_LL = 1
    TARGET_LL = 2
    PREFIX_INFO = 3
    REDIRECTED_HEADER = 4
    MTU = 5


@dataclass(frozen=True, slots=True)
class NdOption:
    """One ND option in its type-length-value form (RFC 4861 §4.6)."""

    type: int
    """Type, an ``NdOptionType`` value or an unknown one to be skipped (RFC 4861 §4.6)."""
    data: bytes
    """The bytes after the type and length octets, padding included (RFC 4861 §4.6).
    ``pack`` zero-pads it so the option is a multiple of 8 bytes."""

    def pack(self) -> bytes:
        units = (len(self.data) + 2 + 7) // 8
        pad = units * 8 - 2 - len(self.data)
        return bytes((self.type, units)) + self.data + b"\x00" * pad


def parse_nd_options(buf: bytes | bytearray | memoryview) -> list[NdOption]:
    """Split ``buf`` into options.

    Raises ``PacketError("icmp6.nd_badopt")`` for a zero length (RFC 4861 §4.6: the packet must be
    discarded) or an option running past the end.
    """
    options: list[NdOption] = []
    i = 0
    n = len(buf)
    while i < n:
        if i + 2 > n:
            raise PacketError("icmp6.nd_badopt", f"option header truncated at {i}")
        length = buf[i + 1] * 8
        if length == 0:
            raise PacketError("icmp6.nd_badopt", f"zero-length option at {i}")
        if i + length > n:
            raise PacketError("icmp6.nd_badopt", f"option at {i} runs past the end")
        options.append(NdOption(buf[i], bytes(buf[i + 2 : i + length])))
        i += length
    return options


def pack_nd_options(options: Sequence[NdOption]) -> bytes:
    return b"".join(option.pack() for option in options)


def _link_layer(options: Sequence[NdOption], option_type: int) -> bytes | None:
    for option in options:
        if option.type == option_type and len(option.data) >= 6:
            return option.data[:6]
    return None


def source_ll(options: Sequence[NdOption]) -> bytes | None:
    """The Ethernet address of the first Source Link-Layer Address option (RFC 4861 §4.6.1)."""
    return _link_layer(options, NdOptionType.SOURCE_LL)


def target_ll(options: Sequence[NdOption]) -> bytes | None:
    """The Ethernet address of the first Target Link-Layer Address option (RFC 4861 §4.6.1)."""
    return _link_layer(options, NdOptionType.TARGET_LL)


def link_layer_option(option_type: int, mac: bytes) -> NdOption:
    """A Source/Target Link-Layer Address option for an Ethernet MAC (RFC 4861 §4.6.1)."""
    return NdOption(option_type, bytes(mac))


def mtu_option(mtu: int) -> NdOption:
    """An MTU option (RFC 4861 §4.6.4)."""
    return NdOption(NdOptionType.MTU, b"\x00\x00" + mtu.to_bytes(4, "big"))


def redirected_header_option(packet: bytes, max_length: int) -> NdOption:
    """A Redirected Header option quoting as much of ``packet`` as fits (RFC 4861 §4.6.3).

    ``max_length`` is the room for the whole option; the quote is cut to a multiple of 8 bytes
    so no padding is needed. Six reserved bytes precede the quoted packet.
    """
    room = ((max_length - 8) // 8) * 8
    quoted = packet[: max(room, 0)]
    return NdOption(NdOptionType.REDIRECTED_HEADER, b"\x00" * 6 + quoted)


_NS = struct.Struct("!BBH4x16s")
_NA = struct.Struct("!BBHB3x16s")
_REDIRECT = struct.Struct("!BBH4x16s16s")

_NA_ROUTER = 0x80
_NA_SOLICITED = 0x40
_NA_OVERRIDE = 0x20


def _check_header(buf: bytes | bytearray | memoryview, icmp_type: int, length: int) -> None:
    if len(buf) < length:
        raise PacketError("icmp6.badlen", f"{len(buf)} bytes, type {icmp_type} needs {length}")
    if buf[0] != icmp_type:
        raise PacketError("icmp6.badtype", f"type {buf[0]}, expected {icmp_type}")
    # RFC 4861 §7.1.1, §7.1.2, §8.1: ICMP Code is 0.
    if buf[1] != 0:
        raise PacketError("icmp6.badcode", f"type {icmp_type} code {buf[1]}")


def _message(icmp_type: int, body: bytes, src: bytes, dst: bytes) -> bytes:
    # body starts at the 4 "rest" bytes after the checksum.
    return Icmp6(icmp_type, 0, 0, body[:4], body[4:]).pack(src, dst)


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    """Neighbor Solicitation (RFC 4861 §4.3)."""

    LENGTH: ClassVar[int] = 24

    target: bytes
    """Target Address, 16 bytes (RFC 4861 §4.3)."""
    options: tuple[NdOption, ...] = ()
    """Options, normally Source Link-Layer Address (RFC 4861 §4.3)."""

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Parse from the ICMPv6 type byte; checksum and hop limit are the caller's to judge."""
        _check_header(buf, Icmp6Type.NEIGHBOR_SOLICIT, 24)
        (_t, _c, _ck, target) = _NS.unpack_from(buf)
        return cls(target, tuple(parse_nd_options(buf[24:])))

    def pack(self, src: bytes, dst: bytes) -> bytes:
        """The whole ICMPv6 message with its checksum."""
        body = bytes(4) + self.target + pack_nd_options(self.options)
        return _message(Icmp6Type.NEIGHBOR_SOLICIT, body, src, dst)


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    """Neighbor Advertisement (RFC 4861 §4.4)."""

    LENGTH: ClassVar[int] = 24

    router: bool
    """R flag: the sender is a router (RFC 4861 §4.4)."""
    solicited: bool
    """S flag: sent in response to a Neighbor Solicitation (RFC 4861 §4.4)."""
    override: bool
    """O flag: override an existing cache entry (RFC 4861 §4.4)."""
    target: bytes
    """Target Address, 16 bytes (RFC 4861 §4.4)."""
    options: tuple[NdOption, ...] = ()
    """Options, normally Target Link-Layer Address (RFC 4861 §4.4)."""

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Parse from the ICMPv6 type byte; checksum and hop limit are the caller's to judge."""
        _check_header(buf, Icmp6Type.NEIGHBOR_ADVERT, 24)
        (_t, _c, _ck, flags, target) = _NA.unpack_from(buf)
        return cls(
            bool(flags & _NA_ROUTER),
            bool(flags & _NA_SOLICITED),
            bool(flags & _NA_OVERRIDE),
            target,
            tuple(parse_nd_options(buf[24:])),
        )

    def pack(self, src: bytes, dst: bytes) -> bytes:
        """The whole ICMPv6 message with its checksum."""
        flags = (
            (_NA_ROUTER if self.router else 0)
            | (_NA_SOLICITED if self.solicited else 0)
            | (_NA_OVERRIDE if self.override else 0)
        )
        body = bytes((flags, 0, 0, 0)) + self.target + pack_nd_options(self.options)
        return _message(Icmp6Type.NEIGHBOR_ADVERT, body, src, dst)


@dataclass(frozen=True, slots=True)
class Redirect:
    """Redirect (RFC 4861 §4.5)."""

    LENGTH: ClassVar[int] = 40

    target: bytes
    """Target Address: the better first hop, normally its link-local address (RFC 4861 §4.5)."""
    destination: bytes
    """Destination Address being redirected (RFC 4861 §4.5)."""
    options: tuple[NdOption, ...] = ()
    """Options: Target Link-Layer Address, Redirected Header (RFC 4861 §4.5)."""

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Parse from the ICMPv6 type byte; checksum and hop limit are the caller's to judge."""
        _check_header(buf, Icmp6Type.REDIRECT, 40)
        (_t, _c, _ck, target, destination) = _REDIRECT.unpack_from(buf)
        return cls(target, destination, tuple(parse_nd_options(buf[40:])))

    def pack(self, src: bytes, dst: bytes) -> bytes:
        """The whole ICMPv6 message with its checksum."""
        body = bytes(4) + self.target + self.destination + pack_nd_options(self.options)
        return _message(Icmp6Type.REDIRECT, body, src, dst)
