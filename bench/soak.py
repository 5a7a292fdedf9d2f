"""Soak test: no crash, no leak and no stuck ring under minutes of mixed load.

    python3 -m bench.soak                  # 10 minutes
    python3 -m bench.soak --quick          # 1 minute
    python3 -m bench.soak --duration 120

One namespace topology, the netns tests' ``line`` (documentation addresses only; r--h2 at
MTU 1280, so big packets must be fragmented by r)::

    h1 [h1-r] 192.0.2.2/26 2001:db8:1::2/64 -- r (vrlab-router --fastpath c) --
       [h2-r] 198.51.100.2/26 2001:db8:2::2/64 h2

For the whole duration h1 sends, all at once:

- 64-byte UDP frames as fast as it can (bench/gen.c with sendmmsg, pinned to CPU 0), in
  10-second chunks alternating IPv4 and IPv6;
- pings needing fragmentation and reassembly (3000 bytes to h2 and to r itself, IPv4 and
  IPv6; 1400 bytes to h2, which r must fragment for the 1280 link), small pings to r,
  TTL / hop limit 1 pings and pings to unrouted destinations (203.0.113.200, 2001:db8:ff::1);
- malformed frames interleaved, from a raw AF_PACKET socket (this module's ``--mix`` mode,
  run inside h1): each kind once every 20 ms, each kind aimed at one counter.

Every 10 s it samples the daemon (VmRSS and open fds from /proc, ``routerctl show stats
--json`` and ``routerctl status --json``) and probes liveness: pings from h1 to h2 over IPv4
and over IPv6, up to 3 requests each, one answered within 1 s or counted as a failure (under
full load the RX ring overflows and single requests are dropped like any frame). At the end
it prints the samples and a verdict; exit 1 when a verdict fails, 130 when interrupted. The
topology and every process are removed in ``finally`` (also on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from appliance.packet.checksum import internet_checksum
from bench.netns import MAC, Lab, Namespace, RouterProcess, build_line, remove_stale

REPO = Path(__file__).resolve().parents[1]
SAMPLE_EVERY = 10.0
GEN_CHUNK = 10.0
MIX_INTERVAL = 0.02
PING_INTERVAL = "0.2"
RSS_GROWTH_LIMIT_KIB = 2048
FD_SLACK = 2  # a routerctl connection may still be closing when the fds are counted

H1_MAC = bytes.fromhex(MAC["h1-r"].replace(":", ""))
R_MAC = bytes.fromhex(MAC["r-h1"].replace(":", ""))
H1 = bytes([192, 0, 2, 2])
H2 = bytes([198, 51, 100, 2])
H1_6 = bytes.fromhex("20010db8000100000000000000000002")
H2_6 = bytes.fromhex("20010db8000200000000000000000002")

# Malformed frame kinds and the counter each must land under (BSD ip_input / ip6_input order;
# appliance/core/router.py `_ip4_input`, `_ip6_input`, `receive`).
MALFORMED: dict[str, str] = {
    "bad IPv4 checksum": "ip.badsum",
    "IPv4 version 5": "ip.badvers",
    "IPv4 IHL 4 (short header)": "ip.badhlen",
    "total length > frame": "ip.tooshort",
    "total length < header": "ip.badlen",
    "runt (Ethernet + 10 bytes)": "ip.toosmall",
    "IPv6 truncated to 30 bytes": "ip6.toosmall",
    "IPv6 payload length > frame": "ip6.tooshort",
    "garbage EtherType 0x88b5": "link.badtype",
}


# ------------------------------------------------------------------ malformed frames (in h1)


def _eth(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return R_MAC + H1_MAC + struct.pack("!H", ethertype) + payload


def _ipv4(payload: bytes, *, version: int = 4, ihl: int = 5, total: int | None = None,
          checksum: int | None = None) -> bytes:
    length = 20 + len(payload) if total is None else total
    header = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, length, 0x5eed, 0, 64, 17,
                         0, H1, H2)
    value = internet_checksum(header) if checksum is None else checksum
    return header[:10] + struct.pack("!H", value) + header[12:] + payload


def _ipv6(payload: bytes, *, payload_length: int | None = None) -> bytes:
    plen = len(payload) if payload_length is None else payload_length
    return struct.pack("!IHBB16s16s", 6 << 28, plen, 59, 64, H1_6, H2_6) + payload


def malformed_frames() -> dict[str, bytes]:
    """One frame per kind of MALFORMED, each wrong in exactly one way."""
    udp = struct.pack("!HHHH", 40000, 9, 8 + 20, 0) + b"soak" * 5
    good = _ipv4(udp)
    bad_sum = internet_checksum(good[:20]) ^ 0x5A5A
    frames = {
        "bad IPv4 checksum": _eth(_ipv4(udp, checksum=bad_sum)),
        "IPv4 version 5": _eth(_ipv4(udp, version=5)),
        "IPv4 IHL 4 (short header)": _eth(_ipv4(udp, ihl=4)),
        "total length > frame": _eth(_ipv4(udp, total=200)),
        "total length < header": _eth(_ipv4(udp, total=12)),
        "runt (Ethernet + 10 bytes)": _eth(good[:10]),
        "IPv6 truncated to 30 bytes": _eth(_ipv6(b"\x00" * 8)[:30], 0x86DD),
        "IPv6 payload length > frame": _eth(_ipv6(b"\x00" * 8, payload_length=100), 0x86DD),
        "garbage EtherType 0x88b5": _eth(b"\x00" * 46, 0x88B5),
    }
    assert frames.keys() == MALFORMED.keys()
    return frames


def mix(ifname: str, seconds: float) -> int:
    """Send every malformed kind once per MIX_INTERVAL for `seconds` out of `ifname`; print
    how many of each the kernel accepted, as JSON (runs inside h1, as root)."""
    frames = malformed_frames()
    sent = dict.fromkeys(frames, 0)
    failed = 0
    stop = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((ifname, 0))
        end = time.monotonic() + seconds
        next_round = time.monotonic()
        while not stop and time.monotonic() < end:
            for kind, frame in frames.items():
                try:
                    sock.send(frame)
                    sent[kind] += 1
                except OSError:  # ENOBUFS under load: not sent, not expected to be counted
                    failed += 1
            next_round += MIX_INTERVAL
            time.sleep(max(0.0, next_round - time.monotonic()))
    print(json.dumps({"sent": sent, "failed": failed}), flush=True)
    return 0


# ------------------------------------------------------------------ the soak


@dataclass
class Sample:
    t: float
    load1: float
    rss_kib: int
    fds: int
    counters: dict[str, int]
    status: dict[str, Any]
    h2_rx: int
    probe4: bool
    probe6: bool

    @property
    def forwarded(self) -> int:
        return self.counters.get("ip.forward", 0) + self.counters.get("ip6.forward", 0)

    @property
    def fast_forwarded(self) -> int:
        return self.counters.get("ip.fastforward", 0) + self.counters.get("ip6.fastforward", 0)

    @property
    def malformed(self) -> int:
        return sum(self.counters.get(key, 0) for key in MALFORMED.values())

    @property
    def ring_drops(self) -> int:
        return ring_drops(self.status)


def ring_drops(status: dict[str, Any]) -> int:
    """Frames the kernel dropped because an RX ring was full (the daemon's `rx_ring_drops`,
    which adds up the two readers of the kernel's reset-on-read counter)."""
    return int(status.get("rx_ring_drops", 0))


@dataclass
class PingLoad:
    label: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    transmitted: int = 0
    received: int = 0
    errors: int = 0


@dataclass
class GenTotals:
    sent: int = 0
    errors: int = 0
    chunks: int = 0
    failures: list[str] = field(default_factory=list)


def ping_loads(seconds: float) -> list[PingLoad]:
    # -c, not -w: with a deadline, iputils ping exits at the first ICMP error it receives
    w = ["-q", "-i", PING_INTERVAL, "-c", str(int(seconds / float(PING_INTERVAL)))]
    return [
        PingLoad("v4 3000 B to h2 (h1 fragments, r refragments)", ["ping", *w, "-s", "3000",
                                                                    "198.51.100.2"]),
        PingLoad("v4 1400 B to h2 (r fragments)", ["ping", *w, "-s", "1400", "-M", "dont",
                                                  "198.51.100.2"]),
        PingLoad("v6 3000 B to h2 (Packet Too Big, PMTU)", ["ping", "-6", *w, "-s", "3000",
                                                            "2001:db8:2::2"]),
        PingLoad("v4 3000 B to r (r reassembles)", ["ping", *w, "-s", "3000", "192.0.2.1"]),
        PingLoad("v6 3000 B to r (r reassembles)", ["ping", "-6", *w, "-s", "3000",
                                                     "2001:db8:1::1"]),
        PingLoad("v4 to r", ["ping", *w, "192.0.2.1"]),
        PingLoad("v6 to r", ["ping", "-6", *w, "2001:db8:1::1"]),
        PingLoad("v4 TTL 1 to h2", ["ping", *w, "-t", "1", "198.51.100.2"]),
        PingLoad("v6 hop limit 1 to h2", ["ping", "-6", *w, "-t", "1", "2001:db8:2::2"]),
        PingLoad("v4 unrouted 203.0.113.200", ["ping", *w, "203.0.113.200"]),
        PingLoad("v6 unrouted 2001:db8:ff::1", ["ping", "-6", *w, "2001:db8:ff::1"]),
    ]


_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received(?:, \+(\d+) errors)?")


def parse_ping(out: str, load: PingLoad) -> None:
    m = _PING_SUMMARY.search(out)
    if m:
        load.transmitted, load.received = int(m.group(1)), int(m.group(2))
        load.errors = int(m.group(3) or 0)


def run_gen(h1: Namespace, gen: Path, seconds: float, stop: threading.Event, totals: GenTotals
            ) -> None:
    """64-byte UDP from h1 in GEN_CHUNK-second runs, IPv4 and IPv6 in turn, until `seconds`
    pass or `stop` is set (a bounded loop: every run is at most GEN_CHUNK long)."""
    end = time.monotonic() + seconds
    while not stop.is_set():
        left = end - time.monotonic()
        if left < 1.0:
            break
        dst = "198.51.100.2" if totals.chunks % 2 == 0 else "2001:db8:2::2"
        # 64 bytes on the wire with the FCS for IPv4; IPv6, no payload: 66, the smallest
        payload = "18" if dst[0] == "1" else "0"
        argv = ["taskset", "-c", "0", str(gen), dst, "9", f"{min(GEN_CHUNK, left):.1f}",
                payload]
        try:
            out = h1.run(argv, timeout=GEN_CHUNK + 30).stdout.split()
            totals.sent += int(out[1])
            totals.errors += int(out[3])
        except (AssertionError, subprocess.TimeoutExpired, IndexError, ValueError) as err:
            totals.failures.append(str(err)[:200])
        totals.chunks += 1


def probe(h1: Namespace, dst: str) -> bool:
    """Up to 3 echo requests 0.2 s apart, one of them answered within 1 s. The router runs at
    full load with its RX ring overflowing (the kernel drops the excess before the ring,
    counted), so a single request is dropped as often as any other frame; a router that is
    stuck or dead answers none of the three."""
    argv = ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", dst]
    if ":" in dst:
        argv.insert(1, "-6")
    return h1.run(argv, check=False, timeout=10).returncode == 0


def read_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def take_sample(t: float, router: RouterProcess, h1: Namespace, h2: Namespace
                ) -> Sample:
    pid = router.proc.pid
    rss, fds = read_rss_kib(pid), len(os.listdir(f"/proc/{pid}/fd"))
    counters = json.loads(router.ctl("show", "stats", "--json").stdout)["counters"]
    status = json.loads(router.ctl("status", "--json").stdout)
    link = h2.ipr.get_links(h2.ifindex("h2-r"))[0]
    h2_rx = int(link.get_attr("IFLA_STATS64")["rx_packets"])
    ok4 = probe(h1, "198.51.100.2")
    ok6 = probe(h1, "2001:db8:2::2")
    return Sample(t, os.getloadavg()[0], rss, fds, counters, status, h2_rx, ok4, ok6)


def veth_drops(h1: Namespace, r: Namespace) -> int:
    """Frames the kernel dropped between h1 and r before any packet socket in r saw them: a
    veth counts a full receive backlog as tx_dropped on the sender (h1-r), and a few other
    cases as rx_dropped on the receiver (r-h1)."""
    tx = h1.ipr.get_links(h1.ifindex("h1-r"))[0].get_attr("IFLA_STATS64")
    rx = r.ipr.get_links(r.ifindex("r-h1"))[0].get_attr("IFLA_STATS64")
    return int(tx["tx_dropped"]) + int(rx["rx_dropped"])


def table(samples: list[Sample], start_forwarded: int) -> str:
    """One line per sample; fwd/s is IPv4 + IPv6 forwarded by the router since the previous
    sample (the first: since the load started)."""
    lines = [f"{'t s':>5} {'load1':>5} {'RSS KiB':>8} {'fds':>4} {'ip.total':>10} "
             f"{'ip6.total':>10} {'fwd/s':>7} {'fast %':>6} {'malformed':>9} "
             f"{'ring drops':>10} {'probe v4/v6':>11}"]
    prev_t, prev_fwd = 0.0, start_forwarded
    for s in samples:
        rate = (s.forwarded - prev_fwd) / (s.t - prev_t)
        fast = 100.0 * s.fast_forwarded / s.forwarded if s.forwarded else 0.0
        probes = f"{'ok' if s.probe4 else 'FAIL'}/{'ok' if s.probe6 else 'FAIL'}"
        lines.append(f"{s.t:>5.0f} {s.load1:>5.1f} {s.rss_kib:>8,} {s.fds:>4} "
                     f"{s.counters.get('ip.total', 0):>10,} "
                     f"{s.counters.get('ip6.total', 0):>10,} {rate:>7,.0f} {fast:>6.1f} "
                     f"{s.malformed:>9,} {s.ring_drops:>10,} {probes:>11}")
        prev_t, prev_fwd = s.t, s.forwarded
    return "\n".join(lines)


@dataclass
class Verdict:
    lines: list[str] = field(default_factory=list)
    failed: int = 0

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.lines.append(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
        self.failed += not ok


def judge(samples: list[Sample], warmup: float, alive: bool, exit_note: str,
          mixed: dict[str, Any], before: dict[str, int], after: dict[str, int],
          unexplained_drops: int, final_probes: tuple[int, int], log_text: str) -> Verdict:
    v = Verdict()
    v.check("daemon alive", alive, exit_note)
    tracebacks = log_text.count("Traceback")
    errors = samples[-1].status.get("slowpath_errors", 0) if samples else 0
    v.check("no slow-path exceptions", tracebacks == 0 and not errors,
            f"{tracebacks} tracebacks in the daemon log, slowpath_errors {errors}")
    steady = [s for s in samples if s.t >= warmup] or samples
    quarter = max(1, len(steady) // 4)
    first, last = steady[:quarter], steady[-quarter:]
    if steady:
        rss0 = sum(s.rss_kib for s in first) / len(first)
        rss1 = sum(s.rss_kib for s in last) / len(last)
        growth = rss1 - rss0
        v.check("RSS stable", growth < RSS_GROWTH_LIMIT_KIB,
                f"{growth:+,.0f} KiB (mean of last {quarter} samples {rss1:,.0f} vs first "
                f"{quarter} after {warmup:.0f} s warm-up {rss0:,.0f}; limit "
                f"+{RSS_GROWTH_LIMIT_KIB} KiB); max {max(s.rss_kib for s in samples):,} KiB")
        fds = [s.fds for s in steady]
        v.check("fds stable", max(fds) - min(fds) <= FD_SLACK and fds[-1] <= fds[0] + 1,
                f"{fds[0]} after warm-up, {fds[-1]} at the end, range {min(fds)}..{max(fds)}")
    fail4 = sum(not s.probe4 for s in samples)
    fail6 = sum(not s.probe6 for s in samples)
    # Under full load the RX ring overflows and a probe's requests are dropped like any other
    # frame, in bursts; a stuck or dead router fails sample after sample.
    twice = sum(1 for a, b in itertools.pairwise(samples)
                if (not a.probe4 and not b.probe4) or (not a.probe6 and not b.probe6))
    v.check("the router answers throughout (no family unanswered in two samples in a row, "
            "at most 5% of probes unanswered)",
            twice == 0 and fail4 + fail6 <= 0.05 * 2 * len(samples),
            f"{fail4} of {len(samples)} IPv4 and {fail6} of {len(samples)} IPv6 probes (3 "
            f"requests each, one answer within 1 s wanted) unanswered; {twice} times in a row")
    sent = mixed.get("sent", {})
    missing = 0
    over = []
    detail = []
    for kind, key in MALFORMED.items():
        got = after.get(key, 0) - before.get(key, 0)
        want = int(sent.get(kind, 0))
        missing += max(0, want - got)
        if got > want:  # another source, or a frame counted twice: never explained by drops
            over.append(key)
        detail.append(f"{key} {got:,}/{want:,}")
    if not sent:
        v.check("malformed frames counted", False, "the mixer reported nothing")
    else:
        # A frame the kernel dropped before the RX ring (ring full, veth backlog full) never
        # reached the router: a shortfall up to those drops is load, not a counting error.
        ok = not over and missing <= unexplained_drops
        if over:
            how = f"counted MORE than sent under {', '.join(over)}"
        elif missing == 0:
            how = "exactly"
        else:
            how = (f"{missing:,} short, {'within' if ok else 'MORE than'} the "
                   f"{unexplained_drops:,} frames the kernel dropped before the rings")
        v.check("malformed frames counted under their counters", ok,
                f"{how}; counted/sent: {', '.join(detail)}")
    last_minute = [s for s in samples if s.t >= samples[-1].t - 60.0] if samples else []
    if len(last_minute) >= 2:
        dt = last_minute[-1].t - last_minute[0].t
        rate = (last_minute[-1].forwarded - last_minute[0].forwarded) / dt
        h2rate = (last_minute[-1].h2_rx - last_minute[0].h2_rx) / dt
        tail_ok = all(s.probe4 or s.probe6 for s in last_minute)
        v.check("no stuck ring", rate > 0 and h2rate > 0 and tail_ok,
                f"last {dt:.0f} s: {rate:,.0f} forwarded/s by the router, {h2rate:,.0f} "
                f"frames/s received by h2, a probe answered in every sample: {tail_ok}")
    else:
        v.check("no stuck ring", False, "fewer than two samples in the last minute")
    ok4, ok6 = final_probes
    v.check("idle after the load", ok4 == 5 and ok6 == 5,
            f"{ok4}/5 IPv4 and {ok6}/5 IPv6 pings answered within 1 s once the load stopped")
    return v


def idle_malformed(router: RouterProcess, h1: Namespace) -> dict[str, tuple[int, int]]:
    """2 s of malformed frames alone: {counter: (counted, sent)}. Nothing overflows now, so
    every frame sent must be counted, exactly once, under its counter."""
    before = json.loads(router.ctl("show", "stats", "--json").stdout)["counters"]
    out = h1.run(["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "bench.soak", "--mix",
                  "h1-r", "2"], timeout=60).stdout
    sent = json.loads(out.strip().splitlines()[-1])["sent"]
    time.sleep(0.5)
    after = json.loads(router.ctl("show", "stats", "--json").stdout)["counters"]
    return {key: (after.get(key, 0) - before.get(key, 0), int(sent[kind]))
            for kind, key in MALFORMED.items()}


def router_summary(after: dict[str, int], drops: int, veth: int, fp: dict[str, int]
                   ) -> str:
    def c(key: str) -> str:
        return f"{after.get(key, 0):,}"

    return (f"router: {c('ip.forward')} IPv4 forwarded ({c('ip.fastforward')} fast), "
            f"{c('ip6.forward')} IPv6 ({c('ip6.fastforward')} fast); fragmented "
            f"{c('ip.fragmented')}, reassembled {c('ip.reassembled')} / {c('ip6.reassembled')};"
            f" TTL exceeded {c('ip.ttlexceeded')} / {c('ip6.ttlexceeded')}; no route "
            f"{c('ip.noroute')} / {c('ip6.noroute')}; ICMP errors {c('icmp.error')} / "
            f"{c('icmp6.error')}, rate-limited {c('icmp.ratelimited')} / {c('icmp6.toofreq')};"
            f" kernel drops before r's rings: ring {drops:,}, veth {veth:,}; TX ring full "
            f"{fp.get('drop.txfull', 0):,}")


def usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "gcc", "taskset", "ping", "ethtool"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    from appliance.dataplane.tablesync import have_c

    if not have_c():
        return "needs the C fast path (python3 setup.py build_ext --inplace)"
    return None


_MAIN_PID = os.getpid()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C, so `finally` removes the topology. pyroute2 forks helper processes
    (copies of this one) and ends them with SIGTERM: those must die as by default, not unwind
    into our `finally` and tear the topology down under us."""
    if os.getpid() != _MAIN_PID:
        os._exit(128 + signum)
    raise KeyboardInterrupt


def soak(seconds: float) -> int:
    from bench.forward import compile_gen

    warmup = min(60.0, seconds / 6)
    remove_stale()
    load0 = os.getloadavg()
    print(f"soak: {seconds:g} s of mixed load through vrlab-router --fastpath c; load average "
          f"at start {' / '.join(f'{x:.1f}' for x in load0)} on {os.cpu_count()} CPUs",
          flush=True)
    samples: list[Sample] = []
    loads = ping_loads(seconds)
    gen_totals = GenTotals()
    stop = threading.Event()
    gen_thread: threading.Thread | None = None
    mixer: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        lab = Lab(Path(tmp))
        try:
            gen = compile_gen(Path(tmp))
            line = build_line(lab, "c")
            router = line.router
            assert router is not None
            pid = router.proc.pid
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if not comm.startswith("python"):
                raise RuntimeError(f"pid {pid} is {comm!r}, not the daemon")
            # the forwarder on the other CPU from the generator, ahead of the machine's other
            # work, as bench/forward.py runs it
            subprocess.run(["taskset", "-pc", "1", str(pid)], capture_output=True, check=False)
            subprocess.run(["renice", "-n", "-15", "-p", str(pid)], capture_output=True,
                           check=False)
            for dst in ("198.51.100.2", "2001:db8:2::2"):  # neighbors resolved
                probe(line.h1, dst)
            before = json.loads(router.ctl("show", "stats", "--json").stdout)["counters"]
            veth0 = veth_drops(line.h1, line.r)
            start_fwd = before.get("ip.forward", 0) + before.get("ip6.forward", 0)
            started = time.monotonic()
            gen_thread = threading.Thread(target=run_gen, args=(line.h1, gen, seconds, stop,
                                                                gen_totals), daemon=True)
            gen_thread.start()
            for load in loads:
                load.proc = line.h1.popen(load.argv, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL)
            env = dict(os.environ, PYTHONPATH=str(REPO))
            mixer = line.h1.popen([sys.executable, "-m", "bench.soak", "--mix", "h1-r",
                                   str(seconds)], stdout=subprocess.PIPE, env=env,
                                  cwd=str(REPO))
            print(f"{'t s':>5} sampling every {SAMPLE_EVERY:g} s ...", flush=True)
            n = 1
            while True:
                now = time.monotonic() - started
                if now >= seconds:
                    break
                target = min(n * SAMPLE_EVERY, seconds)
                time.sleep(max(0.0, target - now))
                n += 1
                if router.proc.poll() is not None:
                    break
                sample = take_sample(time.monotonic() - started, router, line.h1, line.h2)
                samples.append(sample)
                print(table(samples, start_fwd).splitlines()[-1], flush=True)
            stop.set()
            gen_thread.join(GEN_CHUNK + 40)
            mix_out, _ = mixer.communicate(timeout=60)
            mixed = json.loads(mix_out.decode().strip().splitlines()[-1]) if mix_out else {}
            for load in loads:
                assert load.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    load.proc.send_signal(signal.SIGINT)  # ping prints its summary
                out, _ = load.proc.communicate(timeout=20)
                parse_ping(out.decode(errors="replace"), load)
            alive = router.proc.poll() is None
            time.sleep(2.0)  # let the rings drain
            final = (sum(probe(line.h1, "198.51.100.2") for _ in range(5)),
                     sum(probe(line.h1, "2001:db8:2::2") for _ in range(5))) if alive else (0, 0)
            if alive:
                after = json.loads(router.ctl("show", "stats", "--json").stdout)["counters"]
                status = json.loads(router.ctl("status", "--json").stdout)
                exit_note = f"pid {pid} running after {time.monotonic() - started:.0f} s"
            else:
                after, status = samples[-1].counters if samples else {}, {}
                exit_note = f"EXITED with status {router.proc.returncode}"
            drops = ring_drops(status)
            idle_mix = idle_malformed(router, line.h1) if alive else {}
            log_text = router.log()
            print()
            print(table(samples, start_fwd))
            print()
            failures = "".join(f"; {text}" for text in gen_totals.failures)
            print(f"load from h1: UDP generator {gen_totals.sent:,} frames in "
                  f"{gen_totals.chunks} chunks (IPv4/IPv6 in turn, {gen_totals.errors:,} "
                  f"send errors{failures});"
                  f" malformed {sum(mixed.get('sent', {}).values()):,} sent "
                  f"({mixed.get('failed', '?')} refused by h1's kernel)")
            for load in loads:
                print(f"  ping {load.label:<46} {load.transmitted:>6} sent {load.received:>6} "
                      f"answered {load.errors:>6} ICMP errors")
            veth = veth_drops(line.h1, line.r) - veth0
            print(router_summary(after, drops, veth, status.get("fastpath_counters", {})))
            load1 = os.getloadavg()
            print(f"load average at the end {' / '.join(f'{x:.1f}' for x in load1)}")
            verdict = judge(samples, warmup, alive, exit_note, mixed, before, after,
                            drops + veth, final, log_text)
            verdict.check("malformed frames counted exactly once the load stopped",
                          bool(idle_mix) and all(got == want for got, want in idle_mix.values()),
                          ", ".join(f"{key} {got}/{want}" for key, (got, want) in
                                    idle_mix.items()) or "not run")
            print()
            for text in verdict.lines:
                print(text)
            if verdict.failed and not alive:
                print("daemon log tail:\n" + "\n".join(log_text.splitlines()[-30:]))
            return 1 if verdict.failed else 0
        finally:
            stop.set()
            for proc in [mixer, *(load.proc for load in loads)]:
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            if gen_thread is not None:
                gen_thread.join(GEN_CHUNK + 40)
            lab.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, metavar="SECONDS",
                        help="length of the load (default 600)")
    parser.add_argument("--quick", action="store_true", help="60 s")
    parser.add_argument("--mix", nargs=2, metavar=("IFNAME", "SECONDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mix:
        return mix(args.mix[0], float(args.mix[1]))
    seconds = 60.0 if args.quick else args.duration
    if seconds < 30:
        parser.error("--duration must be at least 30 s (samples every 10 s)")
    reason = usable()
    if reason:
        print(f"bench soak: skipped, {reason}")
        return 1
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return soak(seconds)
    except KeyboardInterrupt:
        print("bench soak: interrupted; topology removed", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
