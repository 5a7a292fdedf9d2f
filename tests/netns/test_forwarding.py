"""Forwarding through vrlab-router between two Linux hosts (h1 -- r -- h2), and the router's
own addresses answering. Each test runs with the fast path and with --no-fastpath."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from netns import Line


def ping(line: Line, target: str, *args: str, count: int = 3, check: bool = True) -> str:
    proc = line.h1.run(["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "3", *args, target],
                       check=check)
    return proc.stdout


def received(output: str) -> int:
    m = re.search(r"(\d+) received", output)
    assert m, output
    return int(m.group(1))


@pytest.mark.parametrize("target", [Line.H2, Line.H2_6])
def test_ping_through_router(line: Line, target: str) -> None:
    assert line.router is not None
    before = line.router.stats()
    out = ping(line, target, count=5)
    assert received(out) == 5
    # The reply crossed one router: h2's TTL/hop limit 64 arrives as 63.
    assert re.search(r"ttl=63", out), out
    after = line.router.stats()
    group = "ip6" if ":" in target else "ip"
    assert after[f"{group}.forward"] - before[f"{group}.forward"] >= 10  # 5 requests + 5 replies


@pytest.mark.parametrize("target", [Line.R_H1, Line.R_H2, Line.R_H1_6, Line.R_H2_6])
def test_ping_router_addresses(line: Line, target: str) -> None:
    out = ping(line, target)
    assert received(out) == 3
    assert "ttl=64" in out  # answered by the router itself, not forwarded


def test_ping_router_link_local(line: Line) -> None:
    out = ping(line, f"{Line.R_H1_LL}%h1-r")
    assert received(out) == 3


def test_fastpath_counts_forwarding(line: Line) -> None:
    """With the fast path on, steady-state forwarding is done by it and counted as such."""
    assert line.router is not None
    ping(line, Line.H2, count=2)  # neighbors resolved
    before = line.router.stats()
    ping(line, Line.H2, count=4)
    after = line.router.stats()
    fast = after["ip.fastforward"] - before["ip.fastforward"]
    if line.mode == "off":
        assert fast == 0
    else:
        assert fast >= 6


def test_big_ping_to_router_reassembled(line: Line) -> None:
    """h1 fragments a 3000-byte echo request; the router reassembles it and answers (its
    reply is fragmented to the 1500-byte link and reassembled by h1)."""
    assert line.router is not None
    before = line.router.stats()
    out = ping(line, Line.R_H1, "-s", "3000", count=2)
    assert received(out) == 2
    assert "3008 bytes from 192.0.2.1" in out
    after = line.router.stats()
    assert after["ip.reassembled"] - before["ip.reassembled"] >= 2
    assert after["ip.fragmented"] - before["ip.fragmented"] >= 2


def test_big_ping6_to_router_reassembled(line: Line) -> None:
    assert line.router is not None
    before = line.router.stats()
    out = ping(line, Line.R_H1_6, "-s", "3000", count=2)
    assert received(out) == 2
    assert "3008 bytes from 2001:db8:1::1" in out
    after = line.router.stats()
    assert after["ip6.reassembled"] - before["ip6.reassembled"] >= 2


def test_ipv4_fragmented_without_df(line: Line) -> None:
    """A 1428-byte datagram without DF must be fragmented onto the 1280-byte link."""
    assert line.router is not None
    before = line.router.stats()
    out = ping(line, Line.H2, "-M", "dont", "-s", "1400", count=2)
    assert received(out) == 2
    after = line.router.stats()
    assert after["ip.fragmented"] - before["ip.fragmented"] >= 2
    assert after["ip.ofragments"] - before["ip.ofragments"] >= 4


@pytest.mark.parametrize("family", ["4", "6"])
def test_tcp_transfer_through_router(line: Line, family: str) -> None:
    """A 2 MB file over TCP arrives intact (checksums right after the router rewrote the
    headers, also for frames a local sender left with a partial checksum)."""
    data = os.urandom(2 * 1024 * 1024)
    src = line.lab.workdir / f"send{family}.bin"
    dst = line.lab.workdir / f"recv{family}.bin"
    src.write_bytes(data)
    port = "5001" if family == "4" else "5002"
    target = Line.H2 if family == "4" else Line.H2_6
    listener = line.h2.popen(["sh", "-c", f"exec timeout 30 nc -{family} -l {port} > {dst}"])
    try:
        sent = None
        for _ in range(50):  # bounded: wait for the listener to be up
            sent = line.h1.run(["sh", "-c", f"timeout 30 nc -{family} -N {target} {port} < {src}"],
                               check=False, timeout=40)
            if sent.returncode == 0:
                break
            if listener.poll() is not None:
                break
            line.h1.run(["sleep", "0.1"])
        assert sent is not None and sent.returncode == 0, sent
        assert listener.wait(30) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait(5)
    assert hashlib.sha256(dst.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_first_ping_after_start_is_answered(fresh_line: Line) -> None:
    """Nothing is resolved when the router starts: the first echo request waits on an
    INCOMPLETE neighbor entry and leaves when h2 answers (the illumos nce_resolv_ok path)."""
    router = fresh_line.start()
    out = fresh_line.h1.run(["ping", "-n", "-c", "1", "-W", "5", Line.H2]).stdout
    assert received(out) == 1
    stats = router.stats()
    assert stats["arp.queued"] >= 1
    out6 = fresh_line.h1.run(["ping", "-n", "-c", "1", "-W", "5", Line.H2_6]).stdout
    assert received(out6) == 1
    assert router.stats()["nd.queued"] >= 1
