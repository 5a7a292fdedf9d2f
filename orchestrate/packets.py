"""Reading pcap files and decoding the frames in them, as far as a lab trace needs.

`PcapReader` reads a pcap file that may still be growing (QEMU's `filter-dump` and tcpdump
append to it while a capture runs): each `read()` returns the records completed since the
last call. `decode(frame)` turns an Ethernet frame into a `Frame` summary: addresses, IP
header fields, the ICMP/ICMPv6 type, the transport ports, and for an ICMP error the packet it
quotes (RFC 792, RFC 4443 §2.4(c): the error carries as much of the offending packet as fits),
which is how a trace ties an error back to the probe that caused it.

Nothing here judges a frame: a truncated header ends decoding where it ends.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PCAP_HEADER = 24
_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAP_GLOBAL_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
"""A pcap file header (microsecond timestamps, Ethernet), for writing pcap streams."""

ICMP_ERRORS_V4 = {3: "unreachable", 4: "source quench", 5: "redirect", 11: "time exceeded",
                  12: "parameter problem"}
ICMP_ERRORS_V6 = {1: "unreachable", 2: "packet too big", 3: "time exceeded",
                  4: "parameter problem"}
ICMP_NAMES_V4 = {0: "echo reply", 8: "echo request", **ICMP_ERRORS_V4}
ICMP_NAMES_V6 = {128: "echo request", 129: "echo reply", 133: "router solicitation",
                 134: "router advertisement", 135: "neighbor solicitation",
                 136: "neighbor advertisement", 137: "redirect", **ICMP_ERRORS_V6}
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6"}


class PcapError(Exception):
    """The file is not a pcap file."""


@dataclass(frozen=True, slots=True)
class PcapRecord:
    time: float
    """Capture time, seconds since the epoch (the host's clock)."""
    frame: bytes
    """The captured bytes (Ethernet frame)."""


class PcapReader:
    """Incremental reader of a pcap file that another process is still writing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._endian: str | None = None
        self._scale = 1e-6

    def read(self) -> list[PcapRecord]:
        """Records completed since the last call (none yet if the header is not written)."""
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        pos = 0
        if self._endian is None:
            if len(data) < PCAP_HEADER:
                return []
            magic = data[:4]
            if magic not in _MAGIC:
                raise PcapError(f"{self.path}: not a pcap file (magic {magic.hex()})")
            self._endian, self._scale = _MAGIC[magic]
            pos = PCAP_HEADER
        header = struct.Struct(self._endian + "IIII")
        out: list[PcapRecord] = []
        while pos + header.size <= len(data):
            sec, frac, caplen, _ = header.unpack_from(data, pos)
            end = pos + header.size + caplen
            if end > len(data):
                break
            out.append(PcapRecord(sec + frac * self._scale, data[pos + header.size:end]))
            pos = end
        self.offset += pos
        return out


def read_pcap(path: Path) -> list[PcapRecord]:
    """Every complete record of a pcap file."""
    return PcapReader(path).read()


def pcap_record_bytes(record: PcapRecord) -> bytes:
    """One record in the microsecond pcap format of PCAP_GLOBAL_HEADER."""
    sec = int(record.time)
    usec = round((record.time - sec) * 1e6)
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    return struct.pack("<IIII", sec, usec, len(record.frame), len(record.frame)) + record.frame


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


@dataclass(slots=True)
class Frame:
    """What a trace wants to know about one frame (fields are None where absent)."""

    src_mac: str = ""
    dst_mac: str = ""
    ethertype: int = 0
    family: int | None = None
    """4 or 6 for IP packets."""
    src: str | None = None
    dst: str | None = None
    proto: int | None = None
    """IPv4 protocol / IPv6 upper-layer next header (after extension headers)."""
    ttl: int | None = None
    """IPv4 TTL or IPv6 hop limit."""
    length: int = 0
    """IP total length (IPv6: 40 + payload length); the frame length for non-IP."""
    ident: int | None = None
    """IPv4 identification (RFC 791), for telling fragments and probes apart."""
    df: bool = False
    fragment: bool = False
    """A fragment (IPv4 MF or offset; IPv6 Fragment header)."""
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None
    """Echo identifier (RFC 792 / RFC 4443 §4.1)."""
    icmp_seq: int | None = None
    icmp_mtu: int | None = None
    """Next-hop MTU of Frag Needed (RFC 1191) / MTU of Packet Too Big (RFC 4443 §3.2)."""
    sport: int | None = None
    dport: int | None = None
    tcp_flags: int | None = None
    payload: bytes = b""
    """Bytes after the transport header (what a probe marks)."""
    quoted: Frame | None = None
    """For an ICMP error or redirect: the packet it quotes (no Ethernet header)."""
    arp: str | None = field(default=None)
    """For ARP: 'who-has X tell Y' / 'X is-at M'."""

    @property
    def is_icmp_error(self) -> bool:
        if self.icmp_type is None:
            return False
        names = ICMP_ERRORS_V4 if self.family == 4 else ICMP_ERRORS_V6
        return self.icmp_type in names

    @property
    def is_redirect(self) -> bool:
        return self.icmp_type == (5 if self.family == 4 else 137)

    def icmp_name(self) -> str:
        names = ICMP_NAMES_V4 if self.family == 4 else ICMP_NAMES_V6
        return names.get(self.icmp_type or 0, f"type {self.icmp_type}")

    def summary(self) -> str:
        """One line, tcpdump-like."""
        if self.arp is not None:
            return f"ARP {self.arp}"
        if self.family is None:
            return f"ethertype 0x{self.ethertype:04x} {self.length} bytes"
        head = f"IPv{self.family} {self.src} > {self.dst}"
        if self.icmp_type is not None:
            what = f"ICMP{'v6' if self.family == 6 else ''} {self.icmp_name()}"
            if self.icmp_code:
                what += f" code {self.icmp_code}"
            if self.icmp_id is not None:
                what += f" id {self.icmp_id} seq {self.icmp_seq}"
            if self.icmp_mtu is not None:
                what += f" mtu {self.icmp_mtu}"
        elif self.sport is not None:
            what = f"{PROTO_NAMES.get(self.proto or 0, self.proto)} {self.sport} > {self.dport}"
            if self.tcp_flags is not None:
                what += f" [{tcp_flags_text(self.tcp_flags)}]"
        else:
            what = f"proto {self.proto}"
        tail = f"{'ttl' if self.family == 4 else 'hlim'} {self.ttl} len {self.length}"
        if self.df:
            tail += " DF"
        if self.fragment:
            tail += " frag"
        quote = ""
        if self.quoted is not None and self.quoted.family is not None:
            q = self.quoted
            quote = f" (quoting {q.src} > {q.dst} {PROTO_NAMES.get(q.proto or 0, q.proto)})"
        return f"{head}: {what}, {tail}{quote}"


def tcp_flags_text(flags: int) -> str:
    names = "FSRPAU"
    return "".join(n for i, n in enumerate(names) if flags & (1 << i)) or "."


def decode(frame: bytes) -> Frame:
    """Decode an Ethernet frame (a VLAN tag is skipped)."""
    out = Frame(length=len(frame))
    if len(frame) < 14:
        return out
    out.dst_mac, out.src_mac = mac_text(frame[0:6]), mac_text(frame[6:12])
    ethertype = int.from_bytes(frame[12:14], "big")
    offset = 14
    if ethertype == 0x8100 and len(frame) >= 18:
        ethertype = int.from_bytes(frame[16:18], "big")
        offset = 18
    out.ethertype = ethertype
    if ethertype == 0x0806:
        _arp(frame[offset:], out)
    elif ethertype in (0x0800, 0x86DD):
        _ip(frame[offset:], out, quoted=False)
    return out


def decode_ip(packet: bytes) -> Frame:
    """Decode a bare IP packet (what an ICMP error quotes)."""
    out = Frame(length=len(packet))
    _ip(packet, out, quoted=True)
    return out


def _arp(pkt: bytes, out: Frame) -> None:
    if len(pkt) < 28:
        return
    op = int.from_bytes(pkt[6:8], "big")
    spa, tpa = ipaddress.IPv4Address(pkt[14:18]), ipaddress.IPv4Address(pkt[24:28])
    out.arp = (f"who-has {tpa} tell {spa}" if op == 1
               else f"{spa} is-at {mac_text(pkt[8:14])}")


def _ip(pkt: bytes, out: Frame, quoted: bool) -> None:
    if not pkt:
        return
    version = pkt[0] >> 4
    if version == 4 and len(pkt) >= 20:
        hlen = (pkt[0] & 0x0F) * 4
        out.family = 4
        out.length = int.from_bytes(pkt[2:4], "big")
        out.ident = int.from_bytes(pkt[4:6], "big")
        flags_frag = int.from_bytes(pkt[6:8], "big")
        out.df = bool(flags_frag & 0x4000)
        out.fragment = bool(flags_frag & 0x3FFF)
        out.ttl, out.proto = pkt[8], pkt[9]
        out.src = str(ipaddress.IPv4Address(pkt[12:16]))
        out.dst = str(ipaddress.IPv4Address(pkt[16:20]))
        if flags_frag & 0x1FFF:
            return  # a non-first fragment carries no transport header
        _transport(pkt[hlen:], out, quoted)
    elif version == 6 and len(pkt) >= 40:
        out.family = 6
        out.length = 40 + int.from_bytes(pkt[4:6], "big")
        out.ttl = pkt[7]
        out.src = str(ipaddress.IPv6Address(pkt[8:24]))
        out.dst = str(ipaddress.IPv6Address(pkt[24:40]))
        nxt, offset = pkt[6], 40
        # RFC 8200 §4: hop-by-hop, routing, destination options, fragment.
        while nxt in (0, 43, 44, 60) and offset + 8 <= len(pkt):
            if nxt == 44:
                out.fragment = True
                if int.from_bytes(pkt[offset + 2:offset + 4], "big") & 0xFFF8:
                    out.proto = pkt[offset]
                    return
                nxt, offset = pkt[offset], offset + 8
            else:
                nxt, offset = pkt[offset], offset + (pkt[offset + 1] + 1) * 8
        out.proto = nxt
        _transport(pkt[offset:], out, quoted)


def _transport(data: bytes, out: Frame, quoted: bool) -> None:
    proto = out.proto
    if proto in (1, 58) and len(data) >= 4:
        out.icmp_type, out.icmp_code = data[0], data[1]
        echo = (0, 8) if proto == 1 else (128, 129)
        if out.icmp_type in echo and len(data) >= 8:
            out.icmp_id = int.from_bytes(data[4:6], "big")
            out.icmp_seq = int.from_bytes(data[6:8], "big")
            out.payload = bytes(data[8:])
            return
        if quoted:
            return  # an error quoting an error: RFC 1812 §4.3.2.7 says there is none
        if proto == 1 and out.icmp_type == 3 and out.icmp_code == 4 and len(data) >= 8:
            out.icmp_mtu = int.from_bytes(data[6:8], "big")
        if proto == 58 and out.icmp_type == 2 and len(data) >= 8:
            out.icmp_mtu = int.from_bytes(data[4:8], "big")
        errors = ICMP_ERRORS_V4 if proto == 1 else ICMP_ERRORS_V6
        if out.icmp_type in errors:
            out.quoted = decode_ip(bytes(data[8:]))
        elif proto == 58 and out.icmp_type == 137:
            # RFC 4861 §4.5: target, destination, then options; the Redirected Header
            # option (type 4) carries the packet after 8 bytes of option header.
            pos = 8 + 32
            while pos + 8 <= len(data):
                kind, units = data[pos], data[pos + 1]
                if units == 0:
                    break
                if kind == 4:
                    out.quoted = decode_ip(bytes(data[pos + 8:pos + units * 8]))
                    break
                pos += units * 8
    elif proto in (6, 17) and len(data) >= 4:
        out.sport = int.from_bytes(data[0:2], "big")
        out.dport = int.from_bytes(data[2:4], "big")
        if proto == 6 and len(data) >= 14:
            out.tcp_flags = data[13] & 0x3F
            if not quoted and len(data) >= 20:
                out.payload = bytes(data[(data[12] >> 4) * 4:])
        elif proto == 17 and not quoted:
            out.payload = bytes(data[8:])


def iter_frames(path: Path) -> Iterator[tuple[float, Frame]]:
    for record in read_pcap(path):
        yield record.time, decode(record.frame)
