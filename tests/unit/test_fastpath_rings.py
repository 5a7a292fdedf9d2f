"""The ring walk of both fast paths on in-memory rings: a RingSocket whose "rings" are an
anonymous mmap laid out as the kernel lays out TPACKET_V2 rings (RX slots, then TX slots) and
whose socket is one end of a socketpair. Frames are written into RX slots the way the kernel
does; what poll() leaves on the TX ring, releases and returns is checked. No root needed."""

from __future__ import annotations

import contextlib
import mmap
import select
import socket
import struct
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from test_fastpath_frames import MAC_A, MAC_B, eth, load, neighbors, udp4

from appliance.dataplane.ring import RingSocket
from appliance.dataplane.tablesync import have_c, new_fastpath
from appliance.dataplane.twin import Verdict

KINDS = ["python", *(["c"] if have_c() else [])]
FRAME_SIZE = 2048
SLOTS = 16
HDR = struct.Struct("=IIIHHIIHH")  # tpacket2_hdr
MAC_OFFSET = 82  # where the kernel would put the frame: after header, sockaddr_ll, padding
TP_STATUS_USER, TP_STATUS_CSUMNOTREADY, TP_STATUS_VLAN_VALID = 1, 8, 16
PACKET_HOST, PACKET_OUTGOING = 0, 4
VNET = struct.Struct("<BBHHHH")  # struct virtio_net_hdr


class MemoryRing:
    """A RingSocket over memory, plus helpers acting as the kernel."""

    def __init__(self, ifindex: int, mac: bytes, vnet: bool = False) -> None:
        self.peer, sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.peer.setblocking(False)
        self.map = mmap.mmap(-1, 2 * SLOTS * FRAME_SIZE)
        self.ring = RingSocket(sock, f"mem{ifindex}", ifindex, mac, 1500, self.map, FRAME_SIZE,
                               SLOTS, vnet)
        self.vnet = vnet
        self.next_rx = 0

    def deliver(self, frame: bytes, *, status: int = 0, pkttype: int = PACKET_HOST,
                tci: int = 0) -> None:
        off = self.next_rx * FRAME_SIZE
        self.map[off + MAC_OFFSET: off + MAC_OFFSET + len(frame)] = frame
        self.map[off + 32 + 10] = pkttype  # sockaddr_ll.sll_pkttype
        HDR.pack_into(self.map, off, TP_STATUS_USER | status, len(frame), len(frame),
                      MAC_OFFSET, MAC_OFFSET, 0, 0, tci, 0x8100 if tci else 0)
        self.next_rx = (self.next_rx + 1) % SLOTS

    def rx_status(self, slot: int) -> int:
        return int(struct.unpack_from("=I", self.map, slot * FRAME_SIZE)[0])

    def transmitted(self) -> list[bytes]:
        """Frames in TX slots marked SEND_REQUEST, in slot order; marks them sent."""
        out = []
        for slot in range(SLOTS):
            off = (SLOTS + slot) * FRAME_SIZE
            status, length = struct.unpack_from("=II", self.map, off)
            if status == 1:
                data = off + 32
                if self.vnet:  # struct virtio_net_hdr: no offload, hdr_len = the frame
                    length -= VNET.size
                    assert VNET.unpack_from(self.map, data) == (0, 0, length, 0, 0, 0)
                    data += VNET.size
                out.append(bytes(self.map[data: data + length]))
                struct.pack_into("=I", self.map, off, 0)
        return out

    def kicks(self) -> int:
        n = 0
        while True:
            try:
                self.peer.recv(16)
            except BlockingIOError:
                return n
            n += 1

    def fill_tx(self) -> None:
        for slot in range(SLOTS):
            struct.pack_into("=I", self.map, (SLOTS + slot) * FRAME_SIZE, 2)  # SENDING


@pytest.fixture(params=KINDS)
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[Any, MemoryRing, MemoryRing]]:
    fp = new_fastpath(request.param)
    load(fp)
    a, b = MemoryRing(1, MAC_A), MemoryRing(2, MAC_B)
    fp.attach(a.ring)
    fp.attach(b.ring)
    yield fp, a, b
    for ring in (a, b):
        if ring.ring.attached or request.param == "python":
            with contextlib.suppress(ValueError):  # already detached by the test
                fp.detach(ring.ring.ifindex)
        ring.ring.close()
        ring.peer.close()


FORWARD = eth(udp4("198.51.100.10", "203.0.113.10"))
LOCAL = eth(udp4("198.51.100.10", "198.51.100.1"))


def expected(frame: bytes, csum_partial: bool = False) -> tuple[int, int, bytes]:
    ref = new_fastpath("python")
    load(ref)
    return ref.process(1, frame, csum_partial)


def test_poll_forwards_to_the_tx_ring_and_returns_punts(setup: Any) -> None:
    fp, a, b = setup
    a.deliver(FORWARD)
    a.deliver(LOCAL)
    a.deliver(FORWARD)
    done, punts = fp.poll(64)
    assert done == 3
    assert punts == [(1, Verdict.PUNT_LOCAL, LOCAL)]
    assert b.transmitted() == [expected(FORWARD)[2]] * 2
    assert [a.rx_status(i) for i in range(3)] == [0, 0, 0]  # given back to the kernel
    assert b.kicks() == 1  # one kick for the batch
    assert a.kicks() == 0
    counts = fp.counters()
    assert (counts["rx"], counts["forward4"], counts["punt.local"], counts["tx_kicks"]) == (
        3, 2, 1, 1)


def test_poll_respects_the_budget_and_resumes(setup: Any) -> None:
    fp, a, b = setup
    for _ in range(5):
        a.deliver(FORWARD)
    assert fp.poll(2)[0] == 2
    assert fp.poll(64)[0] == 3
    assert fp.poll(64) == (0, [])
    assert len(b.transmitted()) == 5


def test_ring_wraps_around(setup: Any) -> None:
    fp, a, b = setup
    for _ in range(3):
        for _ in range(SLOTS - 3):
            a.deliver(FORWARD)
        assert fp.poll(64)[0] == SLOTS - 3
        assert len(b.transmitted()) == SLOTS - 3


def test_full_tx_ring_drops_and_counts(setup: Any) -> None:
    fp, a, b = setup
    b.fill_tx()
    a.deliver(FORWARD)
    assert fp.poll(64) == (1, [])
    counts = fp.counters()
    assert counts["drop.txfull"] == 1
    assert counts["forward4"] == 0


def test_egress_without_a_ring_is_punted(setup: Any) -> None:
    fp, a, _ = setup
    fp.detach(2)
    a.deliver(FORWARD)
    assert fp.poll(64) == (1, [(1, Verdict.PUNT_NORING, FORWARD)])
    assert fp.counters()["punt.noring"] == 1


def test_outgoing_frames_are_skipped_and_stripped_vlan_tags_put_back(setup: Any) -> None:
    fp, a, b = setup
    a.deliver(FORWARD, pkttype=PACKET_OUTGOING)
    a.deliver(FORWARD, status=TP_STATUS_VLAN_VALID, tci=7)
    done, punts = fp.poll(64)
    assert done == 1  # the outgoing frame is passed over, not counted
    tagged = FORWARD[:12] + b"\x81\x00\x00\x07" + FORWARD[12:]
    assert punts == [(1, Verdict.PUNT_NONIP, tagged)]
    assert b.transmitted() == []


def test_partial_checksum_completed_on_the_ring(setup: Any) -> None:
    fp, a, b = setup
    partial = eth(udp4("198.51.100.10", "203.0.113.10", partial=True))
    a.deliver(partial, status=TP_STATUS_CSUMNOTREADY)
    fp.poll(64)
    (out,) = b.transmitted()
    assert out == expected(FORWARD)[2]  # as if the sender had computed the checksum


def test_transmit_uses_the_tx_ring_and_detach_hands_the_cursors_back(setup: Any) -> None:
    fp, a, b = setup
    assert fp.transmit(2, b"\x02" * 60) is True
    fp.flush()
    assert b.transmitted() == [b"\x02" * 60]
    a.deliver(FORWARD)
    fp.poll(64)
    fp.detach(1)
    assert a.ring.rx_head == 1
    assert not a.ring.attached
    assert fp.counters()["tx_slow"] == 1


def test_attached_ring_refuses_the_python_path() -> None:
    if not have_c():
        pytest.skip("the C extension is not built")
    fp = new_fastpath("c")
    load(fp)
    a = MemoryRing(1, MAC_A)
    fp.attach(a.ring)
    with pytest.raises(OSError):
        a.ring.send(b"\0" * 60)
    with pytest.raises(OSError):
        a.ring.close()
    del fp  # dropping the fast path gives the ring back
    assert not a.ring.attached
    a.ring.close()
    a.peer.close()


@pytest.mark.parametrize("kind", KINDS)
def test_virtio_net_header_before_each_tx_frame(kind: str) -> None:
    """With PACKET_VNET_HDR (as RingSocket.open sets it) every TX slot holds a virtio_net_hdr
    asking for no offload, with hdr_len = the frame's length, then the frame, 10 bytes later;
    tp_len counts both. Forwarded frames and transmit() alike."""
    fp = new_fastpath(kind)
    load(fp)
    a, b = MemoryRing(1, MAC_A, vnet=True), MemoryRing(2, MAC_B, vnet=True)
    try:
        fp.attach(a.ring)
        fp.attach(b.ring)
        a.deliver(FORWARD)
        assert fp.poll(64)[0] == 1
        big = eth(udp4("198.51.100.1", "203.0.113.10", payload=b"x" * 1400))
        assert fp.transmit(2, big)
        fp.flush()
        assert b.transmitted() == [expected(FORWARD)[2], big]  # checked field by field inside
        too_big = b"\0" * (FRAME_SIZE - 32 - VNET.size + 1)
        with pytest.raises(Exception, match="does not fit"):
            fp.transmit(2, too_big)
    finally:
        for ring in (a, b):
            with contextlib.suppress(ValueError):
                fp.detach(ring.ring.ifindex)
            ring.ring.close()
            ring.peer.close()


def test_poll_with_spin_stops_at_budget_punt_or_time(setup: Any) -> None:
    """poll(budget, spin) keeps walking the rings: it returns at the budget, after the pass
    that found a frame for the slow path, or when spin seconds pass with nothing to do."""
    fp, a, b = setup
    assert fp.poll(8, 0.002) == (0, [])  # nothing arrives: back after the spin
    for _ in range(5):
        a.deliver(FORWARD)
    done, punts = fp.poll(3, 0.5)  # budget first: the other two stay on the ring
    assert (done, punts) == (3, [])
    assert fp.poll(8, 0.05) == (2, [])  # then the rest, and nothing more within the spin
    a.deliver(LOCAL)
    a.deliver(FORWARD)
    done, punts = fp.poll(64, 0.5)
    assert done == 2 and punts == [(1, Verdict.PUNT_LOCAL, LOCAL)]
    assert b.transmitted() == [expected(FORWARD)[2]] * 6
    for bad in (-0.1, 1.5):
        with pytest.raises(Exception, match="spin"):
            fp.poll(8, bad)


# -- serve(): the daemon's wait and forward in one call -----------------------------------


def test_serve_forwards_without_returning_a_frame(setup: tuple[Any, MemoryRing, MemoryRing],
                                                  ) -> None:
    fp, a, b = setup
    a.deliver(FORWARD)
    a.deliver(FORWARD)
    done, punts, events = fp.serve(64, 0.0, -1)
    assert (done, punts, events) == (2, [], [])
    assert b.transmitted() == [expected(FORWARD)[2]] * 2
    assert b.kicks() >= 1
    assert a.rx_status(0) == 0 and a.rx_status(1) == 0  # handed back to the kernel


def test_serve_returns_the_punts(setup: tuple[Any, MemoryRing, MemoryRing]) -> None:
    fp, a, _ = setup
    a.deliver(LOCAL)
    done, punts, events = fp.serve(64, 30.0, -1)  # a punt ends the call, not the timeout
    assert done == 1 and events == []
    assert [(ifindex, Verdict(verdict)) for ifindex, verdict, _ in punts] == \
        [(1, Verdict.PUNT_LOCAL)]


def test_serve_returns_when_the_other_descriptor_is_ready(
        setup: tuple[Any, MemoryRing, MemoryRing]) -> None:
    fp, _, _ = setup
    mine, theirs = socket.socketpair()
    with mine, theirs:
        assert fp.serve(64, 0.02, mine.fileno()) == (0, [], [])  # the timeout: nothing came
        theirs.send(b"x")
        done, punts, events = fp.serve(64, 30.0, mine.fileno())
        assert (done, punts) == (0, [])
        assert [(fd, bool(mask & select.POLLIN)) for fd, mask in events] == \
            [(mine.fileno(), True)]


def test_serve_checks_its_arguments(setup: tuple[Any, MemoryRing, MemoryRing]) -> None:
    fp, _, _ = setup
    module = sys.modules[type(fp).__module__]
    with pytest.raises(module.FastPathError):
        fp.serve(0, 0.0, -1)
    with pytest.raises(module.FastPathError):
        fp.serve(64, -1.0, -1)


# -- STALE neighbors: forwarded, and noted once for the control plane ------------------------


def test_serve_forwards_to_a_stale_neighbor_and_returns_its_note(
        setup: tuple[Any, MemoryRing, MemoryRing]) -> None:
    fp, a, b = setup
    fp.load_neighbors(neighbors(frozenset({"203.0.113.10"})), 4)
    a.deliver(FORWARD)
    a.deliver(FORWARD)
    done, punts, events = fp.serve(64, 30.0, -1)  # the note ends the call, not the timeout
    assert (done, punts, events) == (2, [], [])
    assert b.transmitted() == [expected(FORWARD)[2]] * 2  # RFC 4861 §7.3.3: STALE is usable
    assert fp.stale_neighbors() == [(2, bytes([203, 0, 113, 10]))]  # once, not per frame
    assert fp.stale_neighbors() == []
    a.deliver(FORWARD)
    assert fp.serve(64, 0.0, -1) == (1, [], [])
    assert fp.stale_neighbors() == []  # already noted for this table load
    counts = fp.counters()
    assert (counts["forward4"], counts["forward_stale"], counts["punt.neighbor"]) == (3, 3, 0)


def test_poll_stops_spinning_on_a_stale_note(setup: tuple[Any, MemoryRing, MemoryRing]) -> None:
    fp, a, b = setup
    fp.load_neighbors(neighbors(frozenset({"203.0.113.10"})), 4)
    a.deliver(FORWARD)
    assert fp.poll(64, 1.0) == (1, [])
    assert len(b.transmitted()) == 1
    assert fp.stale_neighbors() == [(2, bytes([203, 0, 113, 10]))]


def test_a_stale_frame_dropped_on_a_full_ring_is_not_noted(
        setup: tuple[Any, MemoryRing, MemoryRing]) -> None:
    fp, a, b = setup
    fp.load_neighbors(neighbors(frozenset({"203.0.113.10"})), 4)
    b.fill_tx()
    a.deliver(FORWARD)
    assert fp.poll(64) == (1, [])
    assert fp.stale_neighbors() == []  # nothing was sent to it
    counts = fp.counters()
    assert (counts["drop.txfull"], counts["forward_stale"]) == (1, 0)


def test_a_kick_that_leaves_frames_is_repeated_unless_the_link_refuses(
        setup: tuple[Any, MemoryRing, MemoryRing]) -> None:
    fp, a, b = setup
    a.deliver(FORWARD)
    assert fp.poll(64)[0] == 1
    assert b.kicks() == 1
    # Nobody took the frame (still SEND_REQUEST, as after a full send buffer): the next pass
    # kicks again with nothing new to send.
    assert fp.poll(64)[0] == 0
    assert b.kicks() == 1
    assert fp.counters()["tx_backlog"] >= 2
    assert b.transmitted() == [expected(FORWARD)[2]]  # the "kernel" takes it now
    fp.poll(64)  # one more kick finds the ring drained
    b.kicks()
    fp.poll(64)
    assert b.kicks() == 0  # and then the ring is left alone
    # A kick the link refuses (here the socket's peer is gone; in a VM a link that is down)
    # is not repeated: its frames wait for the next frame queued for that link.
    b.peer.close()
    a.deliver(FORWARD)
    fp.poll(64)
    kicks = fp.counters()["tx_kicks"]
    fp.poll(64)
    fp.poll(64)
    assert fp.counters()["tx_kicks"] == kicks
