"""Building ICMP and ICMPv6 error messages, and deciding when not to send one.

Pure functions; the router picks the source address (the inbound interface's, RFC 1812
§4.3.2.4), the TTL/hop limit (``net.inet.ip.ttl`` / ``net.inet6.ip6.hlim``), rate-limits with
``appliance.core.ratelimit.TokenBucket`` and counts.

- ``icmp4_error(original, icmp_type, code, rest, src, ttl)`` -> a whole IPv4 packet quoting as
  much of ``original`` as fits in 576 bytes (RFC 1812 §4.3.2.3).
- ``icmp6_error(original, icmp_type, code, rest, src, hop_limit)`` -> a whole IPv6 packet
  quoting as much of ``original`` as fits in 1280 bytes (RFC 4443 §2.4 (c)).
- ``should_suppress_v4(original, ...)`` / ``should_suppress_v6(original, icmp_type, code,
  ...)`` -> ``None`` when the error may be sent, else the reason (one of the ``SUPPRESS_*``
  strings). ``suppression_counter(reason, version)`` names the Stats key that BSD bumps for
  that reason, or ``None`` where BSD counts nothing.

``original`` is the offending datagram as received, from its IP header on (no link layer).
Bytes past the IP total length (Ethernet padding) are not quoted.
"""

from __future__ import annotations

from collections.abc import Collection

from appliance.packet.checksum import internet_checksum, pseudo_header_v6
from appliance.packet.icmp import is_error_type
from appliance.packet.icmpv6 import Icmp6Type, ParamProblem6Code, is_error_type6
from appliance.packet.ipproto import IPProto
from appliance.packet.ipv4 import (
    IPv4Header,
    ipv4_is_class_e,
    ipv4_is_limited_broadcast,
    ipv4_is_loopback,
    ipv4_is_multicast,
    ipv4_is_unspecified,
)
from appliance.packet.ipv6 import (
    IPv6Header,
    ipv6_is_multicast,
    ipv6_is_unspecified,
    walk_extension_headers,
)

__all__ = [
    "ICMP6_ERROR_MAX",
    "ICMP_ERROR_MAX",
    "SUPPRESS_BAD_SOURCE",
    "SUPPRESS_BROADCAST_DST",
    "SUPPRESS_FRAGMENT",
    "SUPPRESS_LINK_MULTICAST",
    "SUPPRESS_MULTICAST_DST",
    "SUPPRESS_OLD_ICMP",
    "SUPPRESS_OLD_SHORT",
    "icmp4_error",
    "icmp6_error",
    "should_suppress_v4",
    "should_suppress_v6",
    "suppression_counter",
]

ICMP_ERROR_MAX = 576
"""Largest ICMPv4 error datagram, IP header included (RFC 1812 §4.3.2.3)."""
ICMP6_ERROR_MAX = 1280
"""Largest ICMPv6 error packet, IPv6 header included: the IPv6 minimum MTU (RFC 4443 §2.4 (c))."""

TOS_INTERNETWORK_CONTROL = 0xC0
"""Precedence 6, which RFC 1812 §4.3.2.5 recommends for ICMP errors other than Source Quench."""

SUPPRESS_OLD_ICMP = "oldicmp"
"""The original is an ICMP error (or, for IPv6, a Redirect) (RFC 1812 §4.3.2.7,
RFC 4443 §2.4 (e.1), (e.2))."""
SUPPRESS_OLD_SHORT = "oldshort"
"""The original is too short or malformed to quote or to judge."""
SUPPRESS_LINK_MULTICAST = "link-multicast"
"""The original arrived as a link-layer broadcast or multicast (RFC 1812 §4.3.2.7,
RFC 4443 §2.4 (e.3))."""
SUPPRESS_MULTICAST_DST = "multicast-dst"
"""The original's destination is an IP multicast address (RFC 1812 §4.3.2.7,
RFC 4443 §2.4 (e.3))."""
SUPPRESS_BROADCAST_DST = "broadcast-dst"
"""The original's destination is an IPv4 broadcast address (RFC 1812 §4.3.2.7)."""
SUPPRESS_FRAGMENT = "fragment"
"""The original is a non-initial IPv4 fragment (RFC 1812 §4.3.2.7)."""
SUPPRESS_BAD_SOURCE = "bad-source"
"""The original's source does not name a single host: 0.0.0.0, 127/8, a broadcast, multicast
or class E address (RFC 1812 §4.3.2.7); for IPv6 unspecified or multicast (RFC 4443 §2.4 (e.5))."""

_COUNTERS_V4 = {
    SUPPRESS_OLD_ICMP: "icmp.oldicmp",
    SUPPRESS_OLD_SHORT: "icmp.oldshort",
    SUPPRESS_BAD_SOURCE: "icmp.badaddr",
}
_COUNTERS_V6 = {SUPPRESS_OLD_ICMP: "icmp6.canterror"}


def suppression_counter(reason: str, version: int) -> str | None:
    """The Stats key FreeBSD bumps when it suppresses an error for ``reason``, if any.

    IPv4: ``icmp.oldicmp``, ``icmp.oldshort``, ``icmp.badaddr`` (invalid return address).
    IPv6: ``icmp6.canterror`` for errors about ICMPv6 errors and redirects. The other reasons
    are silent in BSD (``goto freeit``); the router may still trace them.
    """
    return (_COUNTERS_V4 if version == 4 else _COUNTERS_V6).get(reason)


def _trim_v4(original: bytes) -> bytes:
    """The datagram without link-layer padding past Total Length."""
    if len(original) >= 4:
        total = int.from_bytes(original[2:4], "big")
        if 20 <= total < len(original):
            return original[:total]
    return original


def _trim_v6(original: bytes) -> bytes:
    if len(original) >= 6:
        total = 40 + int.from_bytes(original[4:6], "big")
        if total < len(original):
            return original[:total]
    return original


def icmp4_error(
    original: bytes,
    icmp_type: int,
    code: int,
    rest: bytes,
    src: bytes,
    ttl: int,
    *,
    ident: int = 0,
    tos: int = TOS_INTERNETWORK_CONTROL,
    max_length: int = ICMP_ERROR_MAX,
) -> bytes:
    """A complete IPv4 packet carrying an ICMP error about ``original``.

    The destination is ``original``'s source; ``src`` is the router's address on the inbound
    interface. ``rest`` is the 4 bytes after the ICMP checksum (``frag_needed_rest(mtu)``,
    ``param_problem_rest(ptr)``, the gateway of a redirect, or zeros). The quote is as much of
    ``original`` as keeps the whole packet within ``max_length`` (576, RFC 1812 §4.3.2.3);
    the IP header carries no options, DF clear, ``ident`` as given.
    """
    if len(rest) != 4:
        raise ValueError(f"rest must be 4 bytes, got {len(rest)}")
    if len(original) < 20:
        raise ValueError("original is shorter than an IPv4 header (see should_suppress_v4)")
    quote = _trim_v4(original)[: max_length - 28]
    icmp = bytes((icmp_type, code, 0, 0)) + rest + quote
    checksum = internet_checksum(icmp)
    icmp = icmp[:2] + checksum.to_bytes(2, "big") + icmp[4:]
    header = IPv4Header(
        tos=tos,
        total_length=20 + len(icmp),
        ident=ident & 0xFFFF,
        flags=0,
        frag_offset=0,
        ttl=ttl,
        proto=IPProto.ICMP,
        checksum=0,
        src=src,
        dst=bytes(original[12:16]),
    )
    return header.pack() + icmp


def icmp6_error(
    original: bytes,
    icmp_type: int,
    code: int,
    rest: bytes,
    src: bytes,
    hop_limit: int,
    *,
    traffic_class: int = 0,
    max_length: int = ICMP6_ERROR_MAX,
) -> bytes:
    """A complete IPv6 packet carrying an ICMPv6 error about ``original``.

    The destination is ``original``'s source. ``rest`` is the 4 bytes after the checksum
    (the MTU of Packet Too Big, the pointer of Parameter Problem, or zeros: RFC 4443 §3).
    The quote is as much of ``original`` as keeps the packet within ``max_length`` (1280,
    RFC 4443 §2.4 (c)).
    """
    if len(rest) != 4:
        raise ValueError(f"rest must be 4 bytes, got {len(rest)}")
    if len(original) < 40:
        raise ValueError("original is shorter than an IPv6 header (see should_suppress_v6)")
    dst = bytes(original[8:24])
    quote = _trim_v6(original)[: max_length - 48]
    icmp = bytes((icmp_type, code, 0, 0)) + rest + quote
    checksum = internet_checksum(icmp, pseudo_header_v6(src, dst, IPProto.ICMPV6, len(icmp)))
    icmp = icmp[:2] + checksum.to_bytes(2, "big") + icmp[4:]
    header = IPv6Header(
        traffic_class=traffic_class,
        flow_label=0,
        payload_length=len(icmp),
        next_header=IPProto.ICMPV6,
        hop_limit=hop_limit,
        src=src,
        dst=dst,
    )
    return header.pack() + icmp


def _is_broadcast_v4(addr: bytes, broadcasts: Collection[bytes]) -> bool:
    return ipv4_is_limited_broadcast(addr) or addr in broadcasts


def should_suppress_v4(
    original: bytes,
    *,
    link_multicast: bool = False,
    broadcast_addresses: Collection[bytes] = (),
) -> str | None:
    """Why no ICMP error may be sent about ``original``, or None if one may (RFC 1812 §4.3.2.7).

    ``link_multicast``: the frame arrived with a broadcast or multicast destination MAC.
    ``broadcast_addresses``: the directed broadcast addresses of the router's subnets (the
    limited broadcast 255.255.255.255 is always one).

    Never about: an ICMP error message (informational ICMP such as echo is fine); a datagram
    sent as a link-layer broadcast/multicast; one to an IP broadcast or multicast address; a
    non-initial fragment; one whose source is not a single host (0.0.0.0, 127/8, broadcast,
    multicast, class E).
    """
    try:
        header = IPv4Header.parse(original)
    except ValueError:
        return SUPPRESS_OLD_SHORT
    if header.frag_offset != 0:
        return SUPPRESS_FRAGMENT
    if link_multicast:
        return SUPPRESS_LINK_MULTICAST
    dst = header.dst
    if ipv4_is_multicast(dst):
        return SUPPRESS_MULTICAST_DST
    if _is_broadcast_v4(dst, broadcast_addresses):
        return SUPPRESS_BROADCAST_DST
    src = header.src
    if (
        ipv4_is_unspecified(src)
        or ipv4_is_loopback(src)
        or ipv4_is_multicast(src)
        or ipv4_is_class_e(src)
        or _is_broadcast_v4(src, broadcast_addresses)
    ):
        return SUPPRESS_BAD_SOURCE
    if header.proto == IPProto.ICMP:
        hlen = header.header_length
        if len(original) <= hlen:
            return SUPPRESS_OLD_SHORT
        if is_error_type(original[hlen]):
            return SUPPRESS_OLD_ICMP
    return None


def _multicast_exempt_v6(icmp_type: int, code: int) -> bool:
    # RFC 4443 §2.4 (e.3) exceptions: Packet Too Big for path MTU discovery, and Parameter
    # Problem code 2 about an unrecognised option whose type asks for a report (RFC 8200 §4.2).
    return icmp_type == Icmp6Type.PACKET_TOO_BIG or (
        icmp_type == Icmp6Type.PARAM_PROBLEM and code == ParamProblem6Code.OPTION
    )


def should_suppress_v6(
    original: bytes, icmp_type: int, code: int, *, link_multicast: bool = False
) -> str | None:
    """Why no ICMPv6 error ``icmp_type``/``code`` may be sent about ``original``, or None.

    Never about: an ICMPv6 error or a Redirect (e.1, e.2); a packet to a multicast address or
    sent as link-layer multicast/broadcast, except Packet Too Big and Parameter Problem code 2
    (e.3, e.4); one whose source is unspecified or multicast (e.5) (RFC 4443 §2.4 (e)).
    The ICMPv6 header of the original is found past its extension headers; a non-initial
    fragment has none to judge.
    """
    try:
        header = IPv6Header.parse(original)
    except ValueError:
        return SUPPRESS_OLD_SHORT
    if (link_multicast or ipv6_is_multicast(header.dst)) and not _multicast_exempt_v6(
        icmp_type, code
    ):
        return SUPPRESS_LINK_MULTICAST if link_multicast else SUPPRESS_MULTICAST_DST
    if ipv6_is_unspecified(header.src) or ipv6_is_multicast(header.src):
        return SUPPRESS_BAD_SOURCE
    # RFC 7112 §5: Parameter Problem code 3 is about a first fragment whose header chain is
    # cut short, so a chain that cannot be walked to its end is what it reports, not a
    # reason to stay silent.
    incomplete_chain = (icmp_type, code) == (Icmp6Type.PARAM_PROBLEM,
                                             ParamProblem6Code.INCOMPLETE_CHAIN)
    try:
        walk = walk_extension_headers(header.next_header, original, 40)
    except ValueError:
        return None if incomplete_chain else SUPPRESS_OLD_SHORT
    if walk.upper_protocol == IPProto.ICMPV6 and (
        walk.fragment is None or walk.fragment.offset == 0
    ):
        if len(original) <= walk.upper_offset:
            return None if incomplete_chain else SUPPRESS_OLD_SHORT
        quoted_type = original[walk.upper_offset]
        if is_error_type6(quoted_type) or quoted_type == Icmp6Type.REDIRECT:
            return SUPPRESS_OLD_ICMP
    return None
