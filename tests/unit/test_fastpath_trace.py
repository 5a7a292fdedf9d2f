"""The fast path's trace ring, C against the Python twin: the same frames give the same
records (verdict, interfaces, addresses, TTL, ident, next hop, which stages were reached),
tracing changes no verdict or output frame, and the ring mode records what left on the TX
ring as forwarded on the fast path."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from test_fastpath_diff import CASES, pair, same
from test_fastpath_frames import MAC_A, MAC_B, eth, eth6, load, packed, udp4, udp6
from test_fastpath_rings import MemoryRing

from appliance.dataplane import twin
from appliance.dataplane.tablesync import have_c, new_fastpath
from appliance.dataplane.twin import TRACE_ADDRESS, TRACE_CAPACITY, TRACE_RECORD, Verdict

_fastpath = pytest.importorskip("appliance.dataplane._fastpath")


def addresses(*addrs: str) -> bytes:
    return b"".join(TRACE_ADDRESS.pack(4 if "." in a else 6, packed(a)) for a in addrs)


def records(fp: Any) -> list[tuple[Any, ...]]:
    """Decoded records with each stage time replaced by whether it was reached."""
    blob = fp.trace_records()
    assert len(blob) % TRACE_RECORD.size == 0
    out = []
    for rec in TRACE_RECORD.iter_unpack(blob):
        times = rec[13:]
        assert times[0] > 0  # every record has its rx time
        reached = [t for t in times if t]
        assert reached == sorted(reached), times  # stages in order
        out.append((*rec[:13], tuple(bool(t) for t in times)))
    return out


def test_sizes_agree() -> None:
    assert _fastpath.TRACE_RECORD_SIZE == TRACE_RECORD.size == 112
    assert TRACE_ADDRESS.size == _fastpath.TRACE_ADDRESS_SIZE
    assert _fastpath.TRACE_CAPACITY == TRACE_CAPACITY


@pytest.mark.parametrize(("ifindex", "frame", "verdict"),
                         [pytest.param(i, f, v, id=name) for name, i, f, v in CASES])
def test_every_case_records_the_same_in_c_and_python(ifindex: int, frame: bytes,
                                                     verdict: Verdict) -> None:
    c, py = pair()
    untraced = same(c, py, ifindex, frame)
    for fp in (c, py):
        fp.set_trace(b"", match_all=True)
    traced = same(c, py, ifindex, frame)
    assert traced == untraced  # watching does not change what is watched
    got_c, got_py = records(c), records(py)
    assert got_c == got_py, frame.hex()
    is_ip = len(frame) >= 34 and frame[12:14] in (b"\x08\x00", b"\x86\xdd")
    assert len(got_c) == (1 if is_ip and verdict != Verdict.DROP_OTHERHOST else 0)
    if got_c and verdict == Verdict.FORWARD:
        assert got_c[0][2] == Verdict.FORWARD
        assert got_c[0][13] == (True, True, True, True, True)  # every stage on the fast path


def test_forwarded_record_fields() -> None:
    c, py = pair()
    frame = eth(udp4("198.51.100.10", "203.0.113.10", ttl=9))
    for fp in (c, py):
        fp.set_trace(addresses("203.0.113.10"))
        verdict, out_ifindex, _ = fp.process(1, frame)
        assert (verdict, out_ifindex) == (Verdict.FORWARD, 2)
        (rec,) = records(fp)
        (ifindex, out, v, family, proto, ttl, kind, length, ident, aux, src, dst, nexthop,
         reached) = rec
        assert (ifindex, out, v, family, proto, ttl) == (1, 2, Verdict.FORWARD, 4, 17, 9)
        assert (src[:4], dst[:4], nexthop[:4]) == (packed("198.51.100.10"),
                                                   packed("203.0.113.10"),
                                                   packed("203.0.113.10"))  # on-link
        assert kind == twin.NextHopKind.ONLINK
        assert (ident, aux) == struct.unpack("!HH", udp4("198.51.100.10", "203.0.113.10")[20:24])
        assert length == len(frame) - 14
        assert reached == (True,) * 5


def test_filter_records_only_its_addresses_and_punts_keep_their_verdict() -> None:
    c, py = pair()
    other = eth(udp4("198.51.100.10", "203.0.113.99"))
    wanted6 = eth6(udp6("2001:db8:1::10", "2001:db8:2::10", hlim=1))  # expires here: punted
    for fp in (c, py):
        fp.set_trace(addresses("2001:db8:2::10", "192.0.2.200"))
        fp.process(1, other)  # (no neighbor: punted) not recorded either way
        assert fp.process(1, wanted6)[0] == Verdict.PUNT_TTL
    got_c, got_py = records(c), records(py)
    assert got_c == got_py
    (rec,) = got_c
    assert (rec[2], rec[3], rec[5]) == (Verdict.PUNT_TTL, 6, 1)
    assert rec[13] == (True, True, True, False, False)  # verified, looked up, then punted


def test_ring_overflow_keeps_the_newest_and_counts_the_lost() -> None:
    c, py = pair()
    frames = [eth(udp4("198.51.100.10", "203.0.113.10", ttl=2 + i)) for i in range(70)]
    for fp in (c, py):
        fp.set_trace(b"", match_all=True)
        for frame in frames:
            fp.process(1, frame)
        got = records(fp)
        assert len(got) == TRACE_CAPACITY
        assert [r[5] for r in got] == list(range(8, 72))  # TTLs of the newest 64, in order
        assert fp.counters()["trace_lost"] == 70 - TRACE_CAPACITY
        assert fp.trace_records() == b""  # read empties the ring
        fp.set_trace(b"")  # off: nothing more recorded
        fp.process(1, frames[0])
        assert fp.trace_records() == b""


@pytest.mark.parametrize("bad", [b"\x04" * 5, TRACE_ADDRESS.pack(5, bytes(16)),
                                 TRACE_ADDRESS.pack(4, bytes(16)) * 9])
def test_bad_trace_addresses_refused(bad: bytes) -> None:
    c, py = pair()
    for fp, error in ((c, _fastpath.FastPathError), (py, twin.FastPathError)):
        with pytest.raises(error):
            fp.set_trace(bad)


@pytest.mark.parametrize("kind", ["python", *(["c"] if have_c() else [])])
def test_ring_mode_records_the_fast_forward_with_its_tx_time(kind: str) -> None:
    fp = new_fastpath(kind)
    load(fp)
    a, b = MemoryRing(1, MAC_A), MemoryRing(2, MAC_B)
    fp.attach(a.ring)
    fp.attach(b.ring)
    try:
        fp.set_trace(addresses("203.0.113.10"))
        a.deliver(eth(udp4("198.51.100.10", "203.0.113.10")))
        a.deliver(eth(udp4("198.51.100.10", "203.0.113.11")))  # not traced (no neighbor)
        a.deliver(eth(udp4("198.51.100.10", "198.51.100.1")))  # not traced (local)
        done, punts = fp.poll(64)
        assert done == 3 and len(punts) == 2
        assert len(b.transmitted()) == 1
        (rec,) = records(fp)
        assert (rec[0], rec[1], rec[2]) == (1, 2, Verdict.FORWARD)
        assert rec[13] == (True,) * 5
        b.fill_tx()  # now the TX ring is full: the record says so
        a.deliver(eth(udp4("198.51.100.10", "203.0.113.10")))
        fp.poll(64)
        (rec,) = records(fp)
        assert rec[2] == Verdict.DROP_TXFULL and rec[13][4] is False
    finally:
        for ring in (a, b):
            fp.detach(ring.ring.ifindex)
            ring.ring.close()
            ring.peer.close()
