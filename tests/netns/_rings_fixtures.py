"""Agents for tests/netns/test_rings.py, run *inside* a namespace as
``python tests/netns/_rings_fixtures.py MODE ARGS...``; each prints ``ready`` once its socket is
set up, then one JSON line with what it saw. Every loop is bounded by a timeout.

Modes:
  recv IFNAME COUNT TIMEOUT            frames carrying MARKER read from a RingSocket
  send IFNAME TIMEOUT HEX...           frames put on the TX ring; reports MARKER frames echoed
  capture IFNAME COUNT TIMEOUT         MARKER frames seen by a plain AF_PACKET socket
  forward KIND TIMEOUT TABLES_JSON     the fast path (c|python) between two rings until SIGTERM
  udp_sink ADDR PORT COUNT TIMEOUT     UDP payloads received by a kernel socket
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from ipaddress import ip_address, ip_network
from typing import Any

MARKER = b"vrlab-ring-test"


def _ready() -> None:
    print("ready", flush=True)


def recv(ifname: str, count: int, timeout: float) -> dict[str, Any]:
    from appliance.dataplane.ring import RingSocket

    frames: list[dict[str, Any]] = []
    with RingSocket.open(ifname, frames=256) as ring:
        _ready()
        deadline = time.monotonic() + timeout
        while len(frames) < count and time.monotonic() < deadline:
            select.select([ring.fd], [], [], 0.1)
            for frame, partial in ring.recv_raw(64):
                if MARKER in frame:
                    buf = bytearray(frame)
                    if partial:
                        from appliance.dataplane.ring import complete_l4_checksum

                        complete_l4_checksum(buf)
                    frames.append({"raw": frame.hex(), "partial": partial,
                                   "completed": bytes(buf).hex()})
        return {"frames": frames, "mac": ring.mac.hex(), "mtu": ring.mtu,
                "ifindex": ring.ifindex, "ring_drops": ring.ring_drops()}


def send(ifname: str, timeout: float, frames: list[bytes]) -> dict[str, Any]:
    from appliance.dataplane.ring import RingSocket

    with RingSocket.open(ifname, frames=256) as ring:
        _ready()
        time.sleep(0.3)  # let the capture on the other side settle
        sent = sum(ring.send(f) for f in frames)
        ring.flush()
        echoed = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            select.select([ring.fd], [], [], 0.1)
            echoed += sum(MARKER in f for f in ring.recv_batch(64))
        return {"sent": sent, "echoed": echoed}


def capture(ifname: str, count: int, timeout: float) -> dict[str, Any]:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((ifname, 0))
    sock.settimeout(0.1)
    _ready()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        try:
            frame, addr = sock.recvfrom(4096)
        except TimeoutError:
            continue
        if MARKER in frame and addr[2] != socket.PACKET_OUTGOING:
            seen.append(frame.hex())
    sock.close()
    return {"frames": seen}


def forward(kind: str, timeout: float, tables: dict[str, Any]) -> dict[str, Any]:
    """Tables: {"interfaces": [name...], "routes": [[prefix, ifname]...],
    "neighbors": [[ifname, addr, mac_hex]...]}; every route is on-link. Optional: "serve":
    true waits in FastPath.serve (the daemon's way) instead of poll + select; "sndbuf": N sets
    SO_SNDBUF of every ring socket (the kernel's floor is ~4.6 KB: two big frames in flight);
    "qdisc_bypass": false sends through the interfaces' qdiscs."""
    from appliance.dataplane.ring import RingSocket
    from appliance.dataplane.tablesync import new_fastpath
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

    rings = {name: RingSocket.open(name, frames=512,
                                   qdisc_bypass=tables.get("qdisc_bypass", True))
             for name in tables["interfaces"]}
    if "sndbuf" in tables:
        for ring in rings.values():
            with socket.socket(fileno=os.dup(ring.fd)) as dup:
                dup.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, int(tables["sndbuf"]))
    fp = new_fastpath(kind)
    try:
        fp.load_interfaces(b"".join(INTERFACE.pack(r.ifindex, r.mac, r.mtu)
                                    for r in rings.values()),
                           FLAG_FORWARDING4 | FLAG_FORWARDING6, 1)
        names = list(rings)
        hops = b"".join(NEXTHOP.pack(NextHopKind.ONLINK, rings[n].ifindex, bytes(16))
                        for n in names)
        r4 = r6 = b""
        for prefix, ifname in tables["routes"]:
            net = ip_network(prefix)
            if net.version == 4:
                r4 += ROUTE4.pack(net.network_address.packed, net.prefixlen, names.index(ifname))
            else:
                r6 += ROUTE6.pack(net.network_address.packed, net.prefixlen, names.index(ifname))
        fp.load_fib(hops, r4, r6, 2)
        neigh = b""
        for ifname, addr, mac in tables["neighbors"]:
            a = ip_address(addr)
            header = bytes.fromhex(mac) + rings[ifname].mac + (
                b"\x08\x00" if a.version == 4 else b"\x86\xdd")
            neigh += NEIGHBOR.pack(rings[ifname].ifindex, a.version, a.packed, header, 0)
        fp.load_neighbors(neigh, 3)
        for ring in rings.values():
            fp.attach(ring)
        stop = False

        def on_term(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_term)
        _ready()
        punts: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        fds = [r.fd for r in rings.values()]
        while not stop and time.monotonic() < deadline:
            if tables.get("serve"):
                done, punted, _ = fp.serve(1 << 20, 0.05, -1)
            else:
                done, punted = fp.poll(256)
            for _, verdict, _ in punted:
                punts[str(verdict)] = punts.get(str(verdict), 0) + 1
            if not done and not tables.get("serve"):
                select.select(fds, [], [], 0.05)
        counters = fp.counters()
        for ring in rings.values():
            fp.detach(ring.ifindex)
        return {"counters": counters, "punts": punts,
                "attached_after_detach": any(r.attached for r in rings.values())}
    finally:
        for ring in rings.values():
            if not ring.attached:
                ring.close()


def udp_sink(addr: str, port: int, count: int, timeout: float) -> dict[str, Any]:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    sock.settimeout(0.2)
    _ready()
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(sock.recv(2048).hex())
        except TimeoutError:
            continue
    sock.close()
    return {"payloads": got}


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    if mode == "recv":
        result = recv(args[0], int(args[1]), float(args[2]))
    elif mode == "send":
        result = send(args[0], float(args[1]), [bytes.fromhex(h) for h in args[2:]])
    elif mode == "capture":
        result = capture(args[0], int(args[1]), float(args[2]))
    elif mode == "forward":
        result = forward(args[0], float(args[1]), json.loads(args[2]))
    elif mode == "udp_sink":
        result = udp_sink(args[0], int(args[1]), int(args[2]), float(args[3]))
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
