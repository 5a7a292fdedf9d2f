"""ICMP/ICMPv6 error construction and suppression (appliance/core/icmp_error.py)."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    ICMP,
    IP,
    UDP,
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6ND_Redirect,
    ICMPv6PacketTooBig,
    IPerror,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    raw,
)

from appliance.core.icmp_error import (
    ICMP6_ERROR_MAX,
    ICMP_ERROR_MAX,
    SUPPRESS_BAD_SOURCE,
    SUPPRESS_BROADCAST_DST,
    SUPPRESS_FRAGMENT,
    SUPPRESS_LINK_MULTICAST,
    SUPPRESS_MULTICAST_DST,
    SUPPRESS_OLD_ICMP,
    SUPPRESS_OLD_SHORT,
    icmp4_error,
    icmp6_error,
    should_suppress_v4,
    should_suppress_v6,
    suppression_counter,
)
from appliance.packet.checksum import verify
from appliance.packet.icmp import IcmpType, TimeExceededCode, UnreachCode, frag_needed_rest
from appliance.packet.icmpv6 import Icmp6Type, ParamProblem6Code, Unreach6Code, verify_icmp6
from appliance.packet.ipv4 import IPv4Header

ROUTER4 = bytes((198, 51, 100, 254))
ROUTER6 = ipaddress.IPv6Address("2001:db8:1::1").packed


def udp4(size: int, src: str = "192.0.2.10", dst: str = "203.0.113.5", **ip: object) -> bytes:
    return raw(IP(src=src, dst=dst, **ip) / UDP(sport=33434, dport=33435) / (b"u" * size))


def udp6(size: int, src: str = "2001:db8::10", dst: str = "2001:db8:9::5") -> bytes:
    return raw(IPv6(src=src, dst=dst) / UDP(sport=33434, dport=33435) / (b"u" * size))


# ---- building ---------------------------------------------------------------------------


def test_icmp4_time_exceeded_small_original_matches_scapy() -> None:
    original = udp4(10, ttl=1)
    packet = icmp4_error(
        original, IcmpType.TIME_EXCEEDED, TimeExceededCode.TTL, bytes(4), ROUTER4, 64
    )
    ip = IP(packet)
    assert ip.src == "198.51.100.254" and ip.dst == "192.0.2.10"
    assert ip.proto == 1 and ip.ttl == 64 and ip.len == len(packet)
    assert ip.tos == 0xC0  # precedence 6, RFC 1812 §4.3.2.5
    assert ip.flags == 0 and ip.frag == 0
    assert verify(packet[:20])
    assert verify(packet[20:])
    assert ip[ICMP].type == 11 and ip[ICMP].code == 0
    assert packet[28:] == original  # the whole original fits
    assert ip[IPerror].src == "192.0.2.10"
    # Same bytes as scapy builds it.
    expected = raw(
        IP(src="198.51.100.254", dst="192.0.2.10", ttl=64, tos=0xC0, id=0, proto=1)
        / ICMP(type=11, code=0)
        / original
    )
    assert packet == expected


def test_icmp4_big_original_quoted_to_exactly_576() -> None:
    original = udp4(1400)
    packet = icmp4_error(
        original,
        IcmpType.DEST_UNREACH,
        UnreachCode.FRAG_NEEDED,
        frag_needed_rest(1280),
        ROUTER4,
        64,
    )
    assert len(packet) == ICMP_ERROR_MAX == 576
    assert IPv4Header.parse(packet).total_length == 576
    assert packet[28:] == original[:548]
    assert IP(packet)[ICMP].nexthopmtu == 1280
    assert verify(packet[20:])


def test_icmp4_quote_excludes_link_padding_and_keeps_options() -> None:
    original = raw(IP(src="192.0.2.10", dst="203.0.113.5", options=b"\x94\x04\x00\x00") / b"x")
    packet = icmp4_error(original + b"\x00" * 20, 3, 1, bytes(4), ROUTER4, 64, ident=7)
    assert packet[28:] == original
    assert IPv4Header.parse(packet).ident == 7


def test_programming_errors_raise() -> None:
    with pytest.raises(ValueError):
        icmp4_error(udp4(1), 3, 1, b"\x00", ROUTER4, 64)
    with pytest.raises(ValueError):
        icmp4_error(udp4(1)[:19], 3, 1, bytes(4), ROUTER4, 64)
    with pytest.raises(ValueError):
        icmp6_error(udp6(1), 1, 0, b"", ROUTER6, 64)
    with pytest.raises(ValueError):
        icmp6_error(udp6(1)[:39], 1, 0, bytes(4), ROUTER6, 64)


def test_icmp6_error_matches_scapy() -> None:
    original = udp6(10)
    packet = icmp6_error(original, Icmp6Type.DEST_UNREACH, Unreach6Code.PORT, bytes(4), ROUTER6, 64)
    expected = raw(
        IPv6(src="2001:db8:1::1", dst="2001:db8::10", hlim=64)
        / ICMPv6DestUnreach(code=4)
        / original
    )
    assert packet == expected
    assert verify_icmp6(ROUTER6, original[8:24], packet[40:])


def test_icmp6_big_original_quoted_to_exactly_1280() -> None:
    original = udp6(2000)
    packet = icmp6_error(
        original, Icmp6Type.PACKET_TOO_BIG, 0, (1400).to_bytes(4, "big"), ROUTER6, 255
    )
    assert len(packet) == ICMP6_ERROR_MAX == 1280
    assert int.from_bytes(packet[4:6], "big") == 1240
    assert packet[48:] == original[:1232]
    parsed = IPv6(packet)
    assert parsed[ICMPv6PacketTooBig].mtu == 1400
    assert verify_icmp6(ROUTER6, original[8:24], packet[40:])


def test_icmp6_quote_excludes_link_padding() -> None:
    original = udp6(3)
    packet = icmp6_error(original + bytes(9), 3, 0, bytes(4), ROUTER6, 64)
    assert packet[48:] == original


# ---- IPv4 suppression, each rule on and off ------------------------------------------------


def test_v4_plain_udp_is_not_suppressed() -> None:
    assert should_suppress_v4(udp4(10)) is None


@pytest.mark.parametrize(
    ("error_type", "suppressed"),
    [(3, True), (4, True), (5, True), (11, True), (12, True), (0, False), (8, False), (13, False)],
)
def test_v4_never_about_icmp_errors_but_informational_is_fine(
    error_type: int, suppressed: bool
) -> None:
    original = raw(IP(src="192.0.2.10", dst="203.0.113.5") / ICMP(type=error_type) / b"data")
    reason = should_suppress_v4(original)
    assert reason == (SUPPRESS_OLD_ICMP if suppressed else None)


def test_v4_link_layer_broadcast() -> None:
    assert should_suppress_v4(udp4(1), link_multicast=True) == SUPPRESS_LINK_MULTICAST
    assert should_suppress_v4(udp4(1), link_multicast=False) is None


@pytest.mark.parametrize(
    ("dst", "reason"),
    [
        ("224.0.0.5", SUPPRESS_MULTICAST_DST),
        ("239.1.2.3", SUPPRESS_MULTICAST_DST),
        ("255.255.255.255", SUPPRESS_BROADCAST_DST),
        ("198.51.100.63", SUPPRESS_BROADCAST_DST),
        ("198.51.100.62", None),
    ],
)
def test_v4_ip_broadcast_and_multicast_destination(dst: str, reason: str | None) -> None:
    directed = [bytes((198, 51, 100, 63))]
    assert should_suppress_v4(udp4(1, dst=dst), broadcast_addresses=directed) == reason


def test_v4_non_initial_fragment() -> None:
    later = raw(IP(src="192.0.2.10", dst="203.0.113.5", frag=10, proto=17) / (b"x" * 8))
    first = raw(IP(src="192.0.2.10", dst="203.0.113.5", flags="MF", proto=17) / (b"x" * 8))
    assert should_suppress_v4(later) == SUPPRESS_FRAGMENT
    assert should_suppress_v4(first) is None


@pytest.mark.parametrize(
    ("src", "suppressed"),
    [
        ("0.0.0.0", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("255.255.255.255", True),
        ("198.51.100.63", True),  # a directed broadcast of ours
        ("224.0.0.1", True),
        ("240.0.0.1", True),
        ("192.0.2.10", False),
    ],
)
def test_v4_invalid_source(src: str, suppressed: bool) -> None:
    reason = should_suppress_v4(udp4(1, src=src), broadcast_addresses=[bytes((198, 51, 100, 63))])
    assert reason == (SUPPRESS_BAD_SOURCE if suppressed else None)


def test_v4_unparseable_original() -> None:
    assert should_suppress_v4(b"\x45\x00") == SUPPRESS_OLD_SHORT
    icmp_no_type = raw(IP(src="192.0.2.10", dst="203.0.113.5", proto=1))
    assert should_suppress_v4(icmp_no_type) == SUPPRESS_OLD_SHORT


def test_suppression_counters() -> None:
    assert suppression_counter(SUPPRESS_OLD_ICMP, 4) == "icmp.oldicmp"
    assert suppression_counter(SUPPRESS_OLD_SHORT, 4) == "icmp.oldshort"
    assert suppression_counter(SUPPRESS_BAD_SOURCE, 4) == "icmp.badaddr"
    assert suppression_counter(SUPPRESS_FRAGMENT, 4) is None
    assert suppression_counter(SUPPRESS_OLD_ICMP, 6) == "icmp6.canterror"
    assert suppression_counter(SUPPRESS_MULTICAST_DST, 6) is None


# ---- IPv6 suppression ---------------------------------------------------------------------


UNREACH = (Icmp6Type.DEST_UNREACH, Unreach6Code.ADDRESS)


def test_v6_plain_udp_is_not_suppressed() -> None:
    assert should_suppress_v6(udp6(1), *UNREACH) is None


@pytest.mark.parametrize(
    ("layer", "suppressed"),
    [
        (ICMPv6DestUnreach(), True),
        (ICMPv6PacketTooBig(), True),
        (ICMPv6ND_Redirect(tgt="fe80::1", dst="2001:db8::1"), True),
        (ICMPv6EchoRequest(), False),
    ],
)
def test_v6_never_about_errors_or_redirects(layer: object, suppressed: bool) -> None:
    original = raw(IPv6(src="2001:db8::10", dst="2001:db8:9::5") / layer)
    reason = should_suppress_v6(original, *UNREACH)
    assert reason == (SUPPRESS_OLD_ICMP if suppressed else None)


def test_v6_icmp_error_found_past_extension_headers() -> None:
    original = raw(
        IPv6(src="2001:db8::10", dst="2001:db8:9::5")
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrFragment(offset=0, m=1)
        / ICMPv6DestUnreach()
    )
    assert should_suppress_v6(original, *UNREACH) == SUPPRESS_OLD_ICMP
    later = raw(
        IPv6(src="2001:db8::10", dst="2001:db8:9::5")
        / IPv6ExtHdrFragment(nh=58, offset=8, m=0)
        / b"\x01\x00\x00\x00"
    )
    assert should_suppress_v6(later, *UNREACH) is None


@pytest.mark.parametrize(
    ("icmp_type", "code", "suppressed"),
    [
        (Icmp6Type.DEST_UNREACH, Unreach6Code.PORT, True),
        (Icmp6Type.TIME_EXCEEDED, 0, True),
        (Icmp6Type.PARAM_PROBLEM, ParamProblem6Code.HEADER, True),
        (Icmp6Type.PARAM_PROBLEM, ParamProblem6Code.NEXT_HEADER, True),
        (Icmp6Type.PARAM_PROBLEM, ParamProblem6Code.OPTION, False),
        (Icmp6Type.PACKET_TOO_BIG, 0, False),
    ],
)
def test_v6_multicast_destination_and_its_exceptions(
    icmp_type: int, code: int, suppressed: bool
) -> None:
    to_group = udp6(1, dst="ff0e::1:2")
    assert should_suppress_v6(to_group, icmp_type, code) == (
        SUPPRESS_MULTICAST_DST if suppressed else None
    )
    link = should_suppress_v6(udp6(1), icmp_type, code, link_multicast=True)
    assert link == (SUPPRESS_LINK_MULTICAST if suppressed else None)


@pytest.mark.parametrize(
    ("src", "suppressed"), [("::", True), ("ff02::1", True), ("fe80::1", False)]
)
def test_v6_bad_source(src: str, suppressed: bool) -> None:
    reason = should_suppress_v6(udp6(1, src=src), *UNREACH)
    assert reason == (SUPPRESS_BAD_SOURCE if suppressed else None)
    # Packet Too Big is not exempt from the source rule.
    ptb = should_suppress_v6(udp6(1, src=src), Icmp6Type.PACKET_TOO_BIG, 0)
    assert ptb == (SUPPRESS_BAD_SOURCE if suppressed else None)


def test_v6_unparseable_original() -> None:
    assert should_suppress_v6(b"\x60" + bytes(20), *UNREACH) == SUPPRESS_OLD_SHORT
    truncated_ext = udp6(1)[:40]
    truncated_ext = truncated_ext[:6] + b"\x3c" + truncated_ext[7:]
    assert should_suppress_v6(truncated_ext, *UNREACH) == SUPPRESS_OLD_SHORT
