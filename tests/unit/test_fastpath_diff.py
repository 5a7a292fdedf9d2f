"""The C fast path and its Python twin give the same verdict and the same output frame for the
same frame and tables: hand-picked frames (one per verdict), mutations of valid frames, and
random route tables looked up at random addresses (DIR-24-8 and the IPv6 per-length hash in C
against per-length dicts in Python)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fastpath_frames import (
    MAC_A,
    MAC_B,
    PEER,
    eth,
    eth6,
    interfaces,
    load,
    udp4,
    udp6,
)

from appliance.dataplane import twin
from appliance.dataplane.twin import (
    NEIGHBOR,
    NEXTHOP,
    ROUTE4,
    ROUTE6,
    NextHopKind,
    Verdict,
)

_fastpath = pytest.importorskip("appliance.dataplane._fastpath")


def pair() -> tuple[Any, Any]:
    c, py = _fastpath.FastPath(), twin.FastPath()
    load(c)
    load(py)
    return c, py


def same(c: Any, py: Any, ifindex: int, frame: bytes, csum_partial: bool = False
         ) -> tuple[int, int, bytes]:
    got_c = c.process(ifindex, frame, csum_partial)
    got_py = py.process(ifindex, frame, csum_partial)
    assert (got_c[0], got_c[1], got_c[2]) == (int(got_py[0]), got_py[1], got_py[2]), frame.hex()
    return (got_c[0], got_c[1], got_c[2])


CASES: list[tuple[str, int, bytes, Verdict]] = [
    ("forward v4 on-link", 1, eth(udp4("198.51.100.10", "203.0.113.10")), Verdict.FORWARD),
    ("forward v4 default", 1, eth(udp4("198.51.100.10", "192.0.2.252")),
     Verdict.FORWARD),
    ("forward v4 tbl8 /29", 1, eth(udp4("198.51.100.10", "192.0.2.241")), Verdict.FORWARD),
    ("forward v6", 1, eth6(udp6("2001:db8:1::10", "2001:db8:2::10")), Verdict.FORWARD),
    ("forward v6 via link-local gw", 2,
     eth6(udp6("2001:db8:2::10", "2001:db8:9::5"), dst=MAC_B), Verdict.FORWARD),
    ("arp", 1, eth(bytes(28), dst=MAC_A, ethertype=0x0806), Verdict.PUNT_NONIP),
    ("vlan", 1, eth(bytes(50), ethertype=0x8100), Verdict.PUNT_NONIP),
    ("runt", 1, MAC_A + PEER, Verdict.PUNT_MALFORMED),
    ("v4 short", 1, eth(udp4("198.51.100.10", "203.0.113.10")[:19]), Verdict.PUNT_MALFORMED),
    ("v4 bad version", 1, eth(b"\x55" + udp4("198.51.100.10", "203.0.113.10")[1:]),
     Verdict.PUNT_MALFORMED),
    ("v4 ihl 4", 1, eth(b"\x44" + udp4("198.51.100.10", "203.0.113.10")[1:]),
     Verdict.PUNT_MALFORMED),
    ("v4 bad checksum", 1, eth(udp4("198.51.100.10", "203.0.113.10")[:10] + b"\0\0"
                              + udp4("198.51.100.10", "203.0.113.10")[12:]),
     Verdict.PUNT_MALFORMED),
    ("v4 truncated payload", 1, eth(udp4("198.51.100.10", "203.0.113.10")[:-1]),
     Verdict.PUNT_MALFORMED),
    ("v6 truncated payload", 1, eth6(udp6("2001:db8:1::10", "2001:db8:2::10")[:-1]),
     Verdict.PUNT_MALFORMED),
    ("broadcast mac", 1, eth(udp4("198.51.100.10", "203.0.113.10"), dst=b"\xff" * 6),
     Verdict.PUNT_MULTICAST),
    ("ip multicast", 1, eth(udp4("198.51.100.10", "224.0.0.5")), Verdict.PUNT_MULTICAST),
    ("limited broadcast", 1, eth(udp4("198.51.100.10", "255.255.255.255")),
     Verdict.PUNT_MULTICAST),
    ("v6 multicast", 1, eth6(udp6("2001:db8:1::10", "ff02::1")), Verdict.PUNT_MULTICAST),
    ("loopback source", 1, eth(udp4("127.0.0.1", "203.0.113.10")), Verdict.PUNT_MARTIAN),
    ("class E dst", 1, eth(udp4("198.51.100.10", "240.0.0.1")), Verdict.PUNT_MARTIAN),
    ("v6 unspecified dst", 1, eth6(udp6("2001:db8:1::10", "::")), Verdict.PUNT_MARTIAN),
    # the slow path drops IPv4-mapped addresses as badscope (FreeBSD ip6_input): never forwarded
    ("v4-mapped source", 1, eth6(udp6("::ffff:198.51.100.10", "2001:db8:2::10")),
     Verdict.PUNT_MARTIAN),
    ("v4-mapped dst", 1, eth6(udp6("2001:db8:1::10", "::ffff:203.0.113.10")),
     Verdict.PUNT_MARTIAN),
    # a directed-broadcast or own source: the slow path decides (it drops the broadcast)
    ("directed-broadcast source", 2, eth(udp4("203.0.113.255", "198.51.100.10"), dst=MAC_B),
     Verdict.PUNT_MARTIAN),
    ("our own address as source", 1, eth(udp4("198.51.100.1", "203.0.113.10")),
     Verdict.PUNT_MARTIAN),
    ("to us v4", 1, eth(udp4("198.51.100.10", "198.51.100.1")), Verdict.PUNT_LOCAL),
    ("directed broadcast", 1, eth(udp4("198.51.100.10", "203.0.113.255")), Verdict.PUNT_LOCAL),
    ("to us v6", 1, eth6(udp6("2001:db8:1::10", "2001:db8:2::1")), Verdict.PUNT_LOCAL),
    ("to our link-local", 1, eth6(udp6("fe80::2", "fe80::a")), Verdict.PUNT_LOCAL),
    ("to us with ttl 1", 1, eth(udp4("198.51.100.10", "198.51.100.1", ttl=1)),
     Verdict.PUNT_LOCAL),
    ("options", 1, eth(udp4("198.51.100.10", "203.0.113.10", options=b"\x01\x01\x01\x00")),
     Verdict.PUNT_OPTIONS),
    ("hop-by-hop", 1, eth6(udp6("2001:db8:1::10", "2001:db8:2::10", next_header=0)),
     Verdict.PUNT_EXTHDR),
    ("fragment header", 1, eth6(udp6("2001:db8:1::10", "2001:db8:2::10", next_header=44)),
     Verdict.PUNT_EXTHDR),
    ("ttl 1", 1, eth(udp4("198.51.100.10", "203.0.113.10", ttl=1)), Verdict.PUNT_TTL),
    ("ttl 0", 1, eth(udp4("198.51.100.10", "203.0.113.10", ttl=0)), Verdict.PUNT_TTL),
    ("hlim 1", 1, eth6(udp6("2001:db8:1::10", "2001:db8:2::10", hlim=1)), Verdict.PUNT_TTL),
    ("v6 no route", 1, eth6(udp6("2001:db8:1::10", "2001:db8:77::1")), Verdict.PUNT_NOROUTE),
    ("reject", 1, eth(udp4("198.51.100.10", "192.0.2.130")), Verdict.PUNT_REJECT),
    ("blackhole", 1, eth(udp4("198.51.100.10", "192.0.2.200")), Verdict.PUNT_REJECT),
    ("v6 reject", 1, eth6(udp6("2001:db8:1::10", "2001:db8:66::1")), Verdict.PUNT_REJECT),
    ("link-local source", 1, eth6(udp6("fe80::2", "2001:db8:2::10")), Verdict.PUNT_SCOPE),
    ("too big for b", 1, eth(udp4("198.51.100.10", "203.0.113.10", b"x" * 1300)),
     Verdict.PUNT_TOOBIG),
    ("v6 too big for b", 1, eth6(udp6("2001:db8:1::10", "2001:db8:2::10", b"x" * 1300)),
     Verdict.PUNT_TOOBIG),
    ("same interface", 1, eth(udp4("198.51.100.10", "192.0.2.5")), Verdict.PUNT_REDIRECT),
    ("v6 same interface", 1, eth6(udp6("2001:db8:1::10", "2001:db8:9::5")),
     Verdict.PUNT_REDIRECT),
    ("unresolved neighbor", 1, eth(udp4("198.51.100.10", "203.0.113.11")),
     Verdict.PUNT_NEIGHBOR),
    ("unresolved gateway", 2, eth(udp4("203.0.113.10", "192.0.2.250"), dst=MAC_B),
     Verdict.PUNT_NEIGHBOR),
    ("unknown interface", 9, eth(udp4("198.51.100.10", "203.0.113.10")),
     Verdict.PUNT_UNKNOWN_IF),
    ("other host", 1, eth(udp4("198.51.100.10", "203.0.113.10"), dst=MAC_B),
     Verdict.DROP_OTHERHOST),
]


@pytest.mark.parametrize(("ifindex", "frame", "verdict"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_verdict_same_in_c_and_python(ifindex: int, frame: bytes, verdict: Verdict) -> None:
    c, py = pair()
    got = same(c, py, ifindex, frame)
    assert Verdict(got[0]) == verdict
    if verdict.is_punt:
        assert got[1:] == (0, frame)  # punted unchanged
    elif verdict == Verdict.DROP_OTHERHOST:
        assert got[1:] == (0, b"")


def test_every_punt_reason_except_ring_ones_is_covered() -> None:
    covered = {c[3] for c in CASES}
    ring_only = {Verdict.PUNT_NORING, Verdict.DROP_TXFULL, Verdict.PUNT_NOFORWARD}
    assert set(Verdict) - covered == ring_only


@pytest.mark.parametrize("family", [4, 6])
def test_forwarding_off_punts_in_both(family: int) -> None:
    c, py = _fastpath.FastPath(), twin.FastPath()
    load(c, flags=0)
    load(py, flags=0)
    frame = (eth(udp4("198.51.100.10", "203.0.113.10")) if family == 4
             else eth6(udp6("2001:db8:1::10", "2001:db8:2::10")))
    assert same(c, py, 1, frame)[0] == Verdict.PUNT_NOFORWARD
    # packets for the router itself are still punted as LOCAL
    local = (eth(udp4("198.51.100.10", "198.51.100.1")) if family == 4
             else eth6(udp6("2001:db8:1::10", "2001:db8:1::1")))
    assert same(c, py, 1, local)[0] == Verdict.PUNT_LOCAL


def test_redirect_off_forwards_back_out_the_same_interface() -> None:
    c, py = _fastpath.FastPath(), twin.FastPath()
    load(c, flags=twin.FLAG_FORWARDING4)
    load(py, flags=twin.FLAG_FORWARDING4)
    verdict, out_ifindex, out = same(c, py, 1, eth(udp4("198.51.100.10", "192.0.2.5")))
    assert (verdict, out_ifindex) == (Verdict.FORWARD, 1)
    assert out[:6] == bytes.fromhex("020000000102")  # the gateway 198.51.100.2


@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize("family", [4, 6])
def test_partial_checksums_are_completed_identically(family: int, partial: bool) -> None:
    c, py = pair()
    if family == 4:
        frame = eth(udp4("198.51.100.10", "203.0.113.10", b"abc", partial=partial))
        punted = eth(udp4("198.51.100.10", "198.51.100.1", b"abc", partial=partial))
    else:
        frame = eth6(udp6("2001:db8:1::10", "2001:db8:2::10", b"abc", partial=partial))
        punted = eth6(udp6("2001:db8:1::10", "2001:db8:1::1", b"abc", partial=partial))
    full = (eth(udp4("198.51.100.10", "203.0.113.10", b"abc")) if family == 4
            else eth6(udp6("2001:db8:1::10", "2001:db8:2::10", b"abc")))
    verdict, _, out = same(c, py, 1, frame, csum_partial=partial)
    assert verdict == Verdict.FORWARD
    assert out[-11:] == full[-11:]  # the UDP header and payload as a full checksum has them
    _, _, out = same(c, py, 1, punted, csum_partial=partial)
    good = (eth(udp4("198.51.100.10", "198.51.100.1", b"abc")) if family == 4
            else eth6(udp6("2001:db8:1::10", "2001:db8:1::1", b"abc")))
    assert out == good


# ------------------------------------------------------------------ hypothesis: frames

VALID = [c[2] for c in CASES if c[3] == Verdict.FORWARD]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from([c[2] for c in CASES]),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 300),
    ifindex=st.sampled_from([1, 2, 3, 9]),
    partial=st.booleans(),
)
def test_mutated_frames_same_in_c_and_python(
    base: bytes, edits: list[tuple[int, int]], cut: int, ifindex: int, partial: bool
) -> None:
    frame = bytearray(base[: max(len(base) - cut, 0)] if cut < 250 else base)
    for pos, value in edits:
        if pos < len(frame):
            frame[pos] = value
    c, py = pair()
    same(c, py, ifindex, bytes(frame), partial)


# ------------------------------------------------------------------ hypothesis: tables

_v4_routes = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 3)), max_size=40
)
_v6_routes = st.lists(
    st.tuples(st.sampled_from([0x20010DB8 << 96, (0x20010DB8 << 96) | (1 << 80), 0]),
              st.integers(0, 2**64 - 1), st.integers(0, 128), st.integers(0, 3)),
    max_size=30,
)


def _tables(v4: list[tuple[int, int, int]], v6: list[tuple[int, int, int, int]]
            ) -> tuple[bytes, bytes, bytes, bytes]:
    gw = [b"\xc6\x33\x64" + bytes([i]) + bytes(12) for i in range(4)]
    hops = b"".join(NEXTHOP.pack(NextHopKind.GATEWAY, 2 + (i & 1), gw[i]) for i in range(4))
    r4 = b"".join(ROUTE4.pack(a.to_bytes(4, "big"), plen, nh) for a, plen, nh in v4)
    r6 = b"".join(ROUTE6.pack((base | low).to_bytes(16, "big"), plen, nh)
                  for base, low, plen, nh in v6)
    neigh = b"".join(
        NEIGHBOR.pack(2 + (i & 1), 4, gw[i], bytes([i]) * 6 + MAC_B + b"\x08\x00",
                      twin.NEIGHBOR_STALE if i == 1 else 0)
        for i in range(3)  # next hop 1 STALE (forwarded, noted), next hop 3 unresolved
    )
    return hops, r4, r6, neigh


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v4=_v4_routes, v6=_v6_routes,
       probes4=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
       probes6=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=10),
       probe_routes=st.booleans())
def test_random_tables_same_lookup_in_c_and_python(
    v4: list[tuple[int, int, int]], v6: list[tuple[int, int, int, int]],
    probes4: list[int], probes6: list[int], probe_routes: bool,
) -> None:
    hops, r4, r6, neigh = _tables(v4, v6)
    c, py = _fastpath.FastPath(), twin.FastPath()
    for fp in (c, py):
        fp.load_interfaces(interfaces(), twin.FLAG_FORWARDING4
                           | twin.FLAG_FORWARDING6, 1)
        fp.load_fib(hops, r4, r6, 2)
        fp.load_neighbors(neigh, 3)
    # probe random addresses, and the first and last address of each prefix
    targets4 = list(probes4)
    if probe_routes:
        for a, plen, _ in v4:
            net = IPv4Network((a & ~((1 << (32 - plen)) - 1) & 0xFFFFFFFF, plen))
            targets4 += [int(net.network_address), int(net.broadcast_address)]
    for dst in targets4:
        first = dst >> 24
        if first in (0, 127) or first >= 224:
            continue  # martians and multicast never reach the lookup
        frame = eth(udp4("198.51.100.10", ".".join(str(b) for b in dst.to_bytes(4, "big"))))
        same(c, py, 1, frame)
    for base, low, plen, _ in v6[:5]:
        for tail in probes6:
            addr = (base | (low ^ tail)) if plen > 64 else (base | tail)
            net6 = IPv6Network(((base | low) >> (128 - plen) << (128 - plen), plen))
            for a in (addr, int(net6.network_address), int(net6.broadcast_address)):
                if a >> 120 == 0xFF or a in (0, 1):
                    continue
                frame = eth6(struct.pack("!IHBB16s16s", 0x60000000, 0, 59, 64,
                                         bytes.fromhex("20010db8000100000000000000000010"),
                                         a.to_bytes(16, "big")))
                same(c, py, 1, frame)
    assert c.stale_neighbors() == py.stale_neighbors()  # the same notes, in the same order
    assert c.counters() == py.counters()
