"""UDP header and the TCP checksum offset against scapy."""

from __future__ import annotations

from scapy.all import IP, TCP, UDP, raw  # type: ignore[attr-defined]

from appliance.packet.checksum import internet_checksum, pseudo_header_v4
from appliance.packet.tcp import TCP_CHECKSUM_OFFSET, TCP_MIN_LENGTH
from appliance.packet.udp import UDP_CHECKSUM_OFFSET, Udp


def test_udp_matches_scapy() -> None:
    wire = raw(IP(src="192.0.2.1", dst="198.51.100.1") / UDP(sport=5353, dport=53) / b"q")[20:]
    udp = Udp.parse(wire)
    ref = UDP(wire)
    assert (udp.src_port, udp.dst_port, udp.length, udp.checksum) == (
        5353,
        53,
        9,
        ref.chksum,
    )
    assert udp.pack() == wire[:8]
    assert wire[UDP_CHECKSUM_OFFSET : UDP_CHECKSUM_OFFSET + 2] == ref.chksum.to_bytes(2, "big")


def test_tcp_checksum_offset_matches_scapy() -> None:
    wire = raw(IP(src="192.0.2.1", dst="198.51.100.1") / TCP(sport=1, dport=2) / b"data")
    segment = wire[20:]
    assert TCP_MIN_LENGTH == 20 == TCP(segment).dataofs * 4
    stored = int.from_bytes(segment[TCP_CHECKSUM_OFFSET : TCP_CHECKSUM_OFFSET + 2], "big")
    zeroed = segment[:TCP_CHECKSUM_OFFSET] + b"\x00\x00" + segment[TCP_CHECKSUM_OFFSET + 2 :]
    assert stored == internet_checksum(
        zeroed, pseudo_header_v4(wire[12:16], wire[16:20], 6, len(segment))
    )
