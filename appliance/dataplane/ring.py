"""One data interface as an AF_PACKET socket with mmap'd TPACKET_V2 RX and TX rings.

``RingSocket.open(ifname)`` gives a socket bound to the interface (all EtherTypes) with:

- ``PACKET_VERSION = TPACKET_V2``: one frame per slot, handed over as soon as it arrives
  (TPACKET_V3 hands over whole blocks and adds milliseconds at low rates).
- an RX ring and a TX ring of ``frames`` slots of ``frame_size`` bytes each, mapped once
  (RX first, TX right after, as the kernel lays them out); ``frame_size`` fits the MTU.
- ``PACKET_QDISC_BYPASS``: frames from the TX ring skip the qdisc (and the packet taps, so
  tcpdump on the router does not see them: capture on the peer). ``open(..., qdisc_bypass=
  False)`` or ``set_qdisc_bypass(False)`` sends them through the qdisc instead (a lab's
  tc-netem on the interface); every transmit of the interface, fast or slow path, uses this
  socket's TX ring, so the choice covers them all.
- ``PACKET_IGNORE_OUTGOING``: our own transmissions do not come back on the RX ring.
- ``PACKET_VNET_HDR``: each TX slot starts with a ``struct virtio_net_hdr`` (10 bytes, before
  the frame) whose ``hdr_len`` is the whole frame, so the kernel copies the frame into the
  skb's linear buffer instead of attaching the ring page as a zero-copy fragment. Fragments of
  a TX ring page must be copied again (a page allocated per frame) by any device that hands
  the skb to a receive path (veth) and the receiver pulls the headers out of them; a 64- to
  1500-byte copy is cheaper. On RX the kernel puts the same header before the frame (the
  frame still starts at ``tp_mac``). ``tx_vnet_hdr`` says whether the socket has it.
- promiscuous membership (``PACKET_MR_PROMISC``), dropped by the kernel when the socket closes.
- a non-blocking descriptor ``fd`` for ``select``/``poll``: readable when the RX ring has a frame.

Attributes: ``name``, ``ifindex``, ``mac`` (6 bytes), ``mtu``, ``fd``, ``frame_size``,
``rx_frames``, ``tx_frames``, ``tx_vnet_hdr``, ``map`` (the ``mmap`` of both rings),
``rx_head``/``tx_head`` (next slot to look at) and ``attached``.

Python path: ``recv_batch(limit) -> list[bytes]`` returns up to ``limit`` received frames with
TCP/UDP checksums completed where the kernel left them partial (``TP_STATUS_CSUMNOTREADY``:
a sender on this machine with checksum offload) and a VLAN tag the kernel stripped put back;
``recv_raw(limit)`` returns ``(frame, csum_partial)`` pairs without completing. Both skip
``PACKET_OUTGOING`` frames. ``send(frame) -> bool`` places a frame on the TX ring (False when
the ring is full); ``flush() -> bool`` asks the kernel to send what is queued (``send(fd, NULL,
0, MSG_DONTWAIT)``; without MSG_DONTWAIT it would wait for the transmission) and says whether
frames are still waiting (the kernel's send buffer or the device queue was full). ``ring_drops()``
is the number of frames the kernel dropped because the RX ring was full. ``close()``.

C path: ``appliance.dataplane._fastpath.FastPath.attach(ring)`` borrows ``map`` and the
geometry and walks the rings itself; while attached (``attached`` is True) the Python methods
raise ``RingError``, since two walkers with separate cursors would corrupt the rings.
``detach`` hands the cursors back.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import socket
import struct
from types import TracebackType

from appliance.packet.checksum import ones_complement_sum
from appliance.packet.ethernet import EtherType
from appliance.packet.ipproto import IPProto

__all__ = ["RingError", "RingSocket", "complete_l4_checksum"]

# <linux/if_packet.h>, <linux/if_ether.h>, <linux/sockios.h>
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
PACKET_VNET_HDR = 15
PACKET_MR_PROMISC = 1
TPACKET_V2 = 1
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_CSUMNOTREADY = 8
TP_STATUS_VLAN_VALID = 16
TP_STATUS_VLAN_TPID_VALID = 64
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_WRONG_FORMAT = 4

# struct tpacket2_hdr: status, len, snaplen, mac, net, sec, nsec, vlan_tci, vlan_tpid
_TPACKET2_HDR = struct.Struct("=IIIHHIIHH")
# tp_status is read and written as one aligned 32-bit word (``_words``, a memoryview of the
# mapping cast to "I"), never through struct: struct packs and unpacks "=I" a byte at a time,
# and a status word the kernel sees half-written desynchronises the ring (measured: after a
# flood the kernel filled slots past ours while ours stayed "kernel", leaving the socket
# readable with nothing to read, and a reader spinning at 100% CPU).
_SLL_PKTTYPE = 32 + 10  # TPACKET_ALIGN(sizeof(tpacket2_hdr)) + offsetof(sockaddr_ll, sll_pkttype)
_TX_DATA = 32  # TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)
VNET_HDR = struct.Struct("<BBHHHH")  # struct virtio_net_hdr: flags, gso_type, hdr_len, ...
_RX_OVERHEAD = 128  # header, sockaddr_ll, alignment, virtio_net_hdr and a VLAN tag, and spare
_FRAMES_PER_BLOCK = 16


class RingError(OSError):
    """A ring socket could not be set up, or was used while the C fast path owns it."""


def _interface_info(sock: socket.socket, ifname: str) -> tuple[bytes, int]:
    """MAC and MTU of ``ifname`` in the socket's network namespace."""
    name = ifname.encode()
    hwaddr = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("16s16x", name))
    mtu = fcntl.ioctl(sock.fileno(), SIOCGIFMTU, struct.pack("16s16x", name))
    return hwaddr[18:24], struct.unpack_from("i", mtu, 16)[0]


class RingSocket:
    """An AF_PACKET socket with TPACKET_V2 RX/TX rings on one interface (see module doc)."""

    def __init__(
        self,
        sock: socket.socket,
        name: str,
        ifindex: int,
        mac: bytes,
        mtu: int,
        ring_map: mmap.mmap,
        frame_size: int,
        frames: int,
        tx_vnet_hdr: bool = False,
    ) -> None:
        self._sock = sock
        self.name = name
        self.ifindex = ifindex
        self.mac = mac
        self.mtu = mtu
        self.map = ring_map
        self.fd = sock.fileno()
        self.frame_size = frame_size
        self.rx_frames = frames
        self.tx_frames = frames
        self.rx_head = 0
        self.tx_head = 0
        self.attached = False
        self._drops = 0
        self._tx_base = frame_size * frames
        self.tx_vnet_hdr = tx_vnet_hdr
        self._words = memoryview(ring_map).cast("I")
        self._tx_data = _TX_DATA + (VNET_HDR.size if tx_vnet_hdr else 0)

    @classmethod
    def open(cls, ifname: str, *, frames: int = 2048, qdisc_bypass: bool = True) -> RingSocket:
        """Open the rings on ``ifname`` (needs CAP_NET_RAW); ``frames`` slots per ring;
        ``qdisc_bypass``: whether the TX ring skips the interface's qdisc."""
        if frames <= 0 or frames % _FRAMES_PER_BLOCK:
            raise RingError(f"frames must be a positive multiple of {_FRAMES_PER_BLOCK}")
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError as err:
            raise RingError(f"{ifname}: no such interface") from err
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # receives nothing until bind
        try:
            mac, mtu = _interface_info(sock, ifname)
            frame_size = 2048
            while frame_size < mtu + 14 + _RX_OVERHEAD:
                frame_size *= 2
            block_size = frame_size * _FRAMES_PER_BLOCK
            req = struct.pack("IIII", block_size, frames // _FRAMES_PER_BLOCK, frame_size, frames)
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
            sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, int(qdisc_bypass))
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)  # before the rings, or EBUSY
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            sock.setsockopt(SOL_PACKET, PACKET_TX_RING, req)
            ring_map = mmap.mmap(sock.fileno(), 2 * block_size * (frames // _FRAMES_PER_BLOCK))
            try:
                sock.bind((ifname, ETH_P_ALL))
                mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
                sock.setblocking(False)
            except BaseException:
                ring_map.close()
                raise
        except OSError as err:
            sock.close()
            if isinstance(err, RingError):
                raise
            raise RingError(err.errno, f"{ifname}: {err.strerror or err}") from err
        except BaseException:
            sock.close()
            raise
        return cls(sock, ifname, ifindex, mac, mtu, ring_map, frame_size, frames, True)

    def set_qdisc_bypass(self, on: bool) -> None:
        """Skip the qdisc (True) or send through it (False) from now on; the kernel allows
        the change on a socket whose rings are mapped (it only picks the transmit function)."""
        self._sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, int(on))

    def qdisc_bypass(self) -> bool:
        """Whether the TX ring skips the qdisc now (read back from the kernel)."""
        return bool(self._sock.getsockopt(SOL_PACKET, PACKET_QDISC_BYPASS))

    def _check_owner(self) -> None:
        if self.attached:
            raise RingError(f"{self.name}: the ring belongs to the C fast path while attached")

    def recv_raw(self, limit: int) -> list[tuple[bytes, bool]]:
        """Up to ``limit`` frames as ``(frame, csum_partial)``; stripped VLAN tags put back."""
        self._check_owner()
        out: list[tuple[bytes, bool]] = []
        ring, size, head, words = self.map, self.frame_size, self.rx_head, self._words
        while len(out) < limit:
            off = head * size
            status = words[off >> 2]
            if not status & TP_STATUS_USER:
                break
            _, _, snaplen, mac_off, _, _, _, tci, tpid = _TPACKET2_HDR.unpack_from(ring, off)
            if ring[off + _SLL_PKTTYPE] != PACKET_OUTGOING:
                start = off + mac_off
                end = min(start + snaplen, off + size)
                frame = ring[start:end]
                if status & TP_STATUS_VLAN_VALID and len(frame) >= 12:
                    if not (status & TP_STATUS_VLAN_TPID_VALID and tpid):
                        tpid = 0x8100
                    frame = frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:]
                out.append((frame, bool(status & TP_STATUS_CSUMNOTREADY)))
            words[off >> 2] = TP_STATUS_KERNEL
            head = head + 1 if head + 1 < self.rx_frames else 0
        self.rx_head = head
        return out

    def recv_batch(self, limit: int) -> list[bytes]:
        """Up to ``limit`` received frames, checksums completed (the Python path)."""
        frames = []
        for frame, csum_partial in self.recv_raw(limit):
            if csum_partial:
                buf = bytearray(frame)
                complete_l4_checksum(buf)
                frame = bytes(buf)
            frames.append(frame)
        return frames

    def send(self, frame: bytes) -> bool:
        """Queue ``frame`` on the TX ring; False when the ring is full. ``flush()`` sends."""
        self._check_owner()
        data = self._tx_data
        if len(frame) > self.frame_size - data:
            raise RingError(f"{self.name}: frame of {len(frame)} bytes does not fit a slot")
        off = self._tx_base + self.tx_head * self.frame_size
        if self._words[off >> 2] not in (TP_STATUS_AVAILABLE, TP_STATUS_WRONG_FORMAT):
            return False
        if self.tx_vnet_hdr:  # no offload asked; hdr_len = the whole frame goes linear
            VNET_HDR.pack_into(self.map, off + _TX_DATA, 0, 0, len(frame), 0, 0, 0)
        self.map[off + data : off + data + len(frame)] = frame
        struct.pack_into("=I", self.map, off + 4, data - _TX_DATA + len(frame))  # tp_len
        self._words[off >> 2] = TP_STATUS_SEND_REQUEST
        self.tx_head = self.tx_head + 1 if self.tx_head + 1 < self.tx_frames else 0
        return True

    def flush(self) -> bool:
        """Kick the kernel to send the queued TX frames, without waiting for them; returns
        whether frames are still waiting on the ring afterwards (a backlog).

        A kick need not take every frame: the socket's send buffer or a full device queue
        ends it early, and nothing tells us when there is room again, so the caller kicks
        again soon (the C fast path's kick() and serve() explain the measurement). Errors
        are ignored, as the C fast path ignores them: a link that is down (ENETDOWN) or a full
        device queue must not stop the router."""
        try:
            self._sock.send(b"", socket.MSG_DONTWAIT)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.ENOBUFS):
                return False  # a link that is down keeps its frames until the next send
        last = self.tx_head - 1 if self.tx_head else self.tx_frames - 1
        return bool(self._words[(self._tx_base + last * self.frame_size) >> 2]
                    == TP_STATUS_SEND_REQUEST)

    def ring_drops(self) -> int:
        """Frames dropped by the kernel because the RX ring was full, since open."""
        try:
            stats = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError:  # not a packet socket (the in-memory rings of the unit tests)
            return self._drops
        self._drops += struct.unpack("II", stats)[1]  # the kernel resets on read
        return self._drops

    def close(self) -> None:
        """Unmap the rings and close the socket (detach from the C fast path first)."""
        if self.attached:
            raise RingError(f"{self.name}: detach from the fast path before closing")
        self._words.release()
        if not self.map.closed:
            self.map.close()
        self._sock.close()

    def __enter__(self) -> RingSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def complete_l4_checksum(frame: bytearray) -> None:
    """Finish a TCP/UDP checksum left partial by a local sender (CHECKSUM_PARTIAL).

    The field holds the folded pseudo-header sum; the "hardware" step is the one's complement
    of the sum from the transport header to the end of the IP payload, stored in the field
    (0 is sent as 0xffff, as Linux skb_checksum_help does). Frames that are not plain IPv4 or
    IPv6 TCP/UDP, fragments, or too short are left alone.
    """
    n = len(frame)
    if n < 14:
        return
    ethertype = (frame[12] << 8) | frame[13]
    if ethertype == EtherType.IPV4:
        if n < 34 or frame[14] >> 4 != 4:
            return
        hl = (frame[14] & 15) * 4
        total = (frame[16] << 8) | frame[17]
        if hl < 20 or total < hl or 14 + total > n or (frame[20] & 0x3F) or frame[21]:
            return
        proto = frame[23]
        start, end = 14 + hl, 14 + total
    elif ethertype == EtherType.IPV6:
        if n < 54 or frame[14] >> 4 != 6:
            return
        proto = frame[20]
        start, end = 54, 54 + ((frame[18] << 8) | frame[19])
        if end > n:
            return
    else:
        return
    if proto == IPProto.TCP:
        field = start + 16
    elif proto == IPProto.UDP:
        field = start + 6
    else:
        return
    if field + 2 > end:
        return
    value = ~ones_complement_sum(frame[start:end]) & 0xFFFF
    if value == 0:
        value = 0xFFFF
    frame[field] = value >> 8
    frame[field + 1] = value & 0xFF
