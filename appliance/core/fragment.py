"""IPv4 fragmentation and IPv4/IPv6 reassembly, sans-IO.

Fragmentation (RFC 791 §3.2, RFC 1812 §5.2.6)
---------------------------------------------
``fragment_ipv4(packet, mtu) -> list[bytes]`` splits one IPv4 datagram into fragments of at
most ``mtu`` bytes each: payload offsets are multiples of 8, the first fragment keeps every
option, later ones only the options whose copied flag is set, MF is set on all but the last
(the last keeps the original's MF, so fragments of fragments are right), and each header
checksum is recomputed. A datagram that fits is returned alone, unchanged. The caller checks
DF first (it must send Fragmentation Needed with the next-hop MTU anyway): asked to fragment
a datagram with DF set, or with an MTU too small for the header plus 8 bytes, the function
raises ``CannotFragment`` (reason ``ip.cantfrag``), the one exception here; a malformed
datagram raises ``PacketError``.

Reassembly (RFC 791 §3.2, RFC 815, RFC 8200 §4.5, RFC 5722, RFC 6946)
-------------------------------------------------------------------
``Reassembler`` holds datagrams in progress for both families::

    r = Reassembler(max_datagrams=200, max_bytes=4 << 20)
    result = r.add_v4(packet, now)     # or r.add_v6(packet, now)
    for key, n in result.counters.items(): stats.bump(key, n)
    if result.datagram is not None: ...   # complete: the whole datagram, header fixed up
    elif result.drop is not None: ...     # dropped: result.drop is the Stats key bumped
    # else the fragment is held
    for gone in r.expire(now):            # call from tick(); counts and tells about timeouts
        stats.bump(gone.counter, gone.fragments)
        if gone.first_fragment is not None: send Time Exceeded code 1 quoting it

``packet`` is the whole IP packet (header on; Ethernet padding past the IP length is cut).
Bad input never raises: every outcome is a ``Reassembly`` value whose ``counters`` holds every
Stats key the call moved (``ip.fragments``, ``ip.fragdropped``, ``ip.reassembled``,
``ip.toosmall``, ``ip.toolong`` and the ``ip6.*`` twins, ``ip6.fragoverflow``), including
fragments of *other* datagrams evicted to make room. A packet that is not a fragment is
handed back as ``datagram`` with no counters.

Rules:

- Holes are tracked with the RFC 815 hole descriptor list. A fragment must fall entirely in
  one hole: anything else overlaps, and an overlap drops the whole datagram, IPv6 (RFC 5722)
  and IPv4 alike (all held fragments and the new one count as ``fragdropped``). An exact
  duplicate (same offset, same bytes, same MF) is dropped alone (RFC 8200 §4.5).
- Inconsistent ends (a second, different last fragment, data past the last fragment) drop the
  datagram too. Non-last fragments must carry a non-zero multiple of 8 bytes; for IPv6 such a
  fragment gets ``param_problem_pointer=4`` (Payload Length), one reaching past 65535 bytes the
  pointer of its Fragment Offset field: the router should send Parameter Problem code 0
  (RFC 8200 §4.5). IPv4 counts these as ``ip.toosmall`` / ``ip.toolong`` (FreeBSD).
- IPv6 atomic fragments (offset 0, M clear) are returned at once without their Fragment
  header (RFC 6946).
- Timeouts run from the first-arriving fragment: 30 s for IPv4 (BSD ``IPFRAGTTL``), 60 s for
  IPv6 (RFC 8200 §4.5). ``expire(now)`` returns ``ExpiredDatagram``s; ``first_fragment`` is
  the offset-0 fragment's bytes when it arrived (then, and only then, send Time Exceeded
  code 1: RFC 792, RFC 8200 §4.5). The counter is ``ip.fragtimeout``/``ip6.fragtimeout``,
  by the number of fragments held.
- Memory is bounded: ``max_datagrams`` in progress over both families (the sysctl
  ``net.inet.ip.maxfragpackets``: -1 = unlimited, 0 = refuse every fragment),
  ``max_bytes`` of fragment data held, ``max_fragments`` per datagram. A new datagram evicts
  the oldest one (counted ``ip.fragdropped`` for IPv4, ``ip6.fragoverflow`` for IPv6, by the
  fragments it held); a datagram that alone exceeds a limit is dropped.
- The reassembled IPv4 datagram keeps the first fragment's header and options, with MF and the
  offset cleared, the total length and checksum recomputed. The reassembled IPv6 packet is the
  first fragment's unfragmentable part, the Fragment header removed and the header before it
  given the Fragment header's Next Header, Payload Length recomputed.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from appliance.packet.errors import PacketError
from appliance.packet.ipv4 import (
    IPV4_DF,
    IPV4_MF,
    IPv4Header,
    ipv4_option_copied,
    split_ipv4_options,
)
from appliance.packet.ipv6 import IPv6Header, walk_extension_headers

__all__ = [
    "CannotFragment",
    "ExpiredDatagram",
    "Reassembler",
    "Reassembly",
    "fragment_ipv4",
]

IPV4_REASSEMBLY_TIMEOUT = 30.0
"""Seconds an IPv4 datagram may wait for its fragments (BSD IPFRAGTTL, Linux ipfrag_time)."""
IPV6_REASSEMBLY_TIMEOUT = 60.0
"""Seconds an IPv6 packet may wait for its fragments (RFC 8200 §4.5)."""
MAX_PACKET = 65535
"""Largest IPv4 datagram / IPv6 payload without jumbograms (RFC 791, RFC 8200 §3)."""

_INFINITY = 1 << 20


class CannotFragment(ValueError):
    """``fragment_ipv4`` was asked for the impossible (DF set, or the MTU is too small)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"ip.cantfrag: {detail}")
        self.reason = "ip.cantfrag"


def _copied_options(options: bytes) -> bytes:
    """Options for the second and later fragments: only those with the copied flag set."""
    kept = b"".join(o for o in split_ipv4_options(options) if ipv4_option_copied(o[0]))
    if len(kept) & 3:
        kept += b"\x00" * (4 - (len(kept) & 3))
    return kept


def fragment_ipv4(packet: bytes, mtu: int) -> list[bytes]:
    """Split an IPv4 datagram into fragments of at most ``mtu`` bytes (RFC 791 §3.2).

    Returns ``[packet]`` (trimmed to its Total Length) when it fits. Raises ``CannotFragment``
    when DF is set or ``mtu`` cannot hold the header and 8 bytes of data, ``PacketError`` for
    a malformed header or bad options.
    """
    header = IPv4Header.parse(packet)
    hlen = header.header_length
    total = header.total_length
    if total < hlen or total > len(packet):
        raise PacketError("ip.badlen", f"total length {total}, buffer {len(packet)}")
    if total <= mtu:
        return [packet[:total] if total < len(packet) else packet]
    if header.flags & IPV4_DF:
        raise CannotFragment(f"DF set, {total} bytes > MTU {mtu}")
    payload = memoryview(packet)[hlen:total]
    later_options = _copied_options(header.options) if header.options else b""
    if mtu - hlen < 8 or mtu - 20 - len(later_options) < 8:
        raise CannotFragment(f"MTU {mtu} too small for a {hlen}-byte header")
    base = header.frag_offset << 3
    original_mf = header.flags & IPV4_MF
    other_flags = header.flags & ~(IPV4_MF | IPV4_DF)
    fragments: list[bytes] = []
    options = header.options
    offset = 0
    n = len(payload)
    while offset < n:
        room = ((mtu - 20 - len(options)) // 8) * 8
        chunk = payload[offset : offset + room]
        last = offset + len(chunk) >= n
        frag_header = IPv4Header(
            tos=header.tos,
            total_length=20 + len(options) + len(chunk),
            ident=header.ident,
            flags=other_flags | (original_mf if last else IPV4_MF),
            frag_offset=(base + offset) >> 3,
            ttl=header.ttl,
            proto=header.proto,
            checksum=0,
            src=header.src,
            dst=header.dst,
            options=options,
        )
        fragments.append(frag_header.pack() + chunk)
        offset += len(chunk)
        options = later_options
    return fragments


@dataclass(frozen=True, slots=True)
class Reassembly:
    """What became of one fragment handed to ``Reassembler``."""

    datagram: bytes | None = None
    """The whole reassembled datagram when this fragment completed it (or a non-fragment)."""
    drop: str | None = None
    """The Stats key counting this fragment's drop, when it was dropped."""
    detail: str = ""
    """Why, in words, for the trace: "overlap", "duplicate", "evicted", ..."""
    counters: dict[str, int] = field(default_factory=dict)
    """Every Stats key this call moved and by how much (other datagrams evicted included)."""
    param_problem_pointer: int | None = None
    """IPv6 only: send Parameter Problem code 0 with this pointer about the fragment."""
    fragments: int = 0
    """How many fragments made up ``datagram`` (0 when it was not reassembled)."""

    @property
    def held(self) -> bool:
        """The fragment is kept waiting for the rest of its datagram."""
        return self.datagram is None and self.drop is None


@dataclass(frozen=True, slots=True)
class ExpiredDatagram:
    """A datagram whose reassembly timed out (RFC 792, RFC 8200 §4.5)."""

    version: int
    """4 or 6."""
    src: bytes
    """Source address of the fragments."""
    dst: bytes
    """Destination address of the fragments."""
    ident: int
    """Identification of the fragments (RFC 791 §3.1, RFC 8200 §4.5)."""
    fragments: int
    """Fragments held and now dropped."""
    first_fragment: bytes | None
    """The offset-0 fragment as received, if it arrived: quote it in Time Exceeded code 1."""
    counter: str
    """Stats key to bump by ``fragments``: ``ip.fragtimeout`` or ``ip6.fragtimeout``."""


class _Datagram:
    """One datagram in progress: the RFC 815 hole list and the pieces received."""

    __slots__ = (
        "created",
        "deadline",
        "first",
        "fragments",
        "holes",
        "ident",
        "key",
        "max_end",
        "next_header",
        "nh_offset",
        "pieces",
        "size",
        "total",
        "unfragmentable",
        "version",
    )

    def __init__(self, version: int, key: tuple[object, ...], ident: int, created: float,
                 deadline: float) -> None:
        self.version = version
        self.key = key
        self.ident = ident
        self.created = created
        self.deadline = deadline
        """When this queue expires: its creation plus the timeout at that moment (per queue,
        as BSD's ipq_ttl; a later change of the timeout applies to new queues only)."""
        self.holes: list[tuple[int, int]] = [(0, _INFINITY)]
        self.pieces: dict[int, tuple[bytes, bool]] = {}
        self.total: int | None = None
        self.max_end = 0
        self.fragments = 0
        self.size = 0
        self.first: bytes | None = None
        self.unfragmentable = b""
        self.nh_offset = 0
        self.next_header = 0


class Reassembler:
    """IPv4 and IPv6 fragments in, whole datagrams out; see the module documentation."""

    def __init__(
        self,
        *,
        max_datagrams: int = 200,
        max_bytes: int = 4 << 20,
        max_fragments: int = 128,
        timeout_v4: float = IPV4_REASSEMBLY_TIMEOUT,
        timeout_v6: float = IPV6_REASSEMBLY_TIMEOUT,
    ) -> None:
        self.max_datagrams = max_datagrams
        """Datagrams in progress, both families (-1 = unlimited, 0 = refuse all fragments)."""
        self.max_bytes = max_bytes
        """Bytes of fragments held, both families."""
        self.max_fragments = max_fragments
        """Fragments held per datagram."""
        self.timeout_v4 = timeout_v4
        self.timeout_v6 = timeout_v6
        self.counters: collections.Counter[str] = collections.Counter()
        """Running totals of every counter returned, for tests and inspection."""
        # Insertion order is creation order, so the first entry is the oldest.
        self._v4: dict[tuple[object, ...], _Datagram] = {}
        self._v6: dict[tuple[object, ...], _Datagram] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._v4) + len(self._v6)

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def next_deadline(self) -> float | None:
        """When ``expire`` next has work to do, or None when nothing is held."""
        deadlines = [d.deadline for table in (self._v4, self._v6) for d in table.values()]
        return min(deadlines) if deadlines else None

    # ---- IPv4 -----------------------------------------------------------------------------

    def add_v4(self, packet: bytes, now: float) -> Reassembly:
        """Take one IPv4 packet; see the module documentation for the outcomes."""
        counters: dict[str, int] = {}
        try:
            header = IPv4Header.parse(packet)
        except PacketError as err:
            return self._result(counters, drop=err.reason, detail=str(err))
        hlen = header.header_length
        total = header.total_length
        if total < hlen:
            return self._result(counters, drop="ip.badlen", detail=f"total length {total}")
        if total > len(packet):
            return self._result(counters, drop="ip.tooshort", detail=f"total length {total}")
        if total < len(packet):
            packet = packet[:total]
        if not header.is_fragment:
            return Reassembly(datagram=packet)
        counters["ip.fragments"] = 1
        start = header.frag_offset << 3
        data = packet[hlen:]
        more = bool(header.flags & IPV4_MF)
        if more and (not data or len(data) & 7):
            # FreeBSD ip_reass: ips_toosmall and ips_fragdropped.
            counters["ip.toosmall"] = 1
            return self._result(
                counters, drop="ip.fragdropped", detail=f"{len(data)} bytes, not a multiple of 8"
            )
        if hlen + start + len(data) > MAX_PACKET:
            counters["ip.toolong"] = 1
            return self._result(
                counters, drop="ip.fragdropped", detail="reassembled datagram over 65535 bytes"
            )
        if self.max_datagrams == 0:
            return self._result(counters, drop="ip.fragdropped", detail="reassembly disabled")
        key: tuple[object, ...] = (header.src, header.dst, header.proto, header.ident)
        dgram = self._v4.get(key)
        if dgram is None:
            dgram = self._create(self._v4, 4, key, header.ident, now, self.timeout_v4, counters)
        first = packet if start == 0 else None
        outcome = self._insert(dgram, start, data, more, first, counters)
        if outcome is not None:
            return outcome
        if start == 0:
            dgram.unfragmentable = bytes(packet[:hlen])
        if dgram.holes or dgram.total is None:
            return self._result(counters)
        return self._complete_v4(dgram, counters)

    def _complete_v4(self, dgram: _Datagram, counters: dict[str, int]) -> Reassembly:
        self._remove(dgram)
        first = IPv4Header.parse(dgram.unfragmentable)
        assert dgram.total is not None
        if first.header_length + dgram.total > MAX_PACKET:
            # Later fragments may carry fewer options than the first: only now is the
            # final length known (FreeBSD ip_reass: ips_toolong).
            counters["ip.toolong"] = counters.get("ip.toolong", 0) + 1
            counters["ip.fragdropped"] = counters.get("ip.fragdropped", 0) + dgram.fragments - 1
            return self._result(counters, drop="ip.fragdropped", detail="reassembled over 65535")
        header = IPv4Header(
            tos=first.tos,
            total_length=first.header_length + dgram.total,
            ident=first.ident,
            flags=first.flags & ~IPV4_MF,
            frag_offset=0,
            ttl=first.ttl,
            proto=first.proto,
            checksum=0,
            src=first.src,
            dst=first.dst,
            options=first.options,
        )
        body = b"".join(dgram.pieces[s][0] for s in sorted(dgram.pieces))
        counters["ip.reassembled"] = counters.get("ip.reassembled", 0) + 1
        return self._result(counters, datagram=header.pack() + body, fragments=dgram.fragments)

    # ---- IPv6 -----------------------------------------------------------------------------

    def add_v6(self, packet: bytes, now: float) -> Reassembly:
        """Take one IPv6 packet; see the module documentation for the outcomes."""
        counters: dict[str, int] = {}
        try:
            header = IPv6Header.parse(packet)
        except PacketError as err:
            return self._result(counters, drop=err.reason, detail=str(err))
        end_of_packet = 40 + header.payload_length
        if end_of_packet > len(packet):
            return self._result(counters, drop="ip6.tooshort", detail="payload length")
        if end_of_packet < len(packet):
            packet = packet[:end_of_packet]
        try:
            walk = walk_extension_headers(header.next_header, packet, 40)
        except PacketError as err:
            return self._result(counters, drop=err.reason, detail=str(err))
        frag = walk.fragment
        if frag is None or walk.fragment_offset is None:
            return Reassembly(datagram=packet)
        counters["ip6.fragments"] = 1
        frag_at = walk.fragment_offset
        # Where the Next Header that names the Fragment header lives: the IPv6 header's, or
        # the first byte of the extension header before it.
        index = walk.headers.index((44, frag_at))
        nh_offset = 6 if index == 0 else walk.headers[index - 1][1]
        data = packet[frag_at + 8 :]
        if frag.is_atomic:
            # RFC 6946: an atomic fragment is a whole packet; no reassembly state.
            whole = bytearray(packet[:frag_at] + data)
            whole[nh_offset] = frag.next_header
            whole[4:6] = (len(whole) - 40).to_bytes(2, "big")
            return self._result(counters, datagram=bytes(whole), fragments=1)
        start = frag.offset << 3
        if frag.more and (not data or len(data) & 7):
            return self._result(
                counters,
                drop="ip6.fragdropped",
                detail=f"{len(data)} bytes, not a multiple of 8",
                param_problem_pointer=4,
            )
        if start + len(data) > MAX_PACKET:
            return self._result(
                counters,
                drop="ip6.fragdropped",
                detail="reassembled payload over 65535 bytes",
                param_problem_pointer=frag_at + 2,
            )
        if self.max_datagrams == 0:
            return self._result(counters, drop="ip6.fragoverflow", detail="reassembly disabled")
        key: tuple[object, ...] = (header.src, header.dst, frag.ident)
        dgram = self._v6.get(key)
        if dgram is None:
            dgram = self._create(self._v6, 6, key, frag.ident, now, self.timeout_v6, counters)
        first = packet if start == 0 else None
        outcome = self._insert(dgram, start, data, frag.more, first, counters)
        if outcome is not None:
            return outcome
        if start == 0:
            dgram.unfragmentable = bytes(packet[:frag_at])
            dgram.nh_offset = nh_offset
            dgram.next_header = frag.next_header
        if dgram.holes or dgram.total is None:
            return self._result(counters)
        return self._complete_v6(dgram, counters)

    def _complete_v6(self, dgram: _Datagram, counters: dict[str, int]) -> Reassembly:
        self._remove(dgram)
        assert dgram.total is not None
        head = bytearray(dgram.unfragmentable)
        head[dgram.nh_offset] = dgram.next_header
        head[4:6] = (len(head) - 40 + dgram.total).to_bytes(2, "big")
        body = b"".join(dgram.pieces[s][0] for s in sorted(dgram.pieces))
        counters["ip6.reassembled"] = counters.get("ip6.reassembled", 0) + 1
        return self._result(counters, datagram=bytes(head) + body, fragments=dgram.fragments)

    # ---- timeouts ---------------------------------------------------------------------------

    def expire(self, now: float) -> list[ExpiredDatagram]:
        """Drop every datagram whose time is up at ``now`` and say which (call from tick)."""
        gone: list[ExpiredDatagram] = []
        for table in (self._v4, self._v6):
            for dgram in [d for d in table.values() if d.deadline <= now]:
                self._remove(dgram)
                counter = "ip.fragtimeout" if dgram.version == 4 else "ip6.fragtimeout"
                self.counters[counter] += dgram.fragments
                src, dst = dgram.key[0], dgram.key[1]
                assert isinstance(src, bytes) and isinstance(dst, bytes)
                gone.append(
                    ExpiredDatagram(
                        dgram.version, src, dst, dgram.ident, dgram.fragments, dgram.first, counter
                    )
                )
        return gone

    # ---- shared machinery -----------------------------------------------------------------

    def _result(
        self,
        counters: dict[str, int],
        *,
        datagram: bytes | None = None,
        drop: str | None = None,
        detail: str = "",
        param_problem_pointer: int | None = None,
        fragments: int = 0,
    ) -> Reassembly:
        if drop is not None:
            counters[drop] = counters.get(drop, 0) + 1
        self.counters.update(counters)
        return Reassembly(datagram, drop, detail, counters, param_problem_pointer, fragments)

    def _overflow_key(self, dgram: _Datagram) -> str:
        return "ip.fragdropped" if dgram.version == 4 else "ip6.fragoverflow"

    def _evict(self, dgram: _Datagram, key: str, counters: dict[str, int]) -> None:
        self._remove(dgram)
        if dgram.fragments:
            counters[key] = counters.get(key, 0) + dgram.fragments

    def _oldest(self, keep: _Datagram | None) -> _Datagram | None:
        # Each table is in creation order: its oldest is its first entry (but ``keep``).
        candidates = [
            d
            for d in (
                next((d for d in table.values() if d is not keep), None)
                for table in (self._v4, self._v6)
            )
            if d is not None
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda d: d.created)

    def _create(
        self,
        table: dict[tuple[object, ...], _Datagram],
        version: int,
        key: tuple[object, ...],
        ident: int,
        now: float,
        timeout: float,
        counters: dict[str, int],
    ) -> _Datagram:
        if self.max_datagrams > 0:
            while len(self) >= self.max_datagrams:
                oldest = self._oldest(None)
                if oldest is None:
                    break
                self._evict(oldest, self._overflow_key(oldest), counters)
        dgram = _Datagram(version, key, ident, now, now + timeout)
        table[key] = dgram
        return dgram

    def _remove(self, dgram: _Datagram) -> None:
        table = self._v4 if dgram.version == 4 else self._v6
        if table.get(dgram.key) is dgram:
            del table[dgram.key]
            self._bytes -= dgram.size

    def _drop_datagram(
        self, dgram: _Datagram, key: str, detail: str, counters: dict[str, int]
    ) -> Reassembly:
        """Drop the whole datagram and the fragment in hand (counted under ``key``)."""
        self._evict(dgram, key, counters)
        return self._result(counters, drop=key, detail=detail)

    def _insert(
        self,
        dgram: _Datagram,
        start: int,
        data: bytes,
        more: bool,
        first: bytes | None,
        counters: dict[str, int],
    ) -> Reassembly | None:
        """Fill a hole with ``data``; None when held, else the drop outcome."""
        dropped = "ip.fragdropped" if dgram.version == 4 else "ip6.fragdropped"
        end = start + len(data)
        if more:
            if dgram.total is not None and end > dgram.total:
                return self._drop_datagram(dgram, dropped, "data past the last fragment", counters)
        else:
            if dgram.total is not None and dgram.total != end:
                return self._drop_datagram(dgram, dropped, "two different last fragments", counters)
            if dgram.max_end > end:
                return self._drop_datagram(dgram, dropped, "data past the last fragment", counters)
        # RFC 815: the fragment must lie inside one hole.
        holes = dgram.holes
        index = 0
        for first_byte, last_byte in holes:
            if first_byte <= start and end <= last_byte:
                break
            index += 1
        else:
            if dgram.pieces.get(start) == (data, more):
                return self._result(counters, drop=dropped, detail="duplicate")
            return self._drop_datagram(dgram, dropped, "overlap", counters)
        if dgram.fragments >= self.max_fragments:
            return self._drop_datagram(
                dgram, self._overflow_key(dgram), "too many fragments", counters
            )
        cost = len(data) + (len(first) if first is not None else 0)
        while self._bytes + cost > self.max_bytes:
            oldest = self._oldest(dgram)
            if oldest is None:
                return self._drop_datagram(
                    dgram, self._overflow_key(dgram), "reassembly memory full", counters
                )
            self._evict(oldest, self._overflow_key(oldest), counters)
        replacement: list[tuple[int, int]] = []
        if start > first_byte:
            replacement.append((first_byte, start))
        if end < last_byte:
            replacement.append((end, last_byte))
        holes[index : index + 1] = replacement
        if not more:
            dgram.total = end
            dgram.holes = [(a, min(b, end)) for a, b in holes if a < end]
        dgram.pieces[start] = (data, more)
        dgram.max_end = max(dgram.max_end, end)
        dgram.fragments += 1
        dgram.size += cost
        self._bytes += cost
        if first is not None:
            dgram.first = first
        return None
