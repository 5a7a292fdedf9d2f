"""`make fuzz`: a million frames through the C fast path under ASan+UBSan and through the router.

    python3 -m fuzz                          # 1,000,000 frames each (a few minutes)
    python3 -m fuzz --frames 100000 --router-frames 20000 --ring-slots 20000   # CI's pass

Frames come from scapy templates (IPv4/IPv6 UDP, TCP, ICMP, options, fragments, extension
headers, ND, ARP, VLAN) addressed to a router configured like a real one, and are then
mutated: sent as they are, truncated anywhere, bytes flipped or set, every header field of
Ethernet, IPv4, IPv6 and the L4 header set to an edge of its range (0, 1, max, max-1, the
high bit...) with the IPv4 header checksum fixed half the time so later checks are reached,
grown with garbage, or replaced by random bytes. The same stream goes:

1. through `FastPath.process` of the C extension built again with
   `-fsanitize=address,undefined -fno-sanitize-recover=all` (`build/fuzz/`, loaded in child
   processes with libasan preloaded), every 16th frame also through the Python twin, whose
   verdict and output must be the same;
2. through memory rings (TPACKET_V2 slots in an anonymous mmap, as bench/fastpath.py) whose
   descriptors are fuzzed: tp_status flags (VLAN_VALID, CSUMNOTREADY), tp_len, tp_snaplen,
   tp_mac and tp_net anywhere in 0..65535, the packet type, then `FastPath.poll`;
3. through `Router.receive` (the pure-Python router, in this process), every frame checked to
   end in at least one action, every non-Transmit action naming a known counter.

A crash is a sanitizer report or a signal in a child (its chunk is saved under
`build/fuzz/crashes/` and the run goes on), an exception out of the router or the twin, or a
C/twin difference. The summary prints `N frames, K crashes` and, per target, the counters that
account for every frame: the C verdict counters add up to the frames processed, and every
router frame is counted once by its outcome.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import mmap
import os
import random
import socket
import struct
import subprocess
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "appliance" / "dataplane" / "_fastpath.c"
BUILD = REPO / "build" / "fuzz"
SANITIZED = BUILD / "_fastpath_asan.so"
CRASHES = BUILD / "crashes"
SANITIZER_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                   "-fno-omit-frame-pointer", "-O1", "-g"]
CHUNK = 100_000
TWIN_EVERY = 16

R_MAC = (bytes.fromhex("020000000101"), bytes.fromhex("020000000102"))
H_MAC = (bytes.fromhex("525400000010"), bytes.fromhex("525400000020"))
ROUTER_CONFIG: dict[str, Any] = {
    "hostname": "fuzz",
    "interfaces": [
        {"name": "r-a", "addresses": ["198.51.100.1/24", "2001:db8:1::1/64"]},
        {"name": "r-b", "addresses": ["203.0.113.1/24", "2001:db8:2::1/64"]},
    ],
    "routes": [
        {"prefix": "192.0.2.0/25", "via": "198.51.100.2"},
        {"prefix": "2001:db8:9::/48", "via": "fe80::2%r-a"},
        {"prefix": "192.0.2.128/26", "type": "reject"},
        {"prefix": "192.0.2.192/26", "type": "blackhole"},
        {"prefix": "2001:db8:66::/48", "type": "reject"},
    ],
    "neighbors": [
        {"address": "198.51.100.2", "mac": "52:54:00:00:00:10", "interface": "r-a"},
        {"address": "203.0.113.2", "mac": "52:54:00:00:00:20", "interface": "r-b"},
        {"address": "2001:db8:1::2", "mac": "52:54:00:00:00:10", "interface": "r-a"},
        {"address": "2001:db8:2::2", "mac": "52:54:00:00:00:20", "interface": "r-b"},
        {"address": "fe80::2", "mac": "52:54:00:00:00:10", "interface": "r-a"},
    ],
    "sysctl": {"net.inet.icmp.icmplim": 0, "net.inet6.icmp6.errppslimit": 0},
}


# -- the sanitizer build ----------------------------------------------------------------------


def build_sanitized() -> Path:
    """The C fast path compiled with ASan+UBSan into build/fuzz/ (again only if stale)."""
    if SANITIZED.exists() and SANITIZED.stat().st_mtime >= SOURCE.stat().st_mtime:
        return SANITIZED
    BUILD.mkdir(parents=True, exist_ok=True)
    include = sysconfig.get_paths()["include"]
    subprocess.run(["gcc", "-shared", "-fPIC", "-std=gnu11", *SANITIZER_FLAGS, f"-I{include}",
                    str(SOURCE), "-o", str(SANITIZED)], check=True)
    return SANITIZED


def sanitizer_env() -> dict[str, str]:
    asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                          text=True, check=True).stdout.strip()
    return {**os.environ, "LD_PRELOAD": asan, "PYTHONPATH": str(REPO),
            # CPython itself leaks by design at exit; a memory error aborts with a report
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:allocator_may_return_null=1",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


def load_sanitized(path: Path) -> Any:
    """Import `path` as appliance.dataplane._fastpath, so every user gets the sanitized one."""
    name = "appliance.dataplane._fastpath"
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[name] = module
    return module


# -- frames -----------------------------------------------------------------------------------


def templates() -> list[bytes]:
    """Valid frames that reach every branch of the fast path and the router."""
    from scapy.all import (  # type: ignore[attr-defined]
        ARP,
        ICMP,
        IP,
        TCP,
        UDP,
        Dot1Q,
        Ether,
        ICMPv6EchoRequest,
        ICMPv6ND_NA,
        ICMPv6ND_NS,
        ICMPv6ND_RS,
        ICMPv6NDOptSrcLLAddr,
        IPOption_RR,
        IPv6,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
        fragment,
        fragment6,
        raw,
    )

    h1, r1 = "52:54:00:00:00:10", "02:00:00:00:01:01"
    e = Ether(src=h1, dst=r1)
    s4, s6 = "198.51.100.2", "2001:db8:1::2"
    frames: list[Any] = [
        e / IP(src=s4, dst="203.0.113.2") / UDP(sport=1000, dport=9) / (b"u" * 18),
        e / IP(src=s4, dst="203.0.113.2", ttl=1) / UDP() / b"ttl",
        e / IP(src=s4, dst="192.0.2.5") / TCP(dport=80, flags="S"),
        e / IP(src=s4, dst="192.0.2.130") / ICMP() / b"reject",
        e / IP(src=s4, dst="192.0.2.200") / UDP() / b"blackhole",
        e / IP(src=s4, dst="198.51.100.1") / ICMP() / b"ping",
        e / IP(src=s4, dst="198.51.100.9") / UDP() / b"redirect",
        e / IP(src=s4, dst="203.0.113.2", flags="DF") / UDP() / (b"m" * 1400),
        e / IP(src=s4, dst="203.0.113.2", options=[IPOption_RR(routers=["0.0.0.0"])]) / UDP(),
        e / IP(src=s4, dst="224.0.0.5") / UDP(),
        Ether(src=h1, dst="ff:ff:ff:ff:ff:ff") / IP(src=s4, dst="255.255.255.255") / UDP(),
        Ether(src=h1, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=h1, psrc=s4,
                                                     pdst="198.51.100.1"),
        e / ARP(op=2, hwsrc=h1, psrc=s4, hwdst=r1, pdst="198.51.100.1"),
        e / Dot1Q(vlan=5) / IP(src=s4, dst="203.0.113.2") / UDP(),
        e / IPv6(src=s6, dst="2001:db8:2::2") / UDP(sport=1000, dport=9) / (b"v" * 16),
        e / IPv6(src=s6, dst="2001:db8:2::2", hlim=1) / UDP(),
        e / IPv6(src=s6, dst="2001:db8:9::5") / UDP() / b"gw",
        e / IPv6(src=s6, dst="2001:db8:66::1") / UDP() / b"reject",
        e / IPv6(src=s6, dst="2001:db8:1::1") / ICMPv6EchoRequest(data=b"x" * 20),
        e / IPv6(src=s6, dst="2001:db8:2::2") / IPv6ExtHdrHopByHop() / UDP(),
        e / IPv6(src=s6, dst="2001:db8:1::1") / IPv6ExtHdrRouting(
            addresses=["2001:db8::9"], segleft=1) / UDP(),
        e / IPv6(src="fe80::2", dst="ff02::2", hlim=255) / ICMPv6ND_RS(),
        Ether(src=h1, dst="33:33:ff:00:00:01") / IPv6(src=s6, dst="ff02::1:ff00:1", hlim=255)
        / ICMPv6ND_NS(tgt="2001:db8:1::1") / ICMPv6NDOptSrcLLAddr(lladdr=h1),
        e / IPv6(src=s6, dst="fe80::ff:fe00:101", hlim=255) / ICMPv6ND_NA(tgt=s6, S=1),
        e / IPv6(src=s6, dst="2001:db8:2::2") / (b"\x00" * 40),
    ]
    frames += [e / f for f in fragment(IP(src=s4, dst="198.51.100.1", id=7) / ICMP()
                                      / (b"f" * 1200), fragsize=400)]
    frames += [e / f for f in fragment6(IPv6(src=s6, dst="2001:db8:1::1")
                                        / IPv6ExtHdrFragment(id=3) / ICMPv6EchoRequest(
                                            data=b"g" * 1200), 600)]
    return [raw(f) for f in frames]


def _fields(frame: bytes) -> list[tuple[int, int]]:
    """(offset, size in bytes) of every header field the frame has: Ethernet, IPv4 or IPv6,
    and the first 8 bytes of what follows (ports, lengths, checksums, ICMP type/code)."""
    fields = [(0, 6), (6, 6), (12, 2)]
    l3 = 18 if frame[12:14] == b"\x81\x00" else 14
    if l3 == 18:
        fields += [(14, 2), (16, 2)]
    etype = frame[l3 - 2:l3]
    if etype == b"\x08\x00" and len(frame) > l3:
        ihl = (frame[l3] & 15) * 4
        fields += [(l3 + o, n) for o, n in ((0, 1), (1, 1), (2, 2), (4, 2), (6, 2), (8, 1),
                                             (9, 1), (10, 2), (12, 4), (16, 4))]
        l4 = l3 + max(ihl, 20)
    elif etype == b"\x86\xdd":
        fields += [(l3 + o, n) for o, n in ((0, 1), (0, 4), (4, 2), (6, 1), (7, 1), (8, 16),
                                             (24, 16))]
        l4 = l3 + 40
    else:
        l4 = l3
    fields += [(l4 + o, n) for o, n in ((0, 1), (1, 1), (0, 2), (2, 2), (4, 2), (6, 2))]
    return [(o, n) for o, n in fields if o + n <= len(frame)]


def _edge(rng: random.Random, size: int) -> int:
    top = (1 << (8 * size)) - 1
    return rng.choice((0, 1, 2, top, top - 1, top >> 1, (top >> 1) + 1, rng.randrange(top + 1)))


def _fix_ipv4_checksum(b: bytearray) -> None:
    l3 = 18 if b[12:14] == b"\x81\x00" else 14
    if b[l3 - 2:l3] != b"\x08\x00" or len(b) < l3 + 20:
        return
    ihl = max((b[l3] & 15) * 4, 20)
    if len(b) < l3 + ihl:
        return
    b[l3 + 10:l3 + 12] = b"\0\0"
    total = sum(struct.unpack(f"!{ihl // 2}H", b[l3:l3 + ihl]))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    b[l3 + 10:l3 + 12] = (~total & 0xFFFF).to_bytes(2, "big")


class FrameSource:
    """A deterministic stream of fuzzed frames (the same seed gives the same stream)."""

    STRATEGIES = ("as-is", "truncate", "flip", "field-edge", "field-edge", "field-edge",
                  "grow", "random", "mix")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.templates = templates()
        self.used: Counter[str] = Counter()

    def next(self) -> tuple[int, bytes]:
        """(ingress ifindex, frame)."""
        rng = self.rng
        strategy = rng.choice(self.STRATEGIES)
        self.used[strategy] += 1
        ifindex = 1 if rng.random() < 0.9 else rng.choice((2, 3))
        if strategy == "random":
            return ifindex, rng.randbytes(rng.choice((0, 1, 13, 14, 15, 33, 54, 60, 64,
                                                      rng.randrange(1600))))
        b = bytearray(rng.choice(self.templates))
        if strategy == "truncate":
            del b[rng.randrange(len(b) + 1):]
        elif strategy == "flip":
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(256)
        elif strategy in ("field-edge", "mix"):
            fields = _fields(bytes(b))
            for _ in range(rng.randint(1, 3 if strategy == "mix" else 2)):
                off, size = rng.choice(fields)
                b[off:off + size] = _edge(rng, size).to_bytes(size, "big")
            if rng.random() < 0.5:
                _fix_ipv4_checksum(b)
            if strategy == "mix" and rng.random() < 0.5:
                del b[rng.randrange(len(b) + 1):]
        elif strategy == "grow":
            b += rng.randbytes(rng.randrange(1, 200))
        return ifindex, bytes(b)


# -- targets ----------------------------------------------------------------------------------


def make_router() -> Any:
    from appliance.config import parse_router_config
    from appliance.core.router import LinkInfo, Router

    links = {"r-a": LinkInfo(1, R_MAC[0], 1500), "r-b": LinkInfo(2, R_MAC[1], 1500)}
    return Router(parse_router_config(ROUTER_CONFIG, "fuzz"), links, rng=random.Random(1))


def _memory_ring(ifindex: int, mac: bytes, slots: int, frame_size: int) -> Any:
    from appliance.dataplane.ring import RingSocket

    sock, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.close()
    ring_map = mmap.mmap(-1, 2 * slots * frame_size)
    return RingSocket(sock, f"mem{ifindex}", ifindex, mac, 1500, ring_map, frame_size, slots)


_TPACKET2_HDR = struct.Struct("=IIIHHIIHH")  # status len snaplen mac net sec nsec vlan_tci tpid
_SLL_PKTTYPE = 32 + 10  # TPACKET_ALIGN(32) + offset of sll_pkttype in sockaddr_ll
TP_STATUS_USER, TP_STATUS_CSUMNOTREADY, TP_STATUS_VLAN_VALID = 1, 8, 16
PACKET_OUTGOING = 4


def child(seed: int, count: int, ring_slots: int, so: str) -> dict[str, Any]:
    """One chunk in a sanitized child: `count` frames through process() (and 1 in 16
    through the twin), `ring_slots` fuzzed descriptors through poll()."""
    if so:
        module = load_sanitized(Path(so))
        maps = Path("/proc/self/maps").read_text()
        if "libasan" not in maps or "libubsan" not in maps or module.__file__ != so:
            raise SystemExit("fuzz: the sanitizer runtime is not loaded")
    from appliance.dataplane import twin
    from appliance.dataplane.tablesync import TableSync, new_fastpath

    router = make_router()
    c, py = new_fastpath("c"), twin.FastPath()
    TableSync(c, router)
    TableSync(py, router)
    source = FrameSource(seed)
    mismatches: list[str] = []
    for i in range(count):
        ifindex, frame = source.next()
        partial = (i & 7) == 7
        got = c.process(ifindex, frame, partial)
        if i % TWIN_EVERY == 0:
            want = py.process(ifindex, frame, partial)
            if (got[0], got[1], got[2]) != (int(want[0]), want[1], want[2]) and \
                    len(mismatches) < 5:
                mismatches.append(f"{ifindex} {int(partial)} {frame.hex()}")
    process_counters = c.counters()

    # Memory rings with fuzzed descriptors: a fresh fast path so its counters are these alone.
    rings_fp = new_fastpath("c")
    TableSync(rings_fp, router)
    slots, frame_size = 256, 2048
    rings = [_memory_ring(i + 1, R_MAC[i], slots, frame_size) for i in range(2)]
    for ring in rings:
        rings_fp.attach(ring)
    rng = random.Random(seed ^ 0x5EED)
    filled = outgoing = 0
    while filled < ring_slots:
        batch = min(slots, ring_slots - filled)
        rx = rings[0].map
        for slot in range(batch):
            off = slot * frame_size
            _, frame = source.next()
            mac = rng.choice((0, 32, 82, 82, 82, 96, frame_size - 14, frame_size - 1,
                              frame_size, frame_size + 1, 65535, rng.randrange(65536)))
            snap = rng.choice((len(frame), len(frame), 0, 1, 14, frame_size,
                               65535, rng.randrange(65536)))
            length = rng.choice((len(frame), snap, 0, 65535, rng.randrange(1 << 32)))
            net = rng.choice((mac + 14, 0, 65535, rng.randrange(65536))) & 0xFFFF
            status = TP_STATUS_USER | rng.choice((0, 0, 0, TP_STATUS_CSUMNOTREADY,
                                                  TP_STATUS_VLAN_VALID, rng.randrange(256) & ~1))
            place = min(mac, frame_size)
            rx[off + 32:off + frame_size] = bytes(frame_size - 32)
            body = frame[:max(frame_size - place, 0)]
            rx[off + place:off + place + len(body)] = body
            _TPACKET2_HDR.pack_into(rx, off, status, length & 0xFFFFFFFF, snap, mac, net, 0, 0,
                                    rng.randrange(65536), 0)
            pkttype = PACKET_OUTGOING if rng.random() < 0.02 else rng.choice((0, 0, 1, 2, 3))
            rx[off + _SLL_PKTTYPE] = pkttype
            outgoing += pkttype == PACKET_OUTGOING
        for ring in rings:  # the TX side: every slot free again
            for slot in range(slots):
                ring.map[slots * frame_size + slot * frame_size:
                         slots * frame_size + slot * frame_size + 4] = b"\0\0\0\0"
        done = 0
        while done < batch:
            n, _ = rings_fp.poll(batch)
            if n == 0:
                break
            done += n
        filled += batch
        # the consumer index went round: reset both rings' heads for the next batch
        for ring in rings:
            rings_fp.detach(ring.ifindex)
            ring.rx_head = ring.tx_head = 0
            rings_fp.attach(ring)
    ring_counters = rings_fp.counters()
    for ring in rings:
        rings_fp.detach(ring.ifindex)
    return {"frames": count, "process": process_counters, "ring_slots": ring_slots,
            "ring_outgoing": outgoing, "ring": ring_counters, "mismatches": mismatches,
            "strategies": dict(source.used)}


def is_verdict(key: str) -> bool:
    """Whether a fast-path counter counts frames by verdict (each frame exactly once): the
    forwards and every punt and drop reason; not rx, the kicks, their timings and the like."""
    return key in ("forward4", "forward6") or key.startswith(("punt.", "drop."))


def verdict_total(counters: dict[str, int]) -> int:
    return sum(v for k, v in counters.items() if is_verdict(k))


def run_router(frames: int, seed: int) -> tuple[Counter[str], list[str]]:
    """`frames` through Router.receive; each counted once by its outcome."""
    from appliance.core.router import Deliver, Drop, Hold, Transmit
    from appliance.core.stats import KNOWN_KEYS

    router = make_router()
    source = FrameSource(seed)
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []
    now = 1000.0
    for i in range(frames):
        ifindex, frame = source.next()
        now += 0.0005
        if i and i % 100_000 == 0:
            print(f"  router: {i:,} frames", flush=True)
        try:
            if i % 1000 == 0:
                router.tick(now)
            actions = router.receive(ifindex, frame, now)
        except Exception as exc:  # a crash: the router must never raise on a frame
            crashes.append(f"{type(exc).__name__}: {exc} ifindex {ifindex} frame {frame.hex()}")
            outcomes["crash"] += 1
            continue
        ends = [a for a in actions if isinstance(a, Drop | Deliver | Hold)]
        bad = [a for a in ends if a.reason not in KNOWN_KEYS]
        if not actions or bad:
            crashes.append(f"unaccounted: {actions!r} ifindex {ifindex} frame {frame.hex()}")
            outcomes["crash"] += 1
        elif any(isinstance(a, Transmit) for a in actions) and not ends:
            outcomes["transmit"] += 1
        else:
            first = ends[0]
            outcomes[f"{type(first).__name__.lower()} {first.reason}"] += 1
    return outcomes, crashes


# -- the driver -------------------------------------------------------------------------------


def run_c(frames: int, ring_slots: int, seed: int, sanitize: bool
          ) -> tuple[dict[str, Any], int, list[str]]:
    so = str(build_sanitized()) if sanitize else ""
    env = sanitizer_env() if sanitize else {**os.environ, "PYTHONPATH": str(REPO)}
    total: dict[str, Any] = {"frames": 0, "process": Counter(), "ring_slots": 0,
                             "ring_outgoing": 0, "ring": Counter(), "mismatches": [],
                             "strategies": Counter()}
    crashes: list[str] = []
    chunks = max(1, -(-frames // CHUNK))
    for k in range(chunks):
        count = min(CHUNK, frames - k * CHUNK)
        slots = ring_slots // chunks + (1 if k < ring_slots % chunks else 0)
        argv = [sys.executable, "-m", "fuzz.frames", "--child", "--seed", str(seed + k),
                "--frames", str(count), "--ring-slots", str(slots), "--so", so]
        proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            CRASHES.mkdir(parents=True, exist_ok=True)
            report = CRASHES / f"chunk-seed{seed + k}.txt"
            report.write_text(f"{' '.join(argv)}\nexit {proc.returncode}\n{proc.stderr}")
            crashes.append(f"chunk seed {seed + k}: exit {proc.returncode} ({report})")
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        for key in ("frames", "ring_slots", "ring_outgoing"):
            total[key] += result[key]
        for key in ("process", "ring", "strategies"):
            total[key].update(result[key])
        total["mismatches"] += result["mismatches"]
        print(f"  C chunk {k + 1}/{chunks}: {total['frames']:,} frames, "
              f"{total['ring_slots']:,} ring slots", flush=True)
    return total, len(crashes), crashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1_000_000,
                        help="frames through the C fast path (default 1,000,000)")
    parser.add_argument("--router-frames", type=int, default=1_000_000,
                        help="frames through the Python router (default 1,000,000)")
    parser.add_argument("--ring-slots", type=int, default=200_000,
                        help="fuzzed ring descriptors through poll() (default 200,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-sanitize", action="store_true",
                        help="use the normal build of the extension (faster, finds less)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--so", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.seed, args.frames, args.ring_slots, args.so)))
        return 0

    started = time.monotonic()
    sanitize = not args.no_sanitize
    print(f"fuzz: C fast path{' (ASan+UBSan)' if sanitize else ''}: {args.frames:,} frames, "
          f"{args.ring_slots:,} fuzzed ring descriptors", flush=True)
    c, c_crashes, c_reports = run_c(args.frames, args.ring_slots, args.seed, sanitize)
    c_time = time.monotonic() - started
    print(f"fuzz: Python router: {args.router_frames:,} frames", flush=True)
    outcomes, r_reports = run_router(args.router_frames, args.seed + 10_000)
    r_time = time.monotonic() - started - c_time

    process, ring = c["process"], c["ring"]
    lines = [
        f"C fast path: {c['frames']:,} frames in {c_time:.0f} s; verdicts: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(process.items())
                    if v and is_verdict(k))
        + f" (sum {verdict_total(process):,})",
        f"  twin compared on every {TWIN_EVERY}th frame: {len(c['mismatches'])} difference(s)",
        f"rings: {c['ring_slots']:,} fuzzed descriptors, {c['ring_outgoing']:,} outgoing "
        f"(skipped), rx {ring['rx']:,}; verdicts: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(ring.items())
                    if v and is_verdict(k))
        + f" (sum {verdict_total(ring):,})",
        f"router: {args.router_frames:,} frames in {r_time:.0f} s; outcomes: "
        + ", ".join(f"{k} {v:,}" for k, v in outcomes.most_common()),
        "strategies: " + ", ".join(f"{k} {v:,}" for k, v in sorted(c["strategies"].items())),
    ]
    print("\n".join(lines))
    accounted = (verdict_total(process) == c["frames"]
                 and verdict_total(ring) == ring["rx"]
                 and ring["rx"] + c["ring_outgoing"] == c["ring_slots"]
                 and sum(outcomes.values()) == args.router_frames)
    if not accounted:
        print("fuzz: FRAMES NOT ACCOUNTED FOR (the sums above differ)")
    for report in (c_reports + c["mismatches"] + r_reports)[:10]:
        print(f"  {report[:300]}")
    crashes = c_crashes + len(r_reports) + len(c["mismatches"])
    total = c["frames"] + args.router_frames
    print(f"{total:,} frames, {crashes} crashes")
    return 0 if crashes == 0 and accounted else 1


if __name__ == "__main__":
    sys.exit(main())
