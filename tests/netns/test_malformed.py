"""Malformed IPv4/IPv6 packets from h1 are dropped and counted under their netstat -s names
(RFC 1812 §5.2.2 input checks, BSD ip_input order) while forwarding carries on."""

from __future__ import annotations

import struct

import pytest

from appliance.packet.checksum import internet_checksum

from netns import MAC, Line, send_frames, wait_for

R_MAC = bytes.fromhex(MAC["r-h1"].replace(":", ""))
H1_MAC = bytes.fromhex(MAC["h1-r"].replace(":", ""))
H1 = bytes([192, 0, 2, 2])
H2 = bytes([198, 51, 100, 2])
H1_6 = bytes.fromhex("20010db8000100000000000000000002")
H2_6 = bytes.fromhex("20010db8000200000000000000000002")


def eth(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return R_MAC + H1_MAC + struct.pack("!H", ethertype) + payload


def ipv4(payload: bytes = b"\x00" * 20, *, version: int = 4, ihl: int = 5,
         total_length: int | None = None, checksum: int | None = None, ttl: int = 64,
         src: bytes = H1) -> bytes:
    total = 20 + len(payload) if total_length is None else total_length
    header = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, total, 1, 0, ttl, 17, 0,
                         src, H2)
    value = internet_checksum(header) if checksum is None else checksum
    return header[:10] + struct.pack("!H", value) + header[12:] + payload


def ipv6(payload: bytes = b"\x00" * 8, *, version: int = 6,
         payload_length: int | None = None) -> bytes:
    plen = len(payload) if payload_length is None else payload_length
    return struct.pack("!IHBB16s16s", version << 28, plen, 59, 64, H1_6, H2_6) + payload


CASES = [
    ("bad header checksum", eth(ipv4(checksum=0x1234)), "ip.badsum"),
    ("incorrect version", eth(ipv4(version=5)), "ip.badvers"),
    ("shorter than an IPv4 header", eth(ipv4()[:12]), "ip.toosmall"),
    ("header length < 20", eth(ipv4(ihl=4)), "ip.badhlen"),
    ("header length beyond the packet", eth(ipv4(ihl=15)), "ip.badhlen"),
    ("total length lies (longer than received)", eth(ipv4(total_length=1000)), "ip.tooshort"),
    ("total length < header length", eth(ipv4(total_length=12)), "ip.badlen"),
    ("IPv6 shorter than its header", eth(ipv6()[:30], 0x86DD), "ip6.toosmall"),
    ("IPv6 incorrect version", eth(ipv6(version=4), 0x86DD), "ip6.badvers"),
    ("IPv6 payload length lies", eth(ipv6(payload_length=600), 0x86DD), "ip6.tooshort"),
    # RFC 1812 §5.3.7: never forwarded from the directed broadcast of the arrival subnet
    # (192.0.2.0/26 on r-h1); the fast path hands it to the slow path, which drops it
    ("source is the subnet's broadcast", eth(ipv4(src=bytes([192, 0, 2, 63]))), "ip.badaddr"),
]


@pytest.mark.parametrize(("what", "frame", "counter"), CASES, ids=[c[0] for c in CASES])
def test_malformed_dropped_and_counted(line: Line, what: str, frame: bytes,
                                       counter: str) -> None:
    assert line.router is not None
    router = line.router
    before = router.stats()
    send_frames(line.h1, "h1-r", [frame] * 3)
    assert wait_for(lambda: router.stats()[counter] - before[counter] >= 3, timeout=5), \
        f"{what}: {counter} did not move by 3"
    after = router.stats()
    # Nothing of it was forwarded: the forward counters moved only by what else was going on.
    assert after["ip.forward"] == before["ip.forward"]
    assert after["ip6.forward"] == before["ip6.forward"]


def test_forwarding_continues_during_garbage(line: Line) -> None:
    """Interleave every malformed frame with pings: all pings are answered."""
    frames = [c[1] for c in CASES] * 20
    pinger = line.h1.popen(["ping", "-n", "-q", "-c", "10", "-i", "0.1", "-W", "2", Line.H2])
    try:
        send_frames(line.h1, "h1-r", frames)
        assert pinger.wait(30) == 0
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait(5)
    proc = line.h1.run(["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", Line.H2_6])
    assert " 0% packet loss" in proc.stdout


def test_valid_raw_frame_is_forwarded(line: Line) -> None:
    """The control case: the same hand-built frame with nothing wrong is forwarded, so the
    drops above are the router's judgement and not the frame builder's."""
    assert line.router is not None
    router = line.router
    line.h1.run(["ping", "-n", "-c", "1", "-W", "2", Line.H2])  # h2's neighbor entry ready
    before = router.stats()
    send_frames(line.h1, "h1-r", [eth(ipv4(b"\x00\x09\x00\x09\x00\x08\x00\x00"))] * 3)
    assert wait_for(lambda: router.stats()["ip.forward"] - before["ip.forward"] >= 3, timeout=5)
