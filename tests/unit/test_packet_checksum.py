"""Internet checksum, pseudo-headers and the RFC 1624 incremental update."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from scapy.all import IP, UDP, IPv6, raw  # type: ignore[attr-defined]
from scapy.utils import checksum as scapy_checksum

from appliance.packet.checksum import (
    incremental_update,
    internet_checksum,
    ones_complement_sum,
    pseudo_header_v4,
    pseudo_header_v6,
    verify,
)


def reference_sum(data: bytes) -> int:
    """RFC 1071 §4.1 loop, written the slow obvious way."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_rfc1071_example() -> None:
    # RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


def test_all_zero_is_plus_zero_and_nonzero_multiple_is_minus_zero() -> None:
    assert ones_complement_sum(b"\x00" * 10) == 0
    assert ones_complement_sum(b"\xff\xff") == 0xFFFF
    assert ones_complement_sum(b"\x80\x00\x7f\xff") == 0xFFFF
    assert internet_checksum(b"\x00\x00") == 0xFFFF
    assert ones_complement_sum(b"") == 0


def test_odd_length_pads_with_zero() -> None:
    assert ones_complement_sum(b"\xab") == 0xAB00
    assert ones_complement_sum(b"\x01\x02\x03") == 0x0102 + 0x0300
    assert internet_checksum(b"\x12\x34\x56") == scapy_checksum(b"\x12\x34\x56")


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=0xFFFF))
def test_sum_matches_reference_loop(data: bytes, initial: int) -> None:
    expected = reference_sum(data) + initial
    expected = (expected & 0xFFFF) + (expected >> 16)
    got = ones_complement_sum(data, initial)
    # -0 and +0 coincide in one's complement; they differ only when everything is zero.
    assert got == expected or {got, expected} == {0, 0xFFFF}
    assert internet_checksum(data) == scapy_checksum(data)


@given(st.binary(min_size=2, max_size=200))
def test_verify_accepts_data_with_its_checksum(data: bytes) -> None:
    if len(data) % 2:
        data += b"\x00"
    stored = internet_checksum(data)
    assert verify(data + stored.to_bytes(2, "big"))
    assert not verify(data + ((stored + 1) & 0xFFFF).to_bytes(2, "big"))


def test_pseudo_header_v4_matches_scapy_udp() -> None:
    pkt = IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=1234, dport=53) / b"hello!!"
    wire = raw(pkt)
    segment = wire[20:]
    initial = pseudo_header_v4(wire[12:16], wire[16:20], 17, len(segment))
    assert verify(segment, initial)
    zeroed = segment[:6] + b"\x00\x00" + segment[8:]
    assert internet_checksum(zeroed, initial) == int.from_bytes(segment[6:8], "big")


def test_pseudo_header_v6_matches_scapy_udp() -> None:
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2) / b"abc"
    wire = raw(pkt)
    segment = wire[40:]
    initial = pseudo_header_v6(wire[8:24], wire[24:40], 17, len(segment))
    assert verify(segment, initial)
    zeroed = segment[:6] + b"\x00\x00" + segment[8:]
    assert internet_checksum(zeroed, initial) == int.from_bytes(segment[6:8], "big")


def test_incremental_update_ttl_decrement_on_real_header() -> None:
    header = bytearray(raw(IP(src="192.0.2.1", dst="198.51.100.1", ttl=64)))[:20]
    old_word = int.from_bytes(header[8:10], "big")
    header[8] -= 1
    new_word = int.from_bytes(header[8:10], "big")
    updated = incremental_update(int.from_bytes(header[10:12], "big"), old_word, new_word)
    header[10:12] = updated.to_bytes(2, "big")
    assert verify(bytes(header))
    header[10:12] = b"\x00\x00"
    assert updated == internet_checksum(bytes(header))


def test_incremental_update_rfc1624_section4_example() -> None:
    # RFC 1624 §4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
    assert incremental_update(0xDD2F, 0x5555, 0x3285) == 0x0000


def test_incremental_update_unchanged_word_keeps_checksum() -> None:
    # The errata case: eqn. 3 with m == m' would turn 0xffff into 0x0000.
    assert incremental_update(0xFFFF, 0x1234, 0x1234) == 0xFFFF
    assert incremental_update(0x0000, 0x0000, 0x0000) == 0x0000
    assert incremental_update(0xBEEF, 0xFFFF, 0xFFFF) == 0xBEEF


def test_incremental_update_minus_zero_and_plus_zero_words() -> None:
    # A word changing between 0x0000 (+0) and 0xffff (-0) leaves the sum's value unchanged,
    # and the updated checksum must still verify.
    data = bytearray(b"\x12\x34\x00\x00\x56\x78")
    checksum = internet_checksum(bytes(data))
    data[2:4] = b"\xff\xff"
    updated = incremental_update(checksum, 0x0000, 0xFFFF)
    assert verify(bytes(data) + updated.to_bytes(2, "big"))
    back = incremental_update(updated, 0xFFFF, 0x0000)
    data[2:4] = b"\x00\x00"
    assert verify(bytes(data) + back.to_bytes(2, "big"))


@given(
    st.lists(st.integers(min_value=0, max_value=0xFFFF), min_size=1, max_size=30),
    st.data(),
)
def test_incremental_update_matches_recomputation(words: list[int], data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(words) - 1))
    new_word = data.draw(st.integers(min_value=0, max_value=0xFFFF))
    before = struct.pack(f"!{len(words)}H", *words)
    checksum = internet_checksum(before)
    old_word = words[index]
    words[index] = new_word
    after = struct.pack(f"!{len(words)}H", *words)
    updated = incremental_update(checksum, old_word, new_word)
    recomputed = internet_checksum(after)
    assert verify(after + updated.to_bytes(2, "big")) or not any(words)
    # Equal, or the two representations of zero (only when the new data sums to -0/+0).
    assert updated == recomputed or {updated, recomputed} == {0, 0xFFFF}
    if old_word == new_word:
        assert updated == checksum
