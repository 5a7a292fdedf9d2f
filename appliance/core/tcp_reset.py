"""TCP to the router's own addresses: every port is closed, so the answer is a reset.

A host answers a segment for a connection that does not exist (state CLOSED) with RST
(RFC 9293 §3.10.7.1, RFC 1122 §4.2.2.13), never with ICMP port unreachable: scanners,
`traceroute -T` and TCP health checks read an ICMP error as "filtered". The router has no
TCP listener, so `closed_port_reset` is the whole of its TCP: check the segment the way BSD
`tcp_input` does before it looks for a socket (length, data offset, checksum), then build
the reset `tcp_dropwithreset` would:

- a segment carrying RST gets nothing (a reset is never answered with a reset);
- with ACK set: <SEQ=SEG.ACK><CTL=RST>;
- without ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, where SEG.LEN counts the data
  and one for each of SYN and FIN.

The caller sends it from the address the segment was sent to, rate-limited with the ICMP
error bucket of its family (FreeBSD limits "closed port RST responses" with icmplim too),
and never for a segment sent to a broadcast or multicast address.

Counters use the BSD `tcpstat` names: `tcp.rcvtotal`, `tcp.rcvshort`, `tcp.rcvbadoff`,
`tcp.rcvbadsum`, `tcp.sndrst` (tcps_sndrst, MIB-II tcpOutRsts), plus `tcp.noport` (segments
for a port nobody listens on) and `tcp.rstlimited` (resets held back by the rate limit).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from appliance.packet.checksum import internet_checksum, ones_complement_sum
from appliance.packet.tcp import TCP_CHECKSUM_OFFSET, TCP_MIN_LENGTH

__all__ = ["Reset", "closed_port_reset", "with_checksum"]

# TCP header flags (RFC 9293 §3.1)
_FIN = 0x01
_SYN = 0x02
_RST = 0x04
_ACK = 0x10

_HEAD = struct.Struct("!HHII")  # source port, destination port, sequence, acknowledgment
_RESET = struct.Struct("!HHIIBBHHH")


@dataclass(frozen=True, slots=True)
class Reset:
    """What to do with one segment: send `segment` (a RST with its checksum zero, for the
    caller to fill in over its pseudo-header) or nothing; `counter` is the Stats key of
    what happened."""

    counter: str
    segment: bytes | None = None


def closed_port_reset(segment: bytes, pseudo_sum: int) -> Reset:
    """The answer to `segment` (TCP header and data) sent to a closed port; `pseudo_sum` is
    the one's complement sum of the segment's pseudo-header (checksum verification)."""
    if len(segment) < TCP_MIN_LENGTH:
        return Reset("tcp.rcvshort")
    offset = (segment[12] >> 4) * 4
    if offset < TCP_MIN_LENGTH or offset > len(segment):
        return Reset("tcp.rcvbadoff")
    if ones_complement_sum(segment, pseudo_sum) != 0xFFFF:
        return Reset("tcp.rcvbadsum")
    flags = segment[13]
    if flags & _RST:
        return Reset("tcp.noport")
    sport, dport, seq, ack = _HEAD.unpack_from(segment)
    if flags & _ACK:
        reset = _RESET.pack(dport, sport, ack, 0, 5 << 4, _RST, 0, 0, 0)
    else:
        length = len(segment) - offset + (1 if flags & _SYN else 0) + (1 if flags & _FIN else 0)
        reset = _RESET.pack(dport, sport, 0, (seq + length) & 0xFFFFFFFF, 5 << 4, _RST | _ACK,
                            0, 0, 0)
    return Reset("tcp.sndrst", reset)


def with_checksum(reset: bytes, pseudo_sum: int) -> bytes:
    """`reset` with its checksum over the pseudo-header sum `pseudo_sum` filled in."""
    ck = internet_checksum(reset, pseudo_sum)
    return reset[:TCP_CHECKSUM_OFFSET] + ck.to_bytes(2, "big") + reset[TCP_CHECKSUM_OFFSET + 2:]
