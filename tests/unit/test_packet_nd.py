"""Neighbor Discovery messages and options against scapy-built golden messages."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    UDP,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_Redirect,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptRedirectedHdr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    raw,
)

from appliance.packet.errors import PacketError
from appliance.packet.icmpv6 import verify_icmp6
from appliance.packet.nd import (
    NdOption,
    NdOptionType,
    NeighborAdvertisement,
    NeighborSolicitation,
    Redirect,
    link_layer_option,
    mtu_option,
    parse_nd_options,
    redirected_header_option,
    source_ll,
    target_ll,
)

MAC = bytes.fromhex("525400abcdef")


def a6(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


SRC = a6("fe80::1")
DST = a6("ff02::1:ff00:2")


def icmp6_of(layers: object, src: str = "fe80::1", dst: str = "ff02::1:ff00:2") -> bytes:
    return raw(IPv6(src=src, dst=dst, hlim=255) / layers)[40:]


def test_neighbor_solicitation_matches_scapy() -> None:
    wire = icmp6_of(
        ICMPv6ND_NS(tgt="2001:db8::2") / ICMPv6NDOptSrcLLAddr(lladdr="52:54:00:ab:cd:ef")
    )
    ns = NeighborSolicitation.parse(wire)
    assert ns.target == a6("2001:db8::2")
    assert source_ll(ns.options) == MAC
    assert target_ll(ns.options) is None
    assert ns.options == (NdOption(NdOptionType.SOURCE_LL, MAC),)
    assert ns.pack(SRC, DST) == wire
    assert verify_icmp6(SRC, DST, ns.pack(SRC, DST))


def test_neighbor_solicitation_without_options_dad() -> None:
    wire = icmp6_of(ICMPv6ND_NS(tgt="2001:db8::2"), src="::")
    ns = NeighborSolicitation.parse(wire)
    assert ns.options == ()
    assert ns.pack(a6("::"), DST) == wire


@pytest.mark.parametrize(("r", "s", "o"), [(1, 1, 1), (0, 1, 0), (1, 0, 1), (0, 0, 0)])
def test_neighbor_advertisement_flags_match_scapy(r: int, s: int, o: int) -> None:
    wire = icmp6_of(
        ICMPv6ND_NA(R=r, S=s, O=o, tgt="2001:db8::1")
        / ICMPv6NDOptDstLLAddr(lladdr="52:54:00:ab:cd:ef"),
        dst="2001:db8::2",
    )
    na = NeighborAdvertisement.parse(wire)
    assert (na.router, na.solicited, na.override) == (bool(r), bool(s), bool(o))
    assert na.target == a6("2001:db8::1")
    assert target_ll(na.options) == MAC
    built = NeighborAdvertisement(
        bool(r),
        bool(s),
        bool(o),
        a6("2001:db8::1"),
        (link_layer_option(NdOptionType.TARGET_LL, MAC),),
    )
    assert built.pack(SRC, a6("2001:db8::2")) == wire


def test_redirect_matches_scapy() -> None:
    original = raw(IPv6(src="2001:db8::2", dst="2001:db8:9::1") / UDP() / (b"z" * 100))
    wire = icmp6_of(
        ICMPv6ND_Redirect(tgt="fe80::9", dst="2001:db8:9::1")
        / ICMPv6NDOptDstLLAddr(lladdr="52:54:00:ab:cd:ef")
        / ICMPv6NDOptRedirectedHdr(pkt=original),
        dst="2001:db8::2",
    )
    redirect = Redirect.parse(wire)
    assert redirect.target == a6("fe80::9")
    assert redirect.destination == a6("2001:db8:9::1")
    assert target_ll(redirect.options) == MAC
    redirected = [o for o in redirect.options if o.type == NdOptionType.REDIRECTED_HEADER]
    # scapy cuts the quote to a multiple of 8 bytes, as redirected_header_option does.
    assert redirected[0].data[6:] == original[:144]
    assert redirect.pack(SRC, a6("2001:db8::2")) == wire


def test_redirected_header_option_is_trimmed_to_room() -> None:
    original = bytes(range(256)) * 8
    option = redirected_header_option(original, 1000)
    packed = option.pack()
    assert len(packed) <= 1000 and len(packed) % 8 == 0
    assert len(packed) == 1000
    assert packed[8:] == original[:992]
    small = redirected_header_option(b"abc", 1000).pack()
    assert small == bytes((4, 2)) + bytes(6) + b"abc" + bytes(5)


def test_mtu_option_matches_scapy() -> None:
    assert mtu_option(1400).pack() == raw(ICMPv6NDOptMTU(mtu=1400))


def test_options_unknown_kept_and_zero_length_rejected() -> None:
    opts = parse_nd_options(
        bytes((99, 1, 1, 2, 3, 4, 5, 6)) + raw(ICMPv6NDOptSrcLLAddr(lladdr="52:54:00:ab:cd:ef"))
    )
    assert opts[0] == NdOption(99, bytes((1, 2, 3, 4, 5, 6)))
    assert source_ll(opts) == MAC
    for bad in (bytes((1, 0, 0, 0, 0, 0, 0, 0)), bytes((1, 2)) + bytes(6), b"\x01"):
        with pytest.raises(PacketError) as err:
            parse_nd_options(bad)
        assert err.value.reason == "icmp6.nd_badopt"


def test_nd_messages_reject_bad_code_type_and_length() -> None:
    wire = bytearray(icmp6_of(ICMPv6ND_NS(tgt="2001:db8::2")))
    with pytest.raises(PacketError) as err:
        NeighborSolicitation.parse(bytes(wire[:23]))
    assert err.value.reason == "icmp6.badlen"
    wire[1] = 1
    with pytest.raises(PacketError) as err:
        NeighborSolicitation.parse(bytes(wire))
    assert err.value.reason == "icmp6.badcode"
    with pytest.raises(PacketError) as err:
        NeighborAdvertisement.parse(icmp6_of(ICMPv6ND_NS(tgt="2001:db8::2")))
    assert err.value.reason == "icmp6.badtype"
    with pytest.raises(PacketError):
        Redirect.parse(icmp6_of(ICMPv6ND_Redirect(tgt="fe80::9", dst="2001:db8::1"))[:39])
