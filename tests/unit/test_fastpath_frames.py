"""Frames and tables shared by the fast path unit tests (documentation addresses only).

Interfaces: 1 "a" (MAC 02:..:0a, MTU 1500), 2 "b" (02:..:0b, MTU 1280), 3 "c" (02:..:0c, 1500).

IPv4 routes: 198.51.100.0/24 on a, 203.0.113.0/24 on b, 192.0.2.0/25 via 198.51.100.2 (out a:
redirect territory for traffic from a), 192.0.2.128/26 reject, 192.0.2.192/27 blackhole,
192.0.2.224/28 via 203.0.113.254 (on b), 192.0.2.240/29 on c, 192.0.2.250/32 via
198.51.100.3, 0.0.0.0/0 via 203.0.113.254; own 198.51.100.1, 203.0.113.1 and the directed
broadcast 203.0.113.255. IPv6: 2001:db8:1::/64 on a, 2001:db8:2::/64 on b, 2001:db8:9::/48 via
fe80::2 on a, 2001:db8:66::/48 reject, 2001:db8:3::/64 on c, own 2001:db8:1::1, 2001:db8:2::1
and fe80::a. Neighbors (resolved): 198.51.100.2 and 198.51.100.10 on a, 203.0.113.10 and
203.0.113.254 on b, 192.0.2.241 on c, fe80::2 and 2001:db8:1::10 on a, 2001:db8:2::10 on b.
"""

from __future__ import annotations

import struct
from ipaddress import ip_address, ip_network

from appliance.dataplane.twin import (
    FLAG_FORWARDING4,
    FLAG_FORWARDING6,
    FLAG_REDIRECT4,
    FLAG_REDIRECT6,
    INTERFACE,
    NEIGHBOR,
    NEIGHBOR_STALE,
    NEXTHOP,
    ROUTE4,
    ROUTE6,
    NextHopKind,
)
from appliance.packet.checksum import internet_checksum, pseudo_header_v4, pseudo_header_v6

MAC_A = bytes.fromhex("02000000000a")
MAC_B = bytes.fromhex("02000000000b")
MAC_C = bytes.fromhex("02000000000c")
PEER = bytes.fromhex("0200000000ff")  # the sender on a
NEIGHBOR_MAC = {
    "198.51.100.2": bytes.fromhex("020000000102"),
    "198.51.100.10": bytes.fromhex("020000000110"),
    "203.0.113.10": bytes.fromhex("020000000210"),
    "203.0.113.254": bytes.fromhex("0200000002fe"),
    "192.0.2.241": bytes.fromhex("020000000341"),
    "fe80::2": bytes.fromhex("020000000602"),
    "2001:db8:1::10": bytes.fromhex("020000000610"),
    "2001:db8:2::10": bytes.fromhex("020000000710"),
}
NEIGHBOR_IF = {
    "198.51.100.2": 1, "198.51.100.10": 1, "203.0.113.10": 2, "203.0.113.254": 2,
    "192.0.2.241": 3, "fe80::2": 1, "2001:db8:1::10": 1, "2001:db8:2::10": 2,
}
IF_MAC = {1: MAC_A, 2: MAC_B, 3: MAC_C}
ALL_FLAGS = FLAG_FORWARDING4 | FLAG_FORWARDING6 | FLAG_REDIRECT4 | FLAG_REDIRECT6

ZERO = bytes(16)


def packed(addr: str) -> bytes:
    return ip_address(addr).packed


def interfaces() -> bytes:
    return (INTERFACE.pack(1, MAC_A, 1500) + INTERFACE.pack(2, MAC_B, 1280)
            + INTERFACE.pack(3, MAC_C, 1500))


def fib() -> tuple[bytes, bytes, bytes]:
    hops = [
        (NextHopKind.ONLINK, 1, ZERO),                                  # 0
        (NextHopKind.ONLINK, 2, ZERO),                                  # 1
        (NextHopKind.GATEWAY, 1, packed("198.51.100.2").ljust(16, b"\0")),  # 2
        (NextHopKind.REJECT, 0, ZERO),                                  # 3
        (NextHopKind.BLACKHOLE, 0, ZERO),                               # 4
        (NextHopKind.GATEWAY, 2, packed("203.0.113.254").ljust(16, b"\0")),  # 5
        (NextHopKind.ONLINK, 3, ZERO),                                  # 6
        (NextHopKind.GATEWAY, 1, packed("198.51.100.3").ljust(16, b"\0")),  # 7
        (NextHopKind.LOCAL, 0, ZERO),                                   # 8
        (NextHopKind.GATEWAY, 1, packed("fe80::2")),                    # 9
    ]
    r4 = [
        ("0.0.0.0/0", 5), ("198.51.100.0/24", 0), ("203.0.113.0/24", 1), ("192.0.2.0/25", 2),
        ("192.0.2.128/26", 3), ("192.0.2.192/27", 4), ("192.0.2.224/28", 5),
        ("192.0.2.240/29", 6), ("192.0.2.250/32", 7), ("198.51.100.1/32", 8),
        ("203.0.113.1/32", 8), ("203.0.113.255/32", 8),
    ]
    r6 = [
        ("2001:db8:1::/64", 0), ("2001:db8:2::/64", 1), ("2001:db8:9::/48", 9),
        ("2001:db8:66::/48", 3), ("2001:db8:3::/64", 6), ("2001:db8:1::1/128", 8),
        ("2001:db8:2::1/128", 8), ("fe80::a/128", 8),
    ]
    return (
        b"".join(NEXTHOP.pack(k, i, g) for k, i, g in hops),
        b"".join(ROUTE4.pack(ip_network(p).network_address.packed, ip_network(p).prefixlen, nh)
                 for p, nh in r4),
        b"".join(ROUTE6.pack(ip_network(p).network_address.packed, ip_network(p).prefixlen, nh)
                 for p, nh in r6),
    )


def neighbors(stale: frozenset[str] = frozenset()) -> bytes:
    """NEIGHBOR records of NEIGHBOR_MAC; those in `stale` flagged NEIGHBOR_STALE."""
    out = []
    for addr, mac in NEIGHBOR_MAC.items():
        ifindex = NEIGHBOR_IF[addr]
        v4 = "." in addr
        header = mac + IF_MAC[ifindex] + (b"\x08\x00" if v4 else b"\x86\xdd")
        flags = NEIGHBOR_STALE if addr in stale else 0
        out.append(NEIGHBOR.pack(ifindex, 4 if v4 else 6, packed(addr), header, flags))
    return b"".join(out)


def load(fp: object, flags: int = ALL_FLAGS) -> None:
    fp.load_interfaces(interfaces(), flags, 1)  # type: ignore[attr-defined]
    fp.load_fib(*fib(), 2)  # type: ignore[attr-defined]
    fp.load_neighbors(neighbors(), 3)  # type: ignore[attr-defined]


def udp4(src: str, dst: str, payload: bytes = b"vrlab-test", *, ttl: int = 64,
         options: bytes = b"", flags_frag: int = 0, tos: int = 0,
         partial: bool = False) -> bytes:
    """An IPv4/UDP packet; ``partial`` leaves the UDP checksum as CHECKSUM_PARTIAL does
    (the folded pseudo-header sum, not complemented)."""
    s, d = packed(src), packed(dst)
    udp_len = 8 + len(payload)
    pseudo = pseudo_header_v4(s, d, 17, udp_len)
    udp = bytearray(struct.pack("!HHHH", 40000, 9, udp_len, 0) + payload)
    check = pseudo if partial else (internet_checksum(bytes(udp), pseudo) or 0xFFFF)
    udp[6:8] = check.to_bytes(2, "big")
    hl = 20 + len(options)
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | hl // 4, tos, hl + udp_len, 7,
                                   flags_frag, ttl, 17, 0, s, d) + options)
    header[10:12] = internet_checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + bytes(udp)


def udp6(src: str, dst: str, payload: bytes = b"vrlab-test", *, hlim: int = 64,
         next_header: int = 17, partial: bool = False) -> bytes:
    s, d = packed(src), packed(dst)
    udp_len = 8 + len(payload)
    udp = bytearray(struct.pack("!HHHH", 40000, 9, udp_len, 0) + payload)
    if next_header == 17:
        pseudo = pseudo_header_v6(s, d, 17, udp_len)
        check = pseudo if partial else (internet_checksum(bytes(udp), pseudo) or 0xFFFF)
        udp[6:8] = check.to_bytes(2, "big")
    return struct.pack("!IHBB16s16s", 0x60000000, udp_len, next_header, hlim, s, d) + bytes(udp)


def eth(payload: bytes, *, dst: bytes = MAC_A, src: bytes = PEER, ethertype: int = 0x0800
        ) -> bytes:
    return dst + src + ethertype.to_bytes(2, "big") + payload


def eth6(payload: bytes, *, dst: bytes = MAC_A, src: bytes = PEER) -> bytes:
    return eth(payload, dst=dst, src=src, ethertype=0x86DD)
