"""IPv6 header, fragment header, extension walk and address helpers against scapy."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    AH,
    UDP,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    in6_getnsma,
    raw,
)
from scapy.utils6 import in6_mactoifaceid

from appliance.packet.errors import PacketError
from appliance.packet.ipproto import IPProto
from appliance.packet.ipv6 import (
    IPv6Fragment,
    IPv6Header,
    ipv6_is_link_local,
    ipv6_is_loopback,
    ipv6_is_multicast,
    ipv6_is_unspecified,
    link_local_from_mac,
    solicited_node_multicast,
    walk_extension_headers,
)


def a6(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def test_header_matches_scapy() -> None:
    pkt = IPv6(src="2001:db8::1", dst="2001:db8:1::2", tc=0xB8, fl=0xABCDE, hlim=3)
    wire = raw(pkt / UDP(sport=1, dport=2) / b"hello")
    h = IPv6Header.parse(wire)
    assert h.traffic_class == 0xB8
    assert h.flow_label == 0xABCDE
    assert h.payload_length == len(wire) - 40
    assert h.next_header == IPProto.UDP
    assert h.hop_limit == 3
    assert h.src == a6("2001:db8::1") and h.dst == a6("2001:db8:1::2")
    assert h.pack() == wire[:40]
    assert IPv6Header.LENGTH == 40


def test_header_rejects_short_and_wrong_version() -> None:
    wire = raw(IPv6(src="2001:db8::1", dst="2001:db8::2"))
    with pytest.raises(PacketError) as err:
        IPv6Header.parse(wire[:39])
    assert err.value.reason == "ip6.toosmall"
    with pytest.raises(PacketError) as err:
        IPv6Header.parse(b"\x40" + wire[1:])
    assert err.value.reason == "ip6.badvers"


def test_fragment_header_matches_scapy() -> None:
    frag = raw(IPv6ExtHdrFragment(nh=58, offset=185, m=1, id=0xDEADBEEF))
    f = IPv6Fragment.parse(frag)
    assert f == IPv6Fragment(58, 185, True, 0xDEADBEEF)
    assert f.byte_offset == 1480
    assert not f.is_atomic
    assert f.pack() == frag
    assert IPv6Fragment(17, 0, False, 1).is_atomic
    with pytest.raises(PacketError):
        IPv6Fragment.parse(frag[:7])


def test_walk_no_extension_headers() -> None:
    wire = raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP() / b"x")
    walk = walk_extension_headers(wire[6], wire, 40)
    assert (walk.upper_protocol, walk.upper_offset) == (IPProto.UDP, 40)
    assert walk.headers == [] and walk.fragment is None and walk.fragment_offset is None


def test_walk_full_chain_matches_scapy_layout() -> None:
    pkt = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt(options=[])
        / IPv6ExtHdrRouting(addresses=["2001:db8::3"])
        / AH(nh=44, payloadlen=4, spi=1, icv=b"\x00" * 12)
        / IPv6ExtHdrFragment(offset=0, m=1, id=5)
        / ICMPv6EchoRequest()
    )
    wire = raw(pkt)
    walk = walk_extension_headers(wire[6], wire, 40)
    routing_len = len(raw(IPv6ExtHdrRouting(addresses=["2001:db8::3"])))
    ah_len = len(raw(AH(nh=44, payloadlen=4, spi=1, icv=b"\x00" * 12)))
    offsets = [40, 48, 56, 56 + routing_len, 56 + routing_len + ah_len]
    assert walk.headers == list(
        zip(
            [
                IPProto.HOPOPTS,
                IPProto.IPV6_DSTOPTS,
                IPProto.IPV6_ROUTE,
                IPProto.AH,
                IPProto.IPV6_FRAG,
            ],
            offsets,
            strict=True,
        )
    )
    assert walk.fragment == IPv6Fragment(IPProto.ICMPV6, 0, True, 5)
    assert walk.fragment_offset == offsets[-1]
    assert walk.upper_protocol == IPProto.ICMPV6
    assert walk.upper_offset == offsets[-1] + 8
    assert wire[walk.upper_offset] == 128


def test_walk_stops_after_non_first_fragment() -> None:
    # After a non-first fragment header comes data, even if it looks like a header.
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(nh=0, offset=2, id=9)
    wire = raw(pkt) + b"\x00\xff" + b"\x00" * 14
    walk = walk_extension_headers(wire[6], wire, 40)
    assert walk.fragment is not None and walk.fragment.offset == 2
    assert walk.upper_protocol == 0
    assert walk.upper_offset == 48


def test_walk_truncation_raises() -> None:
    wire = raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrDestOpt() / UDP())
    for cut in (41, 47):
        with pytest.raises(PacketError) as err:
            walk_extension_headers(wire[6], wire[:cut], 40)
        assert err.value.reason == "ip6.tooshort"
    frag = raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment())
    with pytest.raises(PacketError):
        walk_extension_headers(frag[6], frag[:45], 40)
    with pytest.raises(PacketError):
        walk_extension_headers(IPProto.HOPOPTS, wire[:40], 40)


@pytest.mark.parametrize(
    "mac", ["52:54:00:12:34:56", "00:00:00:00:00:00", "02:ff:ff:ff:ff:ff", "fe:ed:be:ef:00:01"]
)
def test_link_local_from_mac_matches_scapy(mac: str) -> None:
    raw_mac = bytes.fromhex(mac.replace(":", ""))
    expected = a6("fe80::" + in6_mactoifaceid(mac))
    assert link_local_from_mac(raw_mac) == expected


def test_link_local_known_value() -> None:
    assert link_local_from_mac(bytes.fromhex("525400123456")) == a6("fe80::5054:ff:fe12:3456")


def test_solicited_node_matches_scapy() -> None:
    addr = "2001:db8::abcd:1234:5678"
    expected = in6_getnsma(a6(addr))
    assert solicited_node_multicast(a6(addr)) == expected
    assert solicited_node_multicast(a6(addr)) == a6("ff02::1:ff34:5678")


def test_address_helpers() -> None:
    assert ipv6_is_multicast(a6("ff02::1"))
    assert not ipv6_is_multicast(a6("2001:db8::1"))
    assert ipv6_is_unspecified(a6("::"))
    assert not ipv6_is_unspecified(a6("::1"))
    assert ipv6_is_loopback(a6("::1"))
    assert ipv6_is_link_local(a6("fe80::1"))
    assert ipv6_is_link_local(a6("febf::1"))
    assert not ipv6_is_link_local(a6("fec0::1"))
