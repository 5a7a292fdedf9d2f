"""The fast path in pure Python: the reference twin of ``appliance/dataplane/_fastpath.c``.

Both modules export the same things and give the same verdicts and output frames for the same
input frames and tables; ``tests/unit/test_fastpath_diff.py`` holds them to that.
``appliance/dataplane/tablesync.py`` picks the C module when it is built and this one otherwise.

Contract
--------

``FastPath()`` holds three tables, each loaded whole and swapped in one step (the packet path
never sees half a table; DESIGN.md "the C side never reads a half-written table"):

- ``load_interfaces(records, flags, generation)``: ``INTERFACE`` records (ifindex, MAC, MTU)
  and the forwarding sysctls as ``FLAG_*`` bits.
- ``load_fib(nexthops, routes4, routes6, generation)``: ``NEXTHOP`` records (kind, ifindex,
  gateway) and ``ROUTE4``/``ROUTE6`` records (prefix, length, next-hop index). Host bits of a
  prefix are ignored; when a prefix appears twice the later record wins. The router's own
  addresses (and directed broadcasts) are ``NextHopKind.LOCAL`` routes.
- ``load_neighbors(records, generation)``: ``NEIGHBOR`` records (egress ifindex, family, next-hop
  address, the 14-byte Ethernet header to put on frames for it; the illumos NCE "fastpath"
  header, a flags byte). Only neighbors with a link-layer address are loaded (REACHABLE, STALE,
  DELAY, PROBE); STALE ones carry ``NEIGHBOR_STALE``: frames are forwarded to them (RFC 4861
  §7.3.3) and counted as ``forward_stale``, and the first frame sent to each (per table load)
  notes it for ``stale_neighbors() -> [(ifindex, address), ...]``, which empties the list (at
  most ``STALE_CAPACITY`` held; more are noted by a later frame). ``serve()`` returns, and a
  ``poll()`` spin stops, once a note is waiting, so the control plane moves the entry to DELAY.

``process(ifindex, frame, csum_partial=False) -> (verdict, out_ifindex, out_frame)`` judges one
frame received on ``ifindex``: ``Verdict.FORWARD`` with the rewritten frame and its egress
interface, a punt with the frame for the slow path (``out_ifindex`` 0), or a drop (empty frame).
``csum_partial`` says the frame came with ``TP_STATUS_CSUMNOTREADY`` (a local sender left the
TCP/UDP checksum to "hardware"): the checksum is completed on forwarded and punted frames.

``set_trace(addresses, match_all=False)`` starts recording the frames from or to the
``TRACE_ADDRESS`` records given (or every IP frame): each gets a ``TRACE_RECORD`` (verdict,
interfaces, addresses, TTL, the next hop, and the time of each stage it reached) in a ring of
``TRACE_CAPACITY`` records (the oldest is overwritten, counted as ``trace_lost``);
``trace_records()`` returns them oldest first and empties the ring. Tracing changes nothing
else: a traced frame gets the verdict it would have got anyway, so `routerctl trace` and
`vrlab trace` can say "fast path" for it. Frames for another host's MAC are not recorded.

``attach(ring)`` / ``detach(ifindex)`` hand a ``appliance.dataplane.RingSocket`` to the fast path;
``poll(budget) -> (frames_read, [(ifindex, verdict, frame), ...])`` walks the RX rings (at most
``budget`` frames), forwards what it can onto the TX rings (one kick per ring per call) and
returns how many frames it read and the punts. ``serve(budget, timeout, other_fd, spin=0.0) ->
(frames, punts, events)`` is the daemon's wait: it sleeps in poll(2) (the C fast path:
epoll_wait) on the rings' descriptors and ``other_fd``, walks the rings whenever they have
frames (again before sleeping, while they keep coming; with ``spin``, until that long after
the last frame; at most 1 ms between kicks while a TX ring holds frames a kick left), and
returns when a frame needs the slow path, a STALE neighbor was noted,
``other_fd`` is ready, a ring reports an error (``events``: ``(fd, revents)`` of those),
``budget`` frames are done or ``timeout`` seconds have passed; a forwarded frame never wakes
the caller (except the first to a STALE neighbor, for its note).
``transmit(ifindex, frame)`` puts a slow-path frame on an attached TX ring (False when the
ring is full) and ``flush()`` kicks the rings; once attached, a ring's TX side belongs to
the fast path. ``counters()`` is a dict of counts (``forward4``, ``forward6``,
``punt.<reason>``, ``drop.<reason>``, ring counts).
Errors in arguments raise ``FastPathError``.

The order of the checks below is the contract: both modules apply them in this order, so a
frame with several problems gets the same verdict from both.
"""

from __future__ import annotations

import enum
import math
import select
import struct
import time
from typing import Protocol, TypeAlias

from appliance.dataplane.ring import complete_l4_checksum
from appliance.packet.checksum import incremental_update, ones_complement_sum

Buffer: TypeAlias = bytes | bytearray | memoryview

__all__ = [
    "COUNTER_NAMES",
    "EXTENSION_HEADERS",
    "FLAG_FORWARDING4",
    "FLAG_FORWARDING6",
    "FLAG_REDIRECT4",
    "FLAG_REDIRECT6",
    "INTERFACE",
    "NEIGHBOR",
    "NEXTHOP",
    "ROUTE4",
    "ROUTE6",
    "TRACE_ADDRESS",
    "TRACE_CAPACITY",
    "TRACE_RECORD",
    "FastPath",
    "FastPathError",
    "NextHopKind",
    "Ring",
    "TraceStage",
    "Verdict",
]


class FastPathError(ValueError):
    """A bad table record or argument (the one exception of the fast path modules)."""


class Verdict(enum.IntEnum):
    """What the fast path did with a frame. 0 forwards; punts go to the slow path; drops end."""

    FORWARD = 0
    PUNT_NONIP = 1
    """ARP, VLAN-tagged or another EtherType."""
    PUNT_MALFORMED = 2
    """Runt frame, or an IP header failing RFC 1812 §5.2.2 (version, length, checksum)."""
    PUNT_MULTICAST = 3
    """Ethernet group address, IPv4 multicast or limited broadcast, IPv6 multicast."""
    PUNT_MARTIAN = 4
    """An address that must not appear there (RFC 1812 §5.3.7, RFC 4291 §2.5.2-3)."""
    PUNT_LOCAL = 5
    """Addressed to the router (its addresses and directed broadcasts)."""
    PUNT_OPTIONS = 6
    """IPv4 options (RFC 1812 §5.2.4: source routes and record route need the slow path)."""
    PUNT_EXTHDR = 7
    """An IPv6 extension header (RFC 8200 §4; hop-by-hop must be examined by routers)."""
    PUNT_NOFORWARD = 8
    """Forwarding is off for this family (net.inet.ip.forwarding / net.inet6.ip6.forwarding)."""
    PUNT_TTL = 9
    """TTL / hop limit would expire here (Time Exceeded from the slow path)."""
    PUNT_NOROUTE = 10
    """No route, or the route's interface is unknown."""
    PUNT_REJECT = 11
    """A blackhole or reject route."""
    PUNT_SCOPE = 12
    """IPv6 link-local source or destination: must not leave the link (RFC 4291 §2.5.6)."""
    PUNT_TOOBIG = 13
    """Larger than the egress MTU: fragment or Frag Needed / Packet Too Big."""
    PUNT_REDIRECT = 14
    """Leaves by the interface it came in on while redirects are on (RFC 1812 §5.2.7.2)."""
    PUNT_NEIGHBOR = 15
    """Next hop not resolved (no entry, or INCOMPLETE: the slow path resolves it)."""
    PUNT_NORING = 16
    """The egress interface has no TX ring attached (ring mode only)."""
    PUNT_UNKNOWN_IF = 17
    """Received on an interface the fast path has no table entry for."""
    DROP_OTHERHOST = 18
    """Unicast frame for another MAC (seen because the socket is promiscuous)."""
    DROP_TXFULL = 19
    """The egress TX ring was full (ring mode only)."""

    @property
    def is_punt(self) -> bool:
        return Verdict.PUNT_NONIP <= self <= Verdict.PUNT_UNKNOWN_IF


class NextHopKind(enum.IntEnum):
    """What a route's next hop is."""

    GATEWAY = 1
    """Send to the gateway address on the interface."""
    ONLINK = 2
    """The destination is on the link: it is its own next hop."""
    LOCAL = 3
    """One of the router's addresses: punt."""
    BLACKHOLE = 4
    REJECT = 5


FLAG_FORWARDING4 = 1
FLAG_FORWARDING6 = 2
FLAG_REDIRECT4 = 4
FLAG_REDIRECT6 = 8

# Table records, little-endian, addresses as in the packet (network order).
INTERFACE = struct.Struct("<I6s2xI")  # ifindex, MAC, MTU (IP packet bytes)
NEXTHOP = struct.Struct("<B3xI16s")  # kind, ifindex, gateway (IPv4 in the first 4 bytes)
ROUTE4 = struct.Struct("<4sB3xI")  # prefix, length 0-32, next-hop index
ROUTE6 = struct.Struct("<16sB3xI")  # prefix, length 0-128, next-hop index
NEIGHBOR = struct.Struct("<IB3x16s14sBx")  # ifindex, family 4|6, address, Ethernet header, flags
NEIGHBOR_STALE = 1
"""NEIGHBOR flag: the entry is STALE. The fast path still forwards to it (RFC 4861 §7.3.3, as
Linux does) and notes the neighbor for ``stale_neighbors()`` on the first frame, so the control
plane moves it to DELAY and starts the probe timer."""
STALE_CAPACITY = 64
TRACE_ADDRESS = struct.Struct("<B16s")  # family 4|6, address (IPv4 in the first 4 bytes)
TRACE_RECORD = struct.Struct("<IIHBBBBHHH16s16s16s4x5Q")
"""ifindex, out ifindex, verdict, family, protocol / next header, TTL / hop limit as received,
next-hop kind (0: no route), IP length, ident (ICMP echo identifier or TCP/UDP source port),
aux (ICMP type << 8 | code, or TCP/UDP destination port), source, destination, next hop (the
gateway, or the destination when on-link), and the CLOCK_MONOTONIC nanoseconds of the stages
rx, verify, route, neighbor, tx (0: not reached)."""
TRACE_CAPACITY = 64
TRACE_MAX_ADDRS = 8
SERVE_PASSES = 4096  # bound on one serve() call's passes (each walks, spins or sleeps), as in C
BACKLOG_WAIT_MS = 1  # longest sleep while a TX ring holds frames a kick left, as in C
SPIN_LOOK = 256  # spinning passes between looks at other_fd, as in C


def _ready_now(fd: int) -> list[tuple[int, int]]:
    """[(fd, revents)] if `fd` is ready now (poll(2) without waiting), else []."""
    if fd < 0:
        return []
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return [(ready, mask) for ready, mask in poller.poll(0) if mask]


class TraceStage(enum.IntEnum):
    """Index of a stage time in a TRACE_RECORD."""

    RX = 0
    VERIFY = 1
    """The IP header passed RFC 1812 §5.2.2."""
    ROUTE = 2
    """The destination was looked up."""
    NEIGHBOR = 3
    """The next hop's cached link-layer header was looked up."""
    TX = 4
    """The rewritten frame is on the egress TX ring (or, with process(), was built)."""

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
PROTO_TCP = 6
PROTO_UDP = 17
EXTENSION_HEADERS = frozenset({0, 43, 44, 60, 135, 139, 140, 253, 254})
"""Next Header values punted as extension headers: hop-by-hop, routing, fragment, destination
options, mobility, HIP, shim6, experiments (RFC 8200 §4, RFC 7045). ESP and AH are left alone:
they are opaque end to end and a router forwards them like any upper layer."""

COUNTER_NAMES: tuple[str, ...] = (
    "rx", "forward4", "forward6", "tx_slow", "tx_kicks", "rx_ring_drops", "trace_lost",
    "forward_stale", "tx_backlog", "rx_wakeups", "rx_wait_ns", "tx_kick_ns",
    *(f"{v.name[:4].lower()}.{v.name[5:].lower()}" for v in Verdict if v != Verdict.FORWARD),
)
"""Keys of ``counters()``: frames read from RX rings, forwarded per family, slow-path frames
sent by ``transmit``, TX kicks, frames the kernel dropped because an RX ring was full
(PACKET_STATISTICS), trace records overwritten before they were read, frames sent to a STALE
neighbor, and one count per punt and drop reason."""

_V6_ZERO = bytes(16)
_V6_LOOPBACK = bytes(15) + b"\x01"
_V6_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96


class Ring(Protocol):
    """What the fast path needs from a ring socket (``appliance.dataplane.RingSocket``)."""

    ifindex: int
    fd: int
    """The packet socket (-1: none; serve() then only walks it)."""

    def recv_raw(self, limit: int) -> list[tuple[bytes, bool]]: ...
    def ring_drops(self) -> int: ...
    def send(self, frame: bytes) -> bool: ...
    def flush(self) -> bool: ...


class _Tables:
    """One loaded set of tables; replaced whole on every load."""

    def __init__(self) -> None:
        self.interfaces: dict[int, tuple[bytes, int]] = {}
        self.flags = 0
        self.nexthops: list[tuple[int, int, bytes]] = []
        self.fib4: dict[int, dict[int, int]] = {}
        self.lengths4: list[int] = []
        self.fib6: dict[int, dict[int, int]] = {}
        self.lengths6: list[int] = []
        self.neighbors: dict[tuple[int, int, bytes], bytes] = {}
        self.stale: set[tuple[int, int, bytes]] = set()  # neighbors loaded as STALE
        self.noted: set[tuple[int, int, bytes]] = set()  # of those, the ones already noted


class _Stamp:
    """What a traced frame's judgement records: stage times and the route's next hop."""

    __slots__ = ("nexthop", "times")

    def __init__(self) -> None:
        self.times = [0] * len(TraceStage)
        self.times[TraceStage.RX] = time.monotonic_ns()
        self.nexthop: tuple[int, int, bytes] | None = None

    def mark(self, stage: TraceStage) -> None:
        self.times[stage] = time.monotonic_ns()


def _egress(t: _Tables, ifindex: int, nh: int, kind: int, ip_len: int, redirect_flag: int,
            family: int, dst: bytes, stamp: _Stamp | None = None
            ) -> tuple[int, int, bytes, tuple[int, int, bytes] | None]:
    """The checks after the TTL, the same for both families, in contract order: a usable
    route, the egress interface and its MTU, redirect territory, a resolved neighbor.
    ``(FORWARD, egress ifindex, cached Ethernet header, neighbor key)`` or
    ``(punt, 0, b"", None)``."""
    if nh < 0:
        return Verdict.PUNT_NOROUTE, 0, b"", None
    if kind in (NextHopKind.BLACKHOLE, NextHopKind.REJECT):
        return Verdict.PUNT_REJECT, 0, b"", None
    _, out_ifindex, gateway = t.nexthops[nh]
    out_iface = t.interfaces.get(out_ifindex)
    if out_iface is None:
        return Verdict.PUNT_NOROUTE, 0, b"", None
    if ip_len > out_iface[1]:
        return Verdict.PUNT_TOOBIG, 0, b"", None
    if out_ifindex == ifindex and t.flags & redirect_flag:
        return Verdict.PUNT_REDIRECT, 0, b"", None
    hop = gateway[:len(dst)] if kind == NextHopKind.GATEWAY else dst
    key = (out_ifindex, family, bytes(hop))
    header = t.neighbors.get(key)
    if stamp is not None:
        stamp.mark(TraceStage.NEIGHBOR)
    if header is None:
        return Verdict.PUNT_NEIGHBOR, 0, b"", None
    return Verdict.FORWARD, out_ifindex, header, key


def _records(buf: Buffer, record: struct.Struct, what: str) -> list[tuple[object, ...]]:
    view = memoryview(buf).cast("B")
    if len(view) % record.size:
        raise FastPathError(f"{what}: {len(view)} bytes is not a multiple of {record.size}")
    return list(record.iter_unpack(view))


def _lookup(fib: dict[int, dict[int, int]], lengths: list[int], addr: int, bits: int) -> int:
    for length in lengths:
        nh = fib[length].get(addr >> (bits - length))
        if nh is not None:
            return nh
    return -1


class FastPath:
    """The pure-Python fast path (see the module docstring for the contract)."""

    def __init__(self) -> None:
        self._tables = _Tables()
        self.generation = 0
        self._rings: dict[int, Ring] = {}
        self._next_ring = 0
        self._counts: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self._trace_on = 0  # 0 off, 1 frames from or to _trace_addrs, 2 every IP frame
        self._trace_addrs: set[tuple[int, bytes]] = set()
        self._trace: list[bytes] = []
        self._hop: tuple[int, int, bytes] | None = None  # the last forwarded frame's neighbor
        self._stale: list[tuple[int, bytes]] = []  # notes for stale_neighbors()
        self._backlog: set[int] = set()  # rings whose last kick left frames (as C's backlog)
        self._last_frame = 0.0  # when serve() last found frames: its spin counts from there

    # -- tables ---------------------------------------------------------------------------

    def load_interfaces(self, records: Buffer, flags: int, generation: int) -> None:
        interfaces: dict[int, tuple[bytes, int]] = {}
        for ifindex, mac, mtu in _records(records, INTERFACE, "interfaces"):
            assert isinstance(ifindex, int) and isinstance(mac, bytes) and isinstance(mtu, int)
            interfaces[ifindex] = (mac, mtu)
        tables = self._copy()
        tables.interfaces = interfaces
        tables.flags = flags
        self._tables = tables
        self.generation = generation

    def load_fib(self, nexthops: Buffer, routes4: Buffer, routes6: Buffer, generation: int) -> None:
        hops: list[tuple[int, int, bytes]] = []
        for kind, ifindex, gateway in _records(nexthops, NEXTHOP, "nexthops"):
            assert isinstance(kind, int) and isinstance(ifindex, int)
            assert isinstance(gateway, bytes)
            if kind not in NextHopKind.__members__.values():
                raise FastPathError(f"nexthop {len(hops)}: unknown kind {kind}")
            hops.append((kind, ifindex, gateway))
        fibs: list[tuple[dict[int, dict[int, int]], list[int]]] = []
        families = ((routes4, ROUTE4, 32, "routes4"), (routes6, ROUTE6, 128, "routes6"))
        for buf, record, bits, name in families:
            fib: dict[int, dict[int, int]] = {}
            for prefix, length, nh in _records(buf, record, name):
                assert isinstance(prefix, bytes) and isinstance(length, int)
                assert isinstance(nh, int)
                if length > bits:
                    raise FastPathError(f"prefix length {length} > {bits}")
                if nh >= len(hops):
                    raise FastPathError(f"next-hop index {nh} out of range")
                fib.setdefault(length, {})[int.from_bytes(prefix) >> (bits - length)] = nh
            fibs.append((fib, sorted(fib, reverse=True)))
        tables = self._copy()
        tables.nexthops = hops
        (tables.fib4, tables.lengths4), (tables.fib6, tables.lengths6) = fibs
        self._tables = tables
        self.generation = generation

    def load_neighbors(self, records: Buffer, generation: int) -> None:
        neighbors: dict[tuple[int, int, bytes], bytes] = {}
        stale: set[tuple[int, int, bytes]] = set()
        for ifindex, family, addr, header, flags in _records(records, NEIGHBOR, "neighbors"):
            assert isinstance(ifindex, int) and isinstance(family, int)
            assert isinstance(addr, bytes) and isinstance(header, bytes)
            assert isinstance(flags, int)
            if family not in (4, 6):
                raise FastPathError(f"neighbor family {family} is not 4 or 6")
            if flags & ~NEIGHBOR_STALE:
                raise FastPathError(f"neighbor flags {flags}: only 1 (STALE) is defined")
            key = (ifindex, family, addr[:4] if family == 4 else addr)
            neighbors[key] = header
            if flags & NEIGHBOR_STALE:
                stale.add(key)
            else:  # a later record for the same neighbor wins, as in C
                stale.discard(key)
        tables = self._copy()
        tables.neighbors = neighbors
        tables.stale = stale
        tables.noted = set()
        self._tables = tables
        self.generation = generation

    def _copy(self) -> _Tables:
        new = _Tables()
        new.__dict__.update(self._tables.__dict__)
        return new

    # -- one frame ------------------------------------------------------------------------

    def _count(self, key: str) -> None:
        self._counts[key] += 1

    def process(
        self, ifindex: int, frame: Buffer, csum_partial: bool = False
    ) -> tuple[int, int, bytes]:
        data = bytes(frame)
        stamp = _Stamp() if self._trace_on and self._trace_match(data) else None
        verdict, out_ifindex, out = self._process(ifindex, data, csum_partial, stamp)
        if verdict == Verdict.FORWARD:
            self._note_sent()
        if stamp is not None:
            if verdict == Verdict.FORWARD:
                stamp.mark(TraceStage.TX)
            self._trace_put(ifindex, data, verdict, out_ifindex, stamp)
        return verdict, out_ifindex, out

    def _process(self, ifindex: int, data: bytes, csum_partial: bool, stamp: _Stamp | None
                 ) -> tuple[int, int, bytes]:
        verdict, out_ifindex, out = self._judge(ifindex, data, stamp)
        if verdict == Verdict.FORWARD:
            self._count("forward4" if data[12:14] == b"\x08\x00" else "forward6")
        elif verdict >= Verdict.DROP_OTHERHOST:
            self._count(f"drop.{Verdict(verdict).name[5:].lower()}")
            return verdict, 0, b""
        else:
            self._count(f"punt.{Verdict(verdict).name[5:].lower()}")
            out = data
        if csum_partial:
            buf = bytearray(out)
            complete_l4_checksum(buf)
            out = bytes(buf)
        return verdict, out_ifindex, out

    def _note_sent(self) -> None:
        """A frame went to the last judged frame's neighbor: if it is STALE, count it and note
        it once per table load (the C fast path's note_sent)."""
        t = self._tables
        key = self._hop
        if key is None or key not in t.stale:
            return
        self._count("forward_stale")
        if key in t.noted or len(self._stale) >= STALE_CAPACITY:
            return
        t.noted.add(key)
        self._stale.append((key[0], key[2]))

    def stale_neighbors(self) -> list[tuple[int, bytes]]:
        """The STALE neighbors frames were forwarded to since the last call, each once per
        table load, oldest first; empties the list."""
        out = self._stale
        self._stale = []
        return out

    def _judge(self, ifindex: int, frame: bytes, stamp: _Stamp | None = None
               ) -> tuple[int, int, bytes]:
        t = self._tables
        iface = t.interfaces.get(ifindex)
        if iface is None:
            return Verdict.PUNT_UNKNOWN_IF, 0, b""
        n = len(frame)
        if n < 14:
            return Verdict.PUNT_MALFORMED, 0, b""
        if frame[0] & 1:
            return Verdict.PUNT_MULTICAST, 0, b""
        if frame[0:6] != iface[0]:
            return Verdict.DROP_OTHERHOST, 0, b""
        ethertype = (frame[12] << 8) | frame[13]
        if ethertype == ETHERTYPE_IPV4:
            return self._judge4(ifindex, frame, t, stamp)
        if ethertype == ETHERTYPE_IPV6:
            return self._judge6(ifindex, frame, t, stamp)
        return Verdict.PUNT_NONIP, 0, b""

    def _judge4(self, ifindex: int, frame: bytes, t: _Tables, stamp: _Stamp | None
                ) -> tuple[int, int, bytes]:
        # RFC 1812 §5.2.2: length, version, header length, checksum, total length.
        n = len(frame)
        if n < 34 or frame[14] >> 4 != 4:
            return Verdict.PUNT_MALFORMED, 0, b""
        hl = (frame[14] & 15) * 4
        if hl < 20 or n < 14 + hl or ones_complement_sum(frame[14 : 14 + hl]) != 0xFFFF:
            return Verdict.PUNT_MALFORMED, 0, b""
        total = (frame[16] << 8) | frame[17]
        if total < hl or 14 + total > n:
            return Verdict.PUNT_MALFORMED, 0, b""
        if stamp is not None:
            stamp.mark(TraceStage.VERIFY)
        src = int.from_bytes(frame[26:30])
        dst = int.from_bytes(frame[30:34])
        if dst >> 28 == 0xE or dst == 0xFFFFFFFF:
            return Verdict.PUNT_MULTICAST, 0, b""
        # RFC 1812 §5.3.7: no forwarding from 0/8, 127/8, class D/E sources, or to 0/8, 127/8, E.
        if src >> 28 >= 0xE or src >> 24 in (0, 127) or dst >> 24 in (0, 127) or dst >> 28 == 0xF:
            return Verdict.PUNT_MARTIAN, 0, b""
        nh = _lookup(t.fib4, t.lengths4, dst, 32)
        kind = t.nexthops[nh][0] if nh >= 0 else 0
        if stamp is not None:
            stamp.mark(TraceStage.ROUTE)
            stamp.nexthop = t.nexthops[nh] if nh >= 0 else None
        if kind == NextHopKind.LOCAL:
            return Verdict.PUNT_LOCAL, 0, b""
        # A source that is ours or a directed broadcast of our subnets (both local host routes
        # in the tables): the slow path decides (it drops a broadcast source, RFC 1812 §5.3.7).
        src_nh = _lookup(t.fib4, t.lengths4, src, 32)
        if src_nh >= 0 and t.nexthops[src_nh][0] == NextHopKind.LOCAL:
            return Verdict.PUNT_MARTIAN, 0, b""
        if hl > 20:
            return Verdict.PUNT_OPTIONS, 0, b""
        if not t.flags & FLAG_FORWARDING4:
            return Verdict.PUNT_NOFORWARD, 0, b""
        ttl = frame[22]
        if ttl <= 1:
            return Verdict.PUNT_TTL, 0, b""
        verdict, out_ifindex, header, self._hop = _egress(t, ifindex, nh, kind, total,
                                                          FLAG_REDIRECT4, 4, frame[30:34], stamp)
        if verdict != Verdict.FORWARD:
            return verdict, 0, b""
        # RFC 1812 §5.3.1 TTL decrement; RFC 1624 eqn. 3 on the TTL/protocol word.
        out = bytearray(header)
        out += frame[14 : 14 + total]
        old_word = (ttl << 8) | frame[23]
        checksum = incremental_update((frame[24] << 8) | frame[25], old_word, old_word - 0x100)
        out[22] = ttl - 1
        out[24] = checksum >> 8
        out[25] = checksum & 0xFF
        return Verdict.FORWARD, out_ifindex, bytes(out)

    def _judge6(self, ifindex: int, frame: bytes, t: _Tables, stamp: _Stamp | None
                ) -> tuple[int, int, bytes]:
        n = len(frame)
        if n < 54 or frame[14] >> 4 != 6:
            return Verdict.PUNT_MALFORMED, 0, b""
        payload = (frame[18] << 8) | frame[19]
        if 54 + payload > n:
            return Verdict.PUNT_MALFORMED, 0, b""
        if stamp is not None:
            stamp.mark(TraceStage.VERIFY)
        src = frame[22:38]
        dst = frame[38:54]
        if dst[0] == 0xFF:
            return Verdict.PUNT_MULTICAST, 0, b""
        # RFC 4291 §2.5.2-3, §2.7: unspecified, loopback and multicast are never sources here;
        # IPv4-mapped addresses (§2.5.5.2) never appear on the wire (the router drops them).
        if (src[0] == 0xFF or src in (_V6_ZERO, _V6_LOOPBACK) or dst in (_V6_ZERO, _V6_LOOPBACK)
                or src[:12] == _V6_MAPPED or dst[:12] == _V6_MAPPED):
            return Verdict.PUNT_MARTIAN, 0, b""
        nh = _lookup(t.fib6, t.lengths6, int.from_bytes(dst), 128)
        kind = t.nexthops[nh][0] if nh >= 0 else 0
        if stamp is not None:
            stamp.mark(TraceStage.ROUTE)
            stamp.nexthop = t.nexthops[nh] if nh >= 0 else None
        if kind == NextHopKind.LOCAL:
            return Verdict.PUNT_LOCAL, 0, b""
        if frame[20] in EXTENSION_HEADERS:
            return Verdict.PUNT_EXTHDR, 0, b""
        if not t.flags & FLAG_FORWARDING6:
            return Verdict.PUNT_NOFORWARD, 0, b""
        hlim = frame[21]
        if hlim <= 1:
            return Verdict.PUNT_TTL, 0, b""
        if (src[0] == 0xFE and src[1] & 0xC0 == 0x80) or (dst[0] == 0xFE and dst[1] & 0xC0 == 0x80):
            return Verdict.PUNT_SCOPE, 0, b""
        verdict, out_ifindex, header, self._hop = _egress(t, ifindex, nh, kind, 40 + payload,
                                                          FLAG_REDIRECT6, 6, dst, stamp)
        if verdict != Verdict.FORWARD:
            return verdict, 0, b""
        out = bytearray(header)
        out += frame[14 : 54 + payload]
        out[21] = hlim - 1  # RFC 8200 §3: decremented by 1 by each node that forwards
        return Verdict.FORWARD, out_ifindex, bytes(out)

    # -- rings ----------------------------------------------------------------------------

    def attach(self, ring: Ring) -> None:
        if ring.ifindex in self._rings:
            raise FastPathError(f"interface {ring.ifindex} already has a ring attached")
        self._rings[ring.ifindex] = ring

    def detach(self, ifindex: int) -> None:
        if self._rings.pop(ifindex, None) is None:
            raise FastPathError(f"interface {ifindex} has no ring attached")

    def poll(self, budget: int, spin: float = 0.0) -> tuple[int, list[tuple[int, int, bytes]]]:
        if budget <= 0:
            raise FastPathError("budget must be positive")
        if not 0.0 <= spin <= 1.0:
            raise FastPathError("spin must be 0 to 1 second")
        punts: list[tuple[int, int, bytes]] = []
        done = self._walk(budget, punts)
        if spin > 0.0:  # busy-poll, as the C fast path: until budget, a punt, or spin seconds
            end = time.monotonic() + spin
            while done < budget and not punts and not self._stale:
                more = self._walk(budget - done, punts)
                done += more
                if not more and time.monotonic() >= end:
                    break
        return done, punts

    def serve(self, budget: int, timeout: float, other_fd: int, spin: float = 0.0,
              ) -> tuple[int, list[tuple[int, int, bytes]], list[tuple[int, int]]]:
        if budget <= 0:
            raise FastPathError("budget must be positive")
        if not 0.0 <= timeout <= 60.0:
            raise FastPathError("timeout must be 0 to 60 seconds")
        if not 0.0 <= spin <= 1.0:
            raise FastPathError("spin must be 0 to 1 second")
        punts: list[tuple[int, int, bytes]] = []
        events: list[tuple[int, int]] = []
        end = time.monotonic() + timeout
        done = 0
        for number in range(SERVE_PASSES):
            found = self._walk(budget - done, punts)
            done += found
            if punts or self._stale or done >= budget:
                break
            now = time.monotonic()
            if found:
                self._last_frame = now
            if now >= end:
                break
            if number + 1 >= SERVE_PASSES:
                events = _ready_now(other_fd)
                break
            if found:
                continue  # frames came: look again before sleeping
            if spin and now - self._last_frame < spin:
                if number % SPIN_LOOK == SPIN_LOOK - 1:
                    events = _ready_now(other_fd)
                    if events:
                        break
                continue
            poller = select.poll()
            fds = [ring.fd for ring in self._rings.values() if ring.fd >= 0]
            for fd in fds:
                poller.register(fd, select.POLLIN)
            if other_fd >= 0:
                poller.register(other_fd, select.POLLIN)
            bad = select.POLLERR | select.POLLHUP | select.POLLNVAL
            wait = math.ceil((end - now) * 1000)
            if self._backlog:
                wait = min(wait, BACKLOG_WAIT_MS)
            events = [(fd, mask) for fd, mask in poller.poll(wait)
                      if (mask if fd == other_fd else mask & bad)]
            if events:
                break
        return done, punts, events

    def _walk(self, budget: int, punts: list[tuple[int, int, bytes]]) -> int:
        """One pass over the RX rings (at most `budget` frames), TX rings kicked."""
        dirty: set[int] = set()
        done = 0
        rings = list(self._rings.items())
        for k in range(len(rings)):
            if done >= budget:
                break
            ifindex, ring = rings[(self._next_ring + k) % len(rings)]
            batch = ring.recv_raw(budget - done)
            done += len(batch)
            self._counts["rx"] += len(batch)
            for frame, csum_partial in batch:
                stamp = _Stamp() if self._trace_on and self._trace_match(frame) else None
                verdict, out_ifindex, out = self._process(ifindex, frame, csum_partial, stamp)
                if verdict == Verdict.FORWARD:
                    tx = self._rings.get(out_ifindex)
                    if tx is not None and tx.send(out):
                        dirty.add(out_ifindex)
                        self._note_sent()
                        if stamp is not None:
                            stamp.mark(TraceStage.TX)
                            self._trace_put(ifindex, frame, verdict, out_ifindex, stamp)
                        continue
                    verdict = Verdict.PUNT_NORING if tx is None else Verdict.DROP_TXFULL
                    if stamp is not None:
                        self._trace_put(ifindex, frame, verdict, out_ifindex, stamp)
                    self._counts["forward4" if frame[12:14] == b"\x08\x00" else "forward6"] -= 1
                    if tx is None:
                        self._count("punt.noring")
                        buf = bytearray(frame)
                        if csum_partial:
                            complete_l4_checksum(buf)
                        punts.append((ifindex, Verdict.PUNT_NORING, bytes(buf)))
                    else:
                        self._count("drop.txfull")
                    continue
                if stamp is not None:
                    self._trace_put(ifindex, frame, verdict, out_ifindex, stamp)
                if verdict != Verdict.DROP_OTHERHOST:
                    punts.append((ifindex, verdict, out))
        if rings:
            self._next_ring = (self._next_ring + 1) % len(rings)
        self._kick(dirty)
        return done

    def _kick(self, dirty: set[int]) -> bool:
        """Kick the TX rings of `dirty` and those a kick left frames on (C's kick());
        returns whether any ring still has a backlog."""
        for out_ifindex in dirty | self._backlog:
            tx_ring = self._rings.get(out_ifindex)
            self._backlog.discard(out_ifindex)
            if tx_ring is None:
                continue
            self._count("tx_kicks")
            started = time.monotonic_ns()
            backlog = tx_ring.flush()
            self._counts["tx_kick_ns"] += time.monotonic_ns() - started
            if backlog:
                self._backlog.add(out_ifindex)
                self._count("tx_backlog")
        return bool(self._backlog)

    # -- the trace ring ---------------------------------------------------------------------

    def set_trace(self, addresses: Buffer, match_all: bool = False) -> None:
        view = memoryview(addresses).cast("B")
        n = len(view) // TRACE_ADDRESS.size
        if len(view) % TRACE_ADDRESS.size or n > TRACE_MAX_ADDRS:
            raise FastPathError(f"trace addresses: {len(view)} bytes is not 0 to "
                                f"{TRACE_MAX_ADDRS} records of {TRACE_ADDRESS.size}")
        wanted: set[tuple[int, bytes]] = set()
        for family, addr in TRACE_ADDRESS.iter_unpack(view):
            if family not in (4, 6):
                raise FastPathError(f"trace address family {family} is not 4 or 6")
            wanted.add((family, addr[:4] if family == 4 else addr))
        self._trace_addrs = wanted
        self._trace_on = 2 if match_all else 1 if wanted else 0

    def trace_records(self) -> bytes:
        out = b"".join(self._trace)
        self._trace.clear()
        return out

    def _trace_match(self, frame: bytes) -> bool:
        n = len(frame)
        if n < 14:
            return False
        ethertype = (frame[12] << 8) | frame[13]
        if ethertype == ETHERTYPE_IPV4 and n >= 34:
            family, src, dst = 4, frame[26:30], frame[30:34]
        elif ethertype == ETHERTYPE_IPV6 and n >= 54:
            family, src, dst = 6, frame[22:38], frame[38:54]
        else:
            return False
        return (self._trace_on == 2 or (family, src) in self._trace_addrs
                or (family, dst) in self._trace_addrs)

    def _trace_put(self, ifindex: int, frame: bytes, verdict: int, out_ifindex: int,
                   stamp: _Stamp) -> None:
        if verdict == Verdict.DROP_OTHERHOST:
            return  # another host's frame on a shared segment
        if len(self._trace) == TRACE_CAPACITY:
            del self._trace[0]
            self._count("trace_lost")
        n = len(frame)
        l4 = 0
        if frame[12:14] == b"\x08\x00":
            family, proto, ttl, length = 4, frame[23], frame[22], (frame[16] << 8) | frame[17]
            src, dst = frame[26:30], frame[30:34]
            if not ((frame[20] << 8) | frame[21]) & 0x1FFF:
                l4 = 14 + (frame[14] & 15) * 4
        else:
            family, proto, ttl = 6, frame[20], frame[21]
            length = (40 + ((frame[18] << 8) | frame[19])) & 0xFFFF
            src, dst = frame[22:38], frame[38:54]
            l4 = 54
        ident = aux = 0
        if l4 and proto in (1, 58) and l4 + 8 <= n:
            aux = (frame[l4] << 8) | frame[l4 + 1]
            ident = (frame[l4 + 4] << 8) | frame[l4 + 5]
        elif l4 and proto in (6, 17) and l4 + 4 <= n:
            ident = (frame[l4] << 8) | frame[l4 + 1]
            aux = (frame[l4 + 2] << 8) | frame[l4 + 3]
        kind, nexthop = 0, b""
        if stamp.nexthop is not None:
            kind, _, gateway = stamp.nexthop
            nexthop = gateway[:len(src)] if kind == NextHopKind.GATEWAY else dst
        keep_out = verdict in (Verdict.FORWARD, Verdict.DROP_TXFULL)
        self._trace.append(TRACE_RECORD.pack(
            ifindex, out_ifindex if keep_out else 0, verdict, family, proto, ttl, kind, length,
            ident, aux, src, dst, nexthop, *stamp.times))

    def transmit(self, ifindex: int, frame: Buffer) -> bool:
        ring = self._rings.get(ifindex)
        if ring is None:
            raise FastPathError(f"interface {ifindex} has no ring attached")
        sent = ring.send(bytes(frame))
        self._count("tx_slow" if sent else "drop.txfull")
        return sent

    def flush(self) -> bool:
        return self._kick(set(self._rings))

    def counters(self) -> dict[str, int]:
        self._counts["rx_ring_drops"] = sum(ring.ring_drops() for ring in self._rings.values())
        return dict(self._counts)
