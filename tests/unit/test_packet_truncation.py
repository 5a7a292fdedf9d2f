"""Every header parser raises PacketError (never IndexError/struct.error) on every truncation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import (  # type: ignore[attr-defined]
    ARP,
    ICMP,
    IP,
    UDP,
    Ether,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_Redirect,
    IPv6,
    IPv6ExtHdrFragment,
    raw,
)

from appliance.packet.arp import Arp
from appliance.packet.errors import PacketError
from appliance.packet.ethernet import Ethernet
from appliance.packet.icmp import Icmp
from appliance.packet.icmpv6 import Icmp6
from appliance.packet.ipv4 import IPv4Header
from appliance.packet.ipv6 import IPv6Fragment, IPv6Header, walk_extension_headers
from appliance.packet.nd import (
    NeighborAdvertisement,
    NeighborSolicitation,
    Redirect,
    parse_nd_options,
)
from appliance.packet.udp import Udp

CASES: list[tuple[str, Callable[[bytes | memoryview], object], bytes, int]] = [
    ("ethernet", Ethernet.parse, raw(Ether()), 14),
    ("arp", Arp.parse, raw(ARP(psrc="192.0.2.1", pdst="192.0.2.2")), 28),
    ("ipv4", IPv4Header.parse, raw(IP(src="192.0.2.1", dst="192.0.2.2", options=b"\x01" * 8)), 28),
    ("ipv6", IPv6Header.parse, raw(IPv6(src="2001:db8::1", dst="2001:db8::2")), 40),
    ("ipv6frag", IPv6Fragment.parse, raw(IPv6ExtHdrFragment()), 8),
    ("icmp", Icmp.parse, raw(ICMP()), 8),
    ("icmp6", Icmp6.parse, raw(ICMPv6EchoRequest()), 8),
    ("ns", NeighborSolicitation.parse, raw(ICMPv6ND_NS(tgt="2001:db8::1")), 24),
    ("na", NeighborAdvertisement.parse, raw(ICMPv6ND_NA(tgt="2001:db8::1")), 24),
    ("redirect", Redirect.parse, raw(ICMPv6ND_Redirect(tgt="fe80::1", dst="2001:db8::1")), 40),
    ("udp", Udp.parse, raw(UDP()), 8),
]


@pytest.mark.parametrize(("name", "parse", "wire", "minimum"), CASES, ids=[c[0] for c in CASES])
def test_every_truncation_raises_packet_error(
    name: str, parse: Callable[[bytes | memoryview], object], wire: bytes, minimum: int
) -> None:
    assert len(wire) >= minimum
    parse(wire)
    parse(memoryview(wire))
    for cut in range(minimum):
        with pytest.raises(PacketError) as err:
            parse(wire[:cut])
        assert err.value.reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.sampled_from(CASES))
def test_random_bytes_raise_only_packet_error(
    data: bytes, case: tuple[str, Callable[[bytes | memoryview], object], bytes, int]
) -> None:
    _, parse, wire, _ = case
    # Random bytes, and random bytes on a valid header's prefix (to get past the first checks).
    for buf in (data, wire[: len(wire) // 2] + data):
        try:
            parse(buf)
        except PacketError as err:
            assert err.reason


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0, 43, 44, 51, 60, 17, 58, 59]), st.binary(max_size=120))
def test_extension_walk_on_random_bytes(next_header: int, data: bytes) -> None:
    buf = bytes(40) + data
    try:
        walk = walk_extension_headers(next_header, buf, 40)
    except PacketError as err:
        assert err.reason == "ip6.tooshort"
        return
    assert 40 <= walk.upper_offset <= len(buf)
    assert [off for _, off in walk.headers] == sorted(off for _, off in walk.headers)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_nd_options_on_random_bytes(data: bytes) -> None:
    try:
        options = parse_nd_options(data)
    except PacketError as err:
        assert err.reason == "icmp6.nd_badopt"
        return
    assert sum(len(o.data) + 2 for o in options) == len(data)
