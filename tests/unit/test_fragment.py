"""IPv4 fragmentation and IPv4/IPv6 reassembly (appliance/core/fragment.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import (  # type: ignore[attr-defined]
    IP,
    UDP,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    raw,
)
from scapy.layers.inet import defragment
from scapy.layers.inet6 import fragment6

from appliance.core.fragment import (
    CannotFragment,
    Reassembler,
    Reassembly,
    fragment_ipv4,
)
from appliance.packet.checksum import verify
from appliance.packet.errors import PacketError
from appliance.packet.ipv4 import IPV4_MF, IPv4Header, split_ipv4_options
from appliance.packet.ipv6 import IPv6Fragment, IPv6Header

ROUTER_ALERT = b"\x94\x04\x00\x00"  # copied flag set
RECORD_ROUTE = b"\x07\x07\x04\x00\x00\x00\x00"  # copied flag clear


def v4_datagram(size: int, ident: int = 0x4242, options: bytes = b"", flags: int = 0) -> bytes:
    data = bytes(i & 0xFF for i in range(size))
    return raw(
        IP(src="192.0.2.1", dst="198.51.100.1", id=ident, flags=flags, options=options)
        / UDP(sport=1000, dport=2000)
        / data
    )


def v4_fragment(ident: int, offset: int, data: bytes, more: bool, proto: int = 17) -> bytes:
    """A hand-made fragment: ``offset`` in bytes."""
    return raw(
        IP(
            src="192.0.2.1",
            dst="198.51.100.1",
            id=ident,
            proto=proto,
            flags="MF" if more else 0,
            frag=offset // 8,
        )
        / data
    )


def v6_fragment(ident: int, offset: int, data: bytes, more: bool, nh: int = 17) -> bytes:
    return raw(
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(nh=nh, offset=offset // 8, m=int(more), id=ident)
        / data
    )


def feed_v4(r: Reassembler, fragments: list[bytes], now: float = 0.0) -> list[Reassembly]:
    return [r.add_v4(f, now) for f in fragments]


# ---- fragmentation ---------------------------------------------------------------------------


def test_datagram_that_fits_is_returned_unchanged() -> None:
    packet = v4_datagram(100)
    assert fragment_ipv4(packet, 1500) == [packet]
    # Link-layer padding past Total Length is cut.
    assert fragment_ipv4(packet + b"\x00" * 6, 1500) == [packet]


def test_df_set_cannot_fragment() -> None:
    packet = v4_datagram(2000, flags=2)
    with pytest.raises(CannotFragment) as err:
        fragment_ipv4(packet, 1500)
    assert err.value.reason == "ip.cantfrag"
    # DF on a datagram that fits is fine.
    assert fragment_ipv4(packet, 4000) == [packet]


def test_mtu_too_small_cannot_fragment() -> None:
    with pytest.raises(CannotFragment):
        fragment_ipv4(v4_datagram(100), 27)
    assert len(fragment_ipv4(v4_datagram(100), 28)) == 14


def test_malformed_datagram_raises_packet_error() -> None:
    with pytest.raises(PacketError):
        fragment_ipv4(b"\x45\x00", 1500)
    truncated = v4_datagram(100)[:60]
    with pytest.raises(PacketError) as err:
        fragment_ipv4(truncated, 40)
    assert err.value.reason == "ip.badlen"


@pytest.mark.parametrize("mtu", [68, 576, 1006, 1280, 1500])
@pytest.mark.parametrize("size", [1, 1473, 3000, 8000])
def test_fragments_fit_align_and_reassemble(mtu: int, size: int) -> None:
    packet = v4_datagram(size)
    original = IPv4Header.parse(packet)
    fragments = fragment_ipv4(packet, mtu)
    if len(packet) <= mtu:
        assert fragments == [packet]
        return
    assert len(fragments) >= 2
    expected_offset = 0
    for i, frag in enumerate(fragments):
        h = IPv4Header.parse(frag)
        last = i == len(fragments) - 1
        assert len(frag) <= mtu
        assert h.total_length == len(frag)
        assert verify(frag[: h.header_length])
        assert h.frag_offset * 8 == expected_offset
        assert h.more_fragments == (not last)
        assert (h.ident, h.ttl, h.proto, h.src, h.dst, h.tos) == (
            original.ident,
            original.ttl,
            original.proto,
            original.src,
            original.dst,
            original.tos,
        )
        data_len = len(frag) - h.header_length
        if not last:
            assert data_len % 8 == 0 and data_len > 0
        expected_offset += data_len
    assert expected_offset == len(packet) - 20
    # scapy reassembles our fragments into the original, byte for byte.
    rebuilt = defragment([IP(f) for f in fragments])
    assert len(rebuilt) == 1
    assert raw(rebuilt[0]) == packet
    # And so does our reassembler.
    results = feed_v4(Reassembler(max_fragments=len(fragments)), fragments)
    assert results[-1].datagram == packet
    assert all(r.held for r in results[:-1])


def test_options_copied_only_when_copy_flag_set() -> None:
    options = RECORD_ROUTE + ROUTER_ALERT + b"\x01"  # 12 bytes with NOP, padded by scapy
    packet = v4_datagram(3000, options=options)
    fragments = fragment_ipv4(packet, 1500)
    first = IPv4Header.parse(fragments[0])
    assert first.options == IPv4Header.parse(packet).options
    for frag in fragments[1:]:
        h = IPv4Header.parse(frag)
        assert split_ipv4_options(h.options) == [ROUTER_ALERT]
        assert h.header_length == 24
    results = feed_v4(Reassembler(), list(reversed(fragments)))
    assert results[-1].datagram == packet


def test_no_copied_options_gives_plain_headers_after_the_first() -> None:
    packet = v4_datagram(2000, options=RECORD_ROUTE + b"\x00")
    fragments = fragment_ipv4(packet, 1000)
    assert IPv4Header.parse(fragments[0]).header_length == 28
    assert all(IPv4Header.parse(f).header_length == 20 for f in fragments[1:])
    assert feed_v4(Reassembler(), fragments)[-1].datagram == packet


def test_fragmenting_a_fragment_keeps_offset_and_mf() -> None:
    middle = v4_fragment(9, 1480, bytes(range(256)) * 4, more=True)
    pieces = fragment_ipv4(middle, 300)
    headers = [IPv4Header.parse(p) for p in pieces]
    assert headers[0].frag_offset * 8 == 1480
    assert all(h.flags & IPV4_MF for h in headers)  # the original had MF: so do all pieces
    last = v4_fragment(9, 2504, b"z" * 100, more=False)
    tail = fragment_ipv4(last, 60)
    assert not IPv4Header.parse(tail[-1]).more_fragments
    assert all(IPv4Header.parse(t).more_fragments for t in tail[:-1])
    assert IPv4Header.parse(tail[0]).frag_offset * 8 == 2504


# ---- IPv4 reassembly ---------------------------------------------------------------------------


def four_fragments() -> tuple[bytes, list[bytes]]:
    packet = v4_datagram(100, ident=0x77)
    return packet, fragment_ipv4(packet, 52)


def test_every_order_of_four_fragments_reassembles() -> None:
    packet, fragments = four_fragments()
    assert len(fragments) == 4
    for order in itertools.permutations(fragments):
        r = Reassembler()
        results = feed_v4(r, list(order))
        assert all(res.held for res in results[:-1])
        assert results[-1].datagram == packet
        assert r.counters["ip.fragments"] == 4
        assert r.counters["ip.reassembled"] == 1
        assert len(r) == 0 and r.bytes_held == 0


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=4000),
    mtu=st.integers(min_value=68, max_value=1500),
    data=st.data(),
)
def test_random_orders_reassemble(size: int, mtu: int, data: st.DataObject) -> None:
    packet = v4_datagram(size)
    fragments = fragment_ipv4(packet, mtu)
    order = data.draw(st.permutations(fragments))
    results = feed_v4(Reassembler(max_fragments=100), order)
    assert [res.datagram for res in results if res.datagram is not None] == [packet]
    assert results[-1].datagram == packet


def test_non_fragment_is_passed_through_uncounted() -> None:
    packet = v4_datagram(50)
    r = Reassembler()
    res = r.add_v4(packet + b"\x00\x00", 0.0)
    assert res.datagram == packet
    assert res.counters == {}
    assert len(r) == 0


def test_interleaved_datagrams_are_kept_apart() -> None:
    a = v4_datagram(200, ident=1)
    b = v4_datagram(200, ident=2)
    fa, fb = fragment_ipv4(a, 100), fragment_ipv4(b, 100)
    r = Reassembler()
    out = [r.add_v4(f, 0.0).datagram for pair in zip(fa, fb, strict=True) for f in pair]
    assert [d for d in out if d is not None] == [a, b]


@pytest.mark.parametrize(
    ("second_offset", "second_len"),
    [(8, 16), (0, 8), (16, 8), (0, 24), (8, 8)],
    ids=["partial-tail", "inside-head", "inside-tail", "covers", "inside-middle"],
)
def test_overlap_drops_the_whole_datagram(second_offset: int, second_len: int) -> None:
    r = Reassembler()
    held = [
        r.add_v4(v4_fragment(5, 0, b"A" * 24, more=True), 0.0),
        r.add_v4(v4_fragment(5, 40, b"C" * 8, more=True), 0.0),
    ]
    assert all(h.held for h in held)
    res = r.add_v4(v4_fragment(5, second_offset, b"B" * second_len, more=True), 0.0)
    assert res.drop == "ip.fragdropped"
    assert res.detail == "overlap"
    assert res.counters["ip.fragdropped"] == 3  # two held and this one
    assert len(r) == 0 and r.bytes_held == 0
    # The rest of the datagram now starts afresh and cannot complete on its own.
    assert r.add_v4(v4_fragment(5, 24, b"D" * 16, more=True), 0.0).held
    assert r.add_v4(v4_fragment(5, 48, b"E" * 8, more=False), 0.0).held


def test_exact_duplicate_dropped_alone() -> None:
    packet, fragments = four_fragments()
    r = Reassembler()
    assert r.add_v4(fragments[1], 0.0).held
    dup = r.add_v4(fragments[1], 0.0)
    assert dup.drop == "ip.fragdropped" and dup.detail == "duplicate"
    assert dup.counters == {"ip.fragments": 1, "ip.fragdropped": 1}
    results = feed_v4(r, [fragments[0], fragments[3], fragments[3], fragments[2]])
    assert results[1].held and results[2].detail == "duplicate"
    assert results[-1].datagram == packet


def test_same_range_different_bytes_is_an_overlap() -> None:
    r = Reassembler()
    assert r.add_v4(v4_fragment(5, 8, b"A" * 8, more=True), 0.0).held
    res = r.add_v4(v4_fragment(5, 8, b"B" * 8, more=True), 0.0)
    assert res.detail == "overlap" and res.counters["ip.fragdropped"] == 2


def test_inconsistent_last_fragments_drop_the_datagram() -> None:
    r = Reassembler()
    assert r.add_v4(v4_fragment(6, 16, b"x" * 8, more=False), 0.0).held
    res = r.add_v4(v4_fragment(6, 32, b"y" * 8, more=False), 0.0)
    assert res.drop == "ip.fragdropped" and res.counters["ip.fragdropped"] == 2
    assert r.add_v4(v4_fragment(7, 16, b"x" * 8, more=False), 0.0).held
    res = r.add_v4(v4_fragment(7, 24, b"y" * 8, more=True), 0.0)
    assert res.detail == "data past the last fragment"
    assert r.add_v4(v4_fragment(8, 32, b"x" * 8, more=True), 0.0).held
    res = r.add_v4(v4_fragment(8, 8, b"y" * 8, more=False), 0.0)
    assert res.detail == "data past the last fragment"
    assert len(r) == 0


def test_non_last_fragment_length_must_be_multiple_of_eight() -> None:
    r = Reassembler()
    res = r.add_v4(v4_fragment(5, 0, b"A" * 12, more=True), 0.0)
    assert res.drop == "ip.fragdropped"
    assert res.counters == {"ip.fragments": 1, "ip.toosmall": 1, "ip.fragdropped": 1}
    assert len(r) == 0


def test_fragment_past_65535_is_dropped() -> None:
    r = Reassembler()
    res = r.add_v4(v4_fragment(5, 65528, b"A" * 8, more=False), 0.0)
    assert res.counters.get("ip.toolong") == 1 and res.drop == "ip.fragdropped"
    assert r.add_v4(v4_fragment(5, 65504, b"A" * 8, more=False), 0.0).held


def test_malformed_input_is_a_drop_not_an_exception() -> None:
    r = Reassembler()
    assert r.add_v4(b"\x45\x00\x00", 0.0).drop == "ip.toosmall"
    assert r.add_v4(b"\x55" + bytes(19), 0.0).drop == "ip.badvers"
    frag = v4_fragment(5, 0, b"A" * 16, more=True)
    assert r.add_v4(frag[:30], 0.0).drop == "ip.tooshort"
    bad = bytearray(frag)
    bad[2:4] = (12).to_bytes(2, "big")
    assert r.add_v4(bytes(bad), 0.0).drop == "ip.badlen"


# ---- timeouts ------------------------------------------------------------------------------


def test_timeout_with_first_fragment_seen_returns_it() -> None:
    _, fragments = four_fragments()
    r = Reassembler()
    feed_v4(r, fragments[:2], now=10.0)
    assert r.next_deadline() == 40.0
    assert r.expire(39.9) == []
    (gone,) = r.expire(40.0)
    assert gone.version == 4 and gone.fragments == 2
    assert gone.first_fragment == fragments[0]
    assert gone.counter == "ip.fragtimeout"
    assert gone.ident == 0x77
    assert r.counters["ip.fragtimeout"] == 2
    assert len(r) == 0 and r.bytes_held == 0 and r.next_deadline() is None


def test_timeout_without_first_fragment() -> None:
    _, fragments = four_fragments()
    r = Reassembler()
    feed_v4(r, fragments[1:3], now=0.0)
    (gone,) = r.expire(30.0)
    assert gone.first_fragment is None and gone.fragments == 2


def test_timeout_runs_from_the_first_arriving_fragment() -> None:
    _, fragments = four_fragments()
    r = Reassembler()
    r.add_v4(fragments[0], 0.0)
    r.add_v4(fragments[1], 29.0)
    assert len(r.expire(30.0)) == 1
    # The late fragments start a new datagram which cannot complete without the others.
    assert feed_v4(r, fragments[2:], now=31.0)[-1].held


def test_completion_before_timeout_leaves_nothing_to_expire() -> None:
    packet, fragments = four_fragments()
    r = Reassembler()
    assert feed_v4(r, fragments, now=1.0)[-1].datagram == packet
    assert r.expire(100.0) == []


# ---- memory bounds ---------------------------------------------------------------------------


def test_max_datagrams_evicts_the_oldest() -> None:
    r = Reassembler(max_datagrams=3)
    for ident in range(3):
        r.add_v4(v4_fragment(ident, 0, b"a" * 8, more=True), float(ident))
        r.add_v4(v4_fragment(ident, 16, b"b" * 8, more=True), float(ident))
    res = r.add_v4(v4_fragment(99, 0, b"c" * 8, more=True), 5.0)
    assert res.held
    assert res.counters == {"ip.fragments": 1, "ip.fragdropped": 2}
    assert len(r) == 3
    # ident 0 is gone: its missing middle now opens a fresh datagram, evicting ident 1.
    res = r.add_v4(v4_fragment(0, 8, b"m" * 8, more=True), 6.0)
    assert res.held and res.counters["ip.fragdropped"] == 2
    # ident 2 survived and completes.
    res = r.add_v4(v4_fragment(2, 8, b"m" * 8, more=True), 6.0)
    assert res.held
    assert r.add_v4(v4_fragment(2, 24, b"z", more=False), 6.0).datagram is not None


def test_max_datagrams_zero_refuses_and_minus_one_is_unlimited() -> None:
    r = Reassembler(max_datagrams=0)
    res = r.add_v4(v4_fragment(1, 0, b"a" * 8, more=True), 0.0)
    assert res.drop == "ip.fragdropped" and len(r) == 0
    res6 = r.add_v6(v6_fragment(1, 0, b"a" * 8, more=True), 0.0)
    assert res6.drop == "ip6.fragoverflow"
    r = Reassembler(max_datagrams=-1)
    for ident in range(300):
        assert r.add_v4(v4_fragment(ident, 0, b"a" * 8, more=True), 0.0).held
    assert len(r) == 300


def test_max_bytes_evicts_oldest_then_refuses_a_datagram_too_big_alone() -> None:
    r = Reassembler(max_bytes=3000)
    assert r.add_v4(v4_fragment(1, 8, b"a" * 1000, more=True), 0.0).held
    assert r.add_v4(v4_fragment(2, 8, b"b" * 1000, more=True), 1.0).held
    assert r.bytes_held == 2000
    res = r.add_v4(v4_fragment(3, 8, b"c" * 1600, more=True), 2.0)
    assert res.held and res.counters["ip.fragdropped"] == 1  # ident 1 evicted
    assert r.bytes_held == 2600 and len(r) == 2
    res = r.add_v4(v4_fragment(3, 1608, b"d" * 2000, more=True), 3.0)
    # Evicting ident 2 is not enough: ident 3 is dropped with this fragment.
    assert res.drop == "ip.fragdropped" and res.detail == "reassembly memory full"
    assert r.bytes_held == 0 and len(r) == 0


def test_max_fragments_per_datagram() -> None:
    r = Reassembler(max_fragments=3)
    for i in range(3):
        assert r.add_v4(v4_fragment(1, i * 16, b"a" * 8, more=True), 0.0).held
    res = r.add_v4(v4_fragment(1, 48, b"a" * 8, more=True), 0.0)
    assert res.detail == "too many fragments" and res.counters["ip.fragdropped"] == 4
    assert len(r) == 0


def test_eviction_counts_ipv6_as_fragoverflow() -> None:
    r = Reassembler(max_datagrams=1)
    assert r.add_v6(v6_fragment(1, 0, b"a" * 8, more=True), 0.0).held
    res = r.add_v4(v4_fragment(1, 0, b"a" * 8, more=True), 1.0)
    assert res.counters == {"ip.fragments": 1, "ip6.fragoverflow": 1}


# ---- IPv6 reassembly ---------------------------------------------------------------------------


def v6_original(size: int, ident: int = 0xABCD) -> tuple[bytes, list[bytes]]:
    base = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
    upper = ICMPv6EchoRequest(id=1, seq=2, data=bytes(i & 0xFF for i in range(size)))
    original = raw(base / upper)
    fragments = [raw(f) for f in fragment6(base / IPv6ExtHdrFragment(id=ident) / upper, 1280)]
    return original, fragments


def test_ipv6_scapy_fragments_every_order() -> None:
    original, fragments = v6_original(3000)
    assert len(fragments) == 3
    for order in itertools.permutations(fragments):
        r = Reassembler()
        results = [r.add_v6(f, 0.0) for f in order]
        assert all(res.held for res in results[:-1])
        assert results[-1].datagram == original
        assert r.counters["ip6.fragments"] == 3 and r.counters["ip6.reassembled"] == 1


@settings(max_examples=30, deadline=None)
@given(size=st.integers(min_value=1300, max_value=9000), data=st.data())
def test_ipv6_random_orders(size: int, data: st.DataObject) -> None:
    original, fragments = v6_original(size)
    order = data.draw(st.permutations(fragments))
    r = Reassembler()
    results = [r.add_v6(f, 0.0) for f in order]
    assert results[-1].datagram == original
    assert len(r) == 0


def test_ipv6_fragment_header_after_destination_options() -> None:
    # Unfragmentable part with Hop-by-Hop and a Destination Options header before the
    # Fragment header: the reassembled packet keeps both and the Next Header chain is fixed.
    head = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
    original = raw(head / UDP(sport=7, dport=9) / (b"q" * 40))
    payload = original[56:]
    frag_a = raw(head / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=3) / payload[:24])
    frag_b = raw(head / IPv6ExtHdrFragment(nh=17, offset=3, m=0, id=3) / payload[24:])
    r = Reassembler()
    assert r.add_v6(frag_b, 0.0).held
    assert r.add_v6(frag_a, 0.0).datagram == original


def test_ipv6_atomic_fragment_is_returned_without_fragment_header() -> None:
    original = raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP() / b"atomic")
    atomic = raw(
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(nh=17, offset=0, m=0, id=1)
        / UDP()
        / b"atomic"
    )
    r = Reassembler()
    res = r.add_v6(atomic, 0.0)
    assert res.datagram == original
    assert len(r) == 0


def test_ipv6_non_fragment_passed_through() -> None:
    packet = raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP() / b"x")
    res = Reassembler().add_v6(packet, 0.0)
    assert res.datagram == packet and res.counters == {}


def test_ipv6_overlap_and_duplicate() -> None:
    r = Reassembler()
    assert r.add_v6(v6_fragment(4, 0, b"a" * 16, more=True), 0.0).held
    dup = r.add_v6(v6_fragment(4, 0, b"a" * 16, more=True), 0.0)
    assert dup.detail == "duplicate" and dup.drop == "ip6.fragdropped"
    res = r.add_v6(v6_fragment(4, 8, b"b" * 16, more=False), 0.0)
    assert res.detail == "overlap"
    assert res.counters["ip6.fragdropped"] == 2
    assert len(r) == 0


def test_ipv6_bad_length_asks_for_parameter_problem() -> None:
    r = Reassembler()
    res = r.add_v6(v6_fragment(4, 0, b"a" * 12, more=True), 0.0)
    assert res.drop == "ip6.fragdropped"
    assert res.param_problem_pointer == 4
    res = r.add_v6(v6_fragment(4, 65528, b"a" * 16, more=False), 0.0)
    assert res.param_problem_pointer == 42  # Fragment Offset field of a header at 40
    assert len(r) == 0


def test_ipv6_timeout_is_sixty_seconds() -> None:
    _, fragments = v6_original(3000)
    r = Reassembler()
    r.add_v6(fragments[0], 0.0)
    r.add_v4(v4_fragment(1, 8, b"a" * 8, more=True), 0.0)
    (v4_gone,) = r.expire(30.0)
    assert v4_gone.version == 4 and v4_gone.first_fragment is None
    assert r.expire(59.0) == []
    (gone,) = r.expire(60.0)
    assert gone.version == 6 and gone.counter == "ip6.fragtimeout"
    assert gone.first_fragment == fragments[0]
    assert gone.src == bytes.fromhex("20010db8000000000000000000000001")


def test_ipv6_malformed_is_a_drop() -> None:
    r = Reassembler()
    assert r.add_v6(b"\x60" + bytes(10), 0.0).drop == "ip6.toosmall"
    frag = v6_fragment(1, 0, b"a" * 16, more=True)
    assert r.add_v6(frag[:50], 0.0).drop == "ip6.tooshort"
    cut = bytearray(frag[:44])
    cut[4:6] = (4).to_bytes(2, "big")
    assert r.add_v6(bytes(cut), 0.0).drop == "ip6.tooshort"


def test_reassembled_over_65535_because_of_first_fragment_options() -> None:
    # Each fragment fits on its own (20-byte header), but the first carries 40 bytes of
    # options, so the whole datagram would be 65560 bytes: dropped when complete.
    def frag(offset: int, size: int, more: bool, options: bytes = b"") -> bytes:
        header = IPv4Header(
            0,
            20 + len(options) + size,
            9,
            IPV4_MF if more else 0,
            offset // 8,
            64,
            17,
            0,
            bytes((192, 0, 2, 1)),
            bytes((198, 51, 100, 1)),
            options,
        )
        return header.pack() + b"d" * size

    r = Reassembler()
    pieces = [frag(0, 1480, True, ROUTER_ALERT * 10)]
    pieces += [frag(off, 1480, True) for off in range(1480, 65120, 1480)]
    pieces.append(frag(65120, 380, False))  # 20 + 65500 fits; 60 + 65500 does not
    results = feed_v4(r, pieces)
    assert all(res.held for res in results[:-1])
    last = results[-1]
    assert last.datagram is None and last.drop == "ip.fragdropped"
    assert last.counters["ip.toolong"] == 1
    assert r.counters["ip.fragdropped"] == len(pieces)
    assert len(r) == 0 and r.bytes_held == 0


def fast_v4_fragment(ident: int, offset: int, data: bytes, more: bool) -> bytes:
    header = IPv4Header(
        0,
        20 + len(data),
        ident,
        IPV4_MF if more else 0,
        offset // 8,
        64,
        17,
        0,
        bytes((192, 0, 2, 1)),
        bytes((198, 51, 100, 1)),
    )
    return header.pack() + data


def fast_v6_fragment(ident: int, offset: int, data: bytes, more: bool) -> bytes:
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    header = IPv6Header(0, 0, 8 + len(data), 44, 64, src, dst)
    return header.pack() + IPv6Fragment(17, offset // 8, more, ident).pack() + data


fragment_spec = st.tuples(
    st.sampled_from([4, 6]),
    st.integers(min_value=1, max_value=3),  # ident
    st.integers(min_value=0, max_value=12),  # offset in 8-byte units
    st.integers(min_value=0, max_value=40),  # data length
    st.booleans(),  # more fragments
    st.floats(min_value=0, max_value=5),  # time step
)


@settings(max_examples=150, deadline=None)
@given(st.lists(fragment_spec, max_size=25))
def test_random_fragment_streams_keep_invariants(
    specs: list[tuple[int, int, int, int, bool, float]],
) -> None:
    r = Reassembler(max_datagrams=3, max_bytes=600, max_fragments=6, timeout_v4=8, timeout_v6=9)
    now = 0.0
    completed = {"ip": 0, "ip6": 0}
    for version, ident, offset, length, more, step in specs:
        now += step
        data = bytes([ident]) * length
        if version == 4:
            res = r.add_v4(fast_v4_fragment(ident, offset * 8, data, more), now)
            family = "ip"
        else:
            res = r.add_v6(fast_v6_fragment(ident, offset * 8, data, more), now)
            family = "ip6"
        assert sum(x is not None for x in (res.datagram, res.drop)) <= 1
        if offset == 0 and not more:
            # Not a fragment (IPv4) or an atomic fragment (IPv6): handed straight back.
            assert res.datagram is not None
            assert res.counters == ({} if version == 4 else {"ip6.fragments": 1})
            if version == 6:
                completed["ip6"] += res.fragments
            continue
        assert res.counters.get(f"{family}.fragments") == 1
        if res.datagram is not None:
            assert res.counters.get(f"{family}.reassembled") == 1
            assert res.datagram.endswith(bytes([ident]) * length)
            assert res.fragments >= 1
            completed[family] += res.fragments
        assert len(r) <= 3
        assert 0 <= r.bytes_held <= 600
        for gone in r.expire(now):
            assert gone.fragments >= 1
    r.expire(now + 100)
    assert len(r) == 0 and r.bytes_held == 0
    # Every fragment received is accounted for exactly once: in a reassembled datagram,
    # dropped, timed out or evicted.
    c = r.counters
    for family in ("ip", "ip6"):
        assert c[f"{family}.fragments"] == (
            completed[family]
            + c[f"{family}.fragdropped"]
            + c[f"{family}.fragtimeout"]
            + c[f"{family}.fragoverflow"]
        )
