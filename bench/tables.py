"""The traffic and the forwarding tables the two forwarding benchmarks share.

bench/fastpath.py (the fast path alone, on in-memory rings) and bench/forward.py (the network:
h1 -- r -- h2 in namespaces, documentation addresses only) send the same frames through the
same tables::

    h1 [h1-r] 192.0.2.2/26 -- [r-h1] r [r-h2] -- [h2-r] 198.51.100.2/26 h2

IPv4 goes to one destination; IPv6 goes to `FLOWS` destinations 2001:db8:0:N::2, each its own
/64 (the case where a big table costs cache and TLB misses).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.dataplane.ring import RingSocket
    from appliance.dataplane.tablesync import FastPathLike

MACS = {"h1-r": "02:00:00:00:21:02", "r-h1": "02:00:00:00:21:01",
        "r-h2": "02:00:00:00:22:01", "h2-r": "02:00:00:00:22:02"}
PAYLOAD = 18  # 14 Ethernet + 20 IPv4 + 8 UDP + 18 + 4 FCS = 64 bytes on the wire
SINK = "198.51.100.3"  # a static neighbor on r whose MAC h2-r does not have: h2 drops it
SINK_MAC = "02:00:00:00:22:99"
H2_6 = "2001:db8:2::2"
FLOWS = 65_536


def big_table(count: int, rng: random.Random) -> Iterator[tuple[bytes, int]]:
    """`count` IPv4 prefixes, mostly /24, never overlapping the documentation ranges the
    traffic uses (so they never change where it goes)."""
    lengths = [24] * 55 + [23] * 8 + [22] * 10 + [21] * 5 + [20] * 5 + [19] * 4 + [16] * 3 + [
        18] * 3 + [17] * 2 + [12, 8, 25, 28, 32]
    doc = [(0xC0000200, 24), (0xC6336400, 24), (0xCB007100, 24)]
    made = 0
    while made < count:
        plen = rng.choice(lengths)
        addr = rng.randrange(1 << 24, 224 << 24) & (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        if any((addr >> (32 - min(plen, dl))) == (net >> (32 - min(plen, dl)))
               for net, dl in doc):
            continue
        yield addr.to_bytes(4, "big"), plen
        made += 1


def big_table6(count: int, rng: random.Random, flows: int) -> Iterator[tuple[bytes, int]]:
    """The /64 of each of the `flows` destinations, then random /48s and /64s, all inside
    2001:db8::/32 (never 2001:db8:1::/48 or 2001:db8:2::/48, the links)."""
    base = 0x20010DB8 << 96
    for i in range(min(flows, count)):
        yield (base | (i << 64)).to_bytes(16, "big"), 64
    for _ in range(count - min(flows, count)):
        if rng.random() < 0.6:
            net = rng.randrange(3, 1 << 16) << 80
            yield (base | net).to_bytes(16, "big"), 48
        else:
            net = rng.randrange(3 << 16, 1 << 32) << 64
            yield (base | net).to_bytes(16, "big"), 64


def load_tables(fp: FastPathLike, rings: list[RingSocket], routes: int, flows: int
                ) -> None:
    """The bench tables: 192.0.2.0/26 on rings[0], 198.51.100.0/26 on rings[1]; with `flows`
    2001:db8::/32 via h2 plus (routes - 1) IPv6 routes, else (routes - 2) more IPv4 routes."""
    from appliance.dataplane.twin import (
        FLAG_FORWARDING4,
        FLAG_FORWARDING6,
        INTERFACE,
        NEIGHBOR,
        NEXTHOP,
        ROUTE4,
        ROUTE6,
        NextHopKind,
    )

    fp.load_interfaces(b"".join(INTERFACE.pack(r.ifindex, r.mac, r.mtu) for r in rings),
                       FLAG_FORWARDING4 | FLAG_FORWARDING6, 1)
    hops = b"".join(NEXTHOP.pack(NextHopKind.ONLINK, r.ifindex, bytes(16)) for r in rings)
    hops += NEXTHOP.pack(NextHopKind.GATEWAY, rings[1].ifindex,
                         ipaddress.IPv6Address(H2_6).packed)
    rng = random.Random(1)
    table4 = [ROUTE4.pack(bytes([192, 0, 2, 0]), 26, 0),
              ROUTE4.pack(bytes([198, 51, 100, 0]), 26, 1)]
    table6 = [ROUTE6.pack(ipaddress.IPv6Address("2001:db8::").packed, 32, 2)]
    if flows:
        table6.extend(ROUTE6.pack(addr, plen, 2)
                      for addr, plen in big_table6(max(routes - 1, 0), rng, flows))
    else:
        table4.extend(ROUTE4.pack(addr, plen, rng.randrange(2))
                      for addr, plen in big_table(max(routes - 2, 0), rng))
    fp.load_fib(hops, b"".join(table4), b"".join(table6), 2)
    macs = {name: bytes.fromhex(mac.replace(":", ""))
            for name, mac in {**MACS, "sink": SINK_MAC}.items()}
    fp.load_neighbors(
        NEIGHBOR.pack(rings[0].ifindex, 4, bytes([192, 0, 2, 2]),
                      macs["h1-r"] + rings[0].mac + b"\x08\x00", 0)
        + NEIGHBOR.pack(rings[1].ifindex, 4, bytes([198, 51, 100, 2]),
                        macs["h2-r"] + rings[1].mac + b"\x08\x00", 0)
        + NEIGHBOR.pack(rings[1].ifindex, 4, ipaddress.IPv4Address(SINK).packed,
                        macs["sink"] + rings[1].mac + b"\x08\x00", 0)
        # the IPv6 rows' next hop: the sink MAC as well (h2's NIC drops what it gets)
        + NEIGHBOR.pack(rings[1].ifindex, 6, ipaddress.IPv6Address(H2_6).packed,
                        macs["sink"] + rings[1].mac + b"\x86\xdd", 0), 4)
