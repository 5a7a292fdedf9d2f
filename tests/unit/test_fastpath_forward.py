"""What a forwarded frame looks like, table loading and its errors, counters: run against both
fast path implementations."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fastpath_frames import (
    MAC_B,
    MAC_C,
    NEIGHBOR_MAC,
    eth,
    eth6,
    fib,
    load,
    neighbors,
    udp4,
    udp6,
)

from appliance.dataplane import twin
from appliance.dataplane.tablesync import have_c, new_fastpath
from appliance.dataplane.twin import NEIGHBOR, NEXTHOP, ROUTE4, NextHopKind, Verdict
from appliance.packet.checksum import verify

KINDS = ["python", *(["c"] if have_c() else [])]


@pytest.fixture(params=KINDS)
def fp(request: pytest.FixtureRequest) -> Any:
    fastpath = new_fastpath(request.param)
    load(fastpath)
    return fastpath


def test_ipv4_forward_rewrites_l2_and_decrements_ttl(fp: Any) -> None:
    packet = udp4("198.51.100.10", "203.0.113.10", ttl=64)
    verdict, out_ifindex, out = fp.process(1, eth(packet) + bytes(10))  # Ethernet padding
    assert (verdict, out_ifindex) == (Verdict.FORWARD, 2)
    assert out[:14] == NEIGHBOR_MAC["203.0.113.10"] + MAC_B + b"\x08\x00"
    assert len(out) == 14 + len(packet)  # padding not carried over
    assert out[14 + 8] == 63
    assert verify(out[14:34])  # header checksum still right (RFC 1624 update)
    assert out[14 + 20:] == packet[20:]  # payload untouched


def test_ipv6_forward_decrements_hop_limit(fp: Any) -> None:
    packet = udp6("2001:db8:1::10", "2001:db8:2::10", hlim=2)
    verdict, out_ifindex, out = fp.process(1, eth6(packet))
    assert (verdict, out_ifindex) == (Verdict.FORWARD, 2)
    assert out[:14] == NEIGHBOR_MAC["2001:db8:2::10"] + MAC_B + b"\x86\xdd"
    assert out[14 + 7] == 1
    assert out[14:] == packet[:7] + b"\x01" + packet[8:]


def test_forward_via_gateway_on_a_tbl8_prefix(fp: Any) -> None:
    verdict, out_ifindex, out = fp.process(1, eth(udp4("198.51.100.10", "192.0.2.241")))
    assert (verdict, out_ifindex) == (Verdict.FORWARD, 3)
    assert out[:12] == NEIGHBOR_MAC["192.0.2.241"] + MAC_C


@settings(max_examples=300, deadline=None)
@given(ttl=st.integers(2, 255), tos=st.integers(0, 255), ident_and_size=st.integers(0, 1400),
       kind=st.sampled_from(KINDS))
def test_header_checksum_stays_valid_for_any_header(
    ttl: int, tos: int, ident_and_size: int, kind: str
) -> None:
    fastpath = new_fastpath(kind)
    load(fastpath)
    packet = udp4("198.51.100.10", "203.0.113.10", b"z" * (ident_and_size % 1200), ttl=ttl,
                  tos=tos)
    verdict, _, out = fastpath.process(1, eth(packet))
    assert verdict == Verdict.FORWARD
    assert out[14 + 8] == ttl - 1
    assert verify(out[14:34])


def test_tables_swap_whole(fp: Any) -> None:
    frame = eth(udp4("198.51.100.10", "203.0.113.10"))
    assert fp.process(1, frame)[0] == Verdict.FORWARD
    fp.load_neighbors(b"", 7)
    assert fp.generation == 7
    assert fp.process(1, frame)[0] == Verdict.PUNT_NEIGHBOR
    fp.load_neighbors(neighbors(), 8)
    assert fp.process(1, frame)[0] == Verdict.FORWARD
    # a more specific route appears: the packet now goes to another interface
    hops, r4, r6 = fib()
    hops += NEXTHOP.pack(NextHopKind.ONLINK, 3, bytes(16))
    r4 += ROUTE4.pack(bytes([203, 0, 113, 8]), 29, len(hops) // NEXTHOP.size - 1)
    fp.load_fib(hops, r4, r6, 9)
    fp.load_neighbors(neighbors() + NEIGHBOR.pack(3, 4, bytes([203, 0, 113, 10]),
                                                  b"\x02" * 6 + MAC_C + b"\x08\x00", 0), 10)
    assert fp.process(1, frame)[:2] == (Verdict.FORWARD, 3)


def test_later_duplicate_prefix_wins(fp: Any) -> None:
    hops, r4, r6 = fib()
    r4 += ROUTE4.pack(bytes([203, 0, 113, 0]), 24, 3)  # now reject
    fp.load_fib(hops, r4, r6, 5)
    assert fp.process(1, eth(udp4("198.51.100.10", "203.0.113.10")))[0] == Verdict.PUNT_REJECT


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("load_interfaces", (b"\0" * 15, 0, 1)),
        ("load_fib", (b"\0" * 23, b"", b"", 1)),
        ("load_fib", (b"", b"\0" * 12, b"", 1)),  # next-hop index 0 of none
        ("load_fib", (NEXTHOP.pack(1, 1, bytes(16)), ROUTE4.pack(bytes(4), 33, 0), b"", 1)),
        ("load_fib", (NEXTHOP.pack(9, 1, bytes(16)), b"", b"", 1)),  # unknown kind
        ("load_neighbors", (NEIGHBOR.pack(1, 5, bytes(16), bytes(14), 0), 1)),
    ],
)
def test_bad_records_raise_the_module_error_and_keep_the_old_tables(
    fp: Any, method: str, args: tuple[object, ...]
) -> None:
    frame = eth(udp4("198.51.100.10", "203.0.113.10"))
    module_error = sys.modules[type(fp).__module__].FastPathError  # the C one or the twin's
    with pytest.raises(module_error):
        getattr(fp, method)(*args)
    assert fp.process(1, frame)[0] == Verdict.FORWARD


def test_counters_count_each_verdict(fp: Any) -> None:
    fp.process(1, eth(udp4("198.51.100.10", "203.0.113.10")))
    fp.process(1, eth(udp4("198.51.100.10", "203.0.113.10")))
    fp.process(1, eth6(udp6("2001:db8:1::10", "2001:db8:2::10")))
    fp.process(1, eth(udp4("198.51.100.10", "203.0.113.10", ttl=1)))
    fp.process(1, eth(udp4("198.51.100.10", "203.0.113.10"), dst=MAC_B))
    counts = fp.counters()
    assert set(counts) == set(twin.COUNTER_NAMES)
    assert counts["forward4"] == 2
    assert counts["forward6"] == 1
    assert counts["punt.ttl"] == 1
    assert counts["drop.otherhost"] == 1
    assert counts["punt.noroute"] == 0


def test_poll_without_rings_and_bad_budget(fp: Any) -> None:
    assert fp.poll(64) == (0, [])
    with pytest.raises(ValueError):
        fp.poll(0)
    with pytest.raises(ValueError):
        fp.transmit(1, b"\0" * 60)
    with pytest.raises(ValueError):
        fp.detach(1)


def test_c_record_sizes_match_the_contract() -> None:
    c_module = pytest.importorskip("appliance.dataplane._fastpath")
    names = c_module.VERDICT_NAMES
    sizes = (c_module.INTERFACE_SIZE, c_module.NEXTHOP_SIZE, c_module.ROUTE4_SIZE,
             c_module.ROUTE6_SIZE, c_module.NEIGHBOR_SIZE)
    assert names == tuple(v.name for v in Verdict)
    assert sizes == (twin.INTERFACE.size, NEXTHOP.size, ROUTE4.size,
                     twin.ROUTE6.size, NEIGHBOR.size)
