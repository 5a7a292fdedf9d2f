"""IPv4 header codec against scapy-built golden packets."""

from __future__ import annotations

import dataclasses

import pytest
from scapy.all import ICMP, IP, raw  # type: ignore[attr-defined]

from appliance.packet.checksum import verify
from appliance.packet.errors import PacketError
from appliance.packet.ipproto import IPProto
from appliance.packet.ipv4 import (
    IPV4_DF,
    IPV4_MF,
    IPv4Header,
    ipv4_is_class_e,
    ipv4_is_limited_broadcast,
    ipv4_is_loopback,
    ipv4_is_multicast,
    ipv4_is_unspecified,
    ipv4_option_copied,
    split_ipv4_options,
)

SRC = bytes((192, 0, 2, 1))
DST = bytes((198, 51, 100, 9))


def test_parse_matches_scapy_fields() -> None:
    pkt = IP(src="192.0.2.1", dst="198.51.100.9", tos=0xB8, id=0x1234, flags="DF", ttl=17)
    wire = raw(pkt / ICMP() / b"payload")
    h = IPv4Header.parse(wire)
    ref = IP(wire)
    assert h.tos == ref.tos == 0xB8
    assert h.total_length == ref.len == len(wire)
    assert h.ident == ref.id
    assert h.flags == int(ref.flags) == IPV4_DF
    assert h.frag_offset == ref.frag == 0
    assert h.ttl == ref.ttl == 17
    assert h.proto == ref.proto == IPProto.ICMP
    assert h.checksum == ref.chksum
    assert h.src == SRC and h.dst == DST
    assert h.options == b""
    assert (h.ihl, h.header_length) == (5, 20)
    assert h.dont_fragment and not h.more_fragments and not h.is_fragment
    assert h.pack() == wire[:20]
    assert h.pack(with_checksum=False) == wire[:20]


def test_pack_recomputes_checksum_unless_told_not_to() -> None:
    wire = raw(IP(src="192.0.2.1", dst="198.51.100.9") / b"abc")
    h = dataclasses.replace(IPv4Header.parse(wire), ttl=1, checksum=0xDEAD)
    packed = h.pack()
    assert verify(packed)
    assert packed == raw(IP(src="192.0.2.1", dst="198.51.100.9", ttl=1) / b"abc")[:20]
    assert packed[10:12] != b"\xde\xad"
    assert h.pack(with_checksum=False)[10:12] == b"\xde\xad"


def test_fragment_fields_match_scapy() -> None:
    wire = raw(IP(src="192.0.2.1", dst="198.51.100.9", flags="MF", frag=185, id=7) / (b"x" * 8))
    h = IPv4Header.parse(wire)
    assert h.flags == IPV4_MF
    assert h.frag_offset == 185
    assert h.more_fragments and h.is_fragment and not h.dont_fragment
    assert h.pack() == wire[:20]
    last = IPv4Header.parse(raw(IP(src="192.0.2.1", dst="198.51.100.9", frag=3) / b"x"))
    assert last.is_fragment and not last.more_fragments


def test_options_are_kept_and_packed() -> None:
    # Router Alert (copied) followed by NOP and End of options, then padding.
    options = b"\x94\x04\x00\x00" + b"\x01\x00\x00\x00"
    wire = raw(IP(src="192.0.2.1", dst="198.51.100.9", options=options) / b"data")
    h = IPv4Header.parse(wire)
    assert h.options == options
    assert (h.ihl, h.header_length) == (7, 28)
    assert h.pack() == wire[:28]
    assert IP(wire).ihl == 7


def test_split_options_and_copied_flag() -> None:
    # Record Route (not copied), NOP, Router Alert (copied), End, padding.
    rr = b"\x07\x07\x04" + b"\x00" * 4
    ra = b"\x94\x04\x00\x00"
    assert split_ipv4_options(rr + b"\x01" + ra + b"\x00\x00\x00\x00") == [rr, b"\x01", ra]
    assert not ipv4_option_copied(rr[0])
    assert ipv4_option_copied(ra[0])
    with pytest.raises(PacketError) as err:
        split_ipv4_options(b"\x07\x09\x04\x00")
    assert err.value.reason == "ip.badoptions"
    with pytest.raises(PacketError):
        split_ipv4_options(b"\x07\x01")
    with pytest.raises(PacketError):
        split_ipv4_options(b"\x01\x07")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:19], "ip.toosmall"),
        (lambda b: b"\x65" + b[1:], "ip.badvers"),
        (lambda b: b"\x44" + b[1:], "ip.badhlen"),
        (lambda b: b"\x46" + b[1:20], "ip.badhlen"),
    ],
)
def test_parse_rejects(mutate: object, reason: str) -> None:
    wire = raw(IP(src="192.0.2.1", dst="198.51.100.9") / b"abcd")
    with pytest.raises(PacketError) as err:
        IPv4Header.parse(mutate(wire))  # type: ignore[operator]
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)


def test_parse_does_not_judge_checksum_ttl_or_length() -> None:
    wire = bytearray(raw(IP(src="192.0.2.1", dst="198.51.100.9", ttl=0) / b"abcd"))
    wire[10:12] = b"\x00\x00"
    wire[2:4] = (9999).to_bytes(2, "big")
    h = IPv4Header.parse(bytes(wire))
    assert (h.ttl, h.checksum, h.total_length) == (0, 0, 9999)


def test_address_classes() -> None:
    assert ipv4_is_unspecified(b"\x00\x00\x00\x00")
    assert not ipv4_is_unspecified(SRC)
    assert ipv4_is_loopback(bytes((127, 1, 2, 3)))
    assert not ipv4_is_loopback(SRC)
    assert ipv4_is_multicast(bytes((224, 0, 0, 1)))
    assert ipv4_is_multicast(bytes((239, 255, 255, 255)))
    assert not ipv4_is_multicast(bytes((240, 0, 0, 1)))
    assert ipv4_is_class_e(bytes((240, 0, 0, 1)))
    assert not ipv4_is_class_e(b"\xff\xff\xff\xff")
    assert ipv4_is_limited_broadcast(b"\xff\xff\xff\xff")
    assert not ipv4_is_limited_broadcast(DST)


def test_pack_refuses_more_than_40_bytes_of_options() -> None:
    header = IPv4Header(0, 64, 0, 0, 0, 64, 17, 0, SRC, DST, b"\x01" * 44)
    with pytest.raises(ValueError):
        header.pack()
    assert IPv4Header(0, 60, 0, 0, 0, 64, 17, 0, SRC, DST, b"\x01" * 40).ihl == 15
