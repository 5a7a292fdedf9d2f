"""TCP to the router's own addresses gets a reset (RFC 9293 §3.10.7.1), never ICMP port
unreachable; a reset is never answered; resets are rate-limited and counted (issue 10)."""

from __future__ import annotations

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    ICMP,
    IP,
    TCP,
    Ether,
    IPv6,
    IPv6ExtHdrDestOpt,
    raw,
)

from appliance.core.router import Router

from routerkit import H1, H1_MAC, R_MAC1, Clock, ends, learn, make_router, only_frame, transmits

R1 = "198.51.100.1"
R1_6 = "2001:db8:1::1"
R2 = "203.0.113.1"  # the router's address on its other interface (weak host model)


@pytest.fixture
def r(router: Router, clock: Clock) -> Router:
    learn(router, H1, clock.now)
    return router


def v4(tcp: TCP, dst: str = R1) -> bytes:
    return raw(Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst=dst) / tcp)


def v6(tcp: TCP, *ext: object) -> bytes:
    pkt = IPv6(src=H1.ip6, dst=R1_6)
    for header in ext:
        pkt = pkt / header
    return raw(Ether(dst=R_MAC1, src=H1_MAC) / pkt / tcp)


def test_syn_gets_rst_ack_for_seq_plus_one(r: Router, clock: Clock) -> None:
    acts = r.receive(1, v4(TCP(sport=40000, dport=22, flags="S", seq=1000)), clock.now)
    got = only_frame(acts, 1)
    assert (got[IP].src, got[IP].dst, got[IP].ttl) == (R1, H1.ip4, 64)
    assert (got[TCP].sport, got[TCP].dport) == (22, 40000)
    assert (str(got[TCP].flags), got[TCP].seq, got[TCP].ack) == ("RA", 0, 1001)
    assert got[TCP].window == 0 and ICMP not in got
    # checksums as a receiver checks them
    again = Ether(raw(got))
    del again[IP].chksum, again[TCP].chksum
    assert Ether(raw(again))[TCP].chksum == got[TCP].chksum
    assert Ether(raw(again))[IP].chksum == got[IP].chksum
    assert ends(acts) == ["ip.delivered"]
    counts = [r.stats.get(k) for k in ("tcp.rcvtotal", "tcp.noport", "tcp.sndrst")]
    assert counts == [1, 1, 1]
    assert r.stats.get("icmp.outhist.3") == 0


def test_ack_segment_gets_rst_with_its_ack_as_seq(r: Router, clock: Clock) -> None:
    tcp = TCP(sport=40000, dport=80, flags="A", seq=7, ack=0xFFFFFFF0)
    got = only_frame(r.receive(1, v4(tcp, dst=R2), clock.now), 1)
    assert got[IP].src == R2  # from the address the segment was sent to
    assert (str(got[TCP].flags), got[TCP].seq, got[TCP].ack) == ("R", 0xFFFFFFF0, 0)


def test_seg_len_counts_data_syn_and_fin_and_wraps(r: Router, clock: Clock) -> None:
    tcp = TCP(sport=1, dport=2, flags="SF", seq=0xFFFFFFFF) / (b"x" * 10)
    got = only_frame(r.receive(1, v4(tcp), clock.now), 1)
    assert (str(got[TCP].flags), got[TCP].ack) == ("RA", (0xFFFFFFFF + 12) & 0xFFFFFFFF)


@pytest.mark.parametrize("flags", ["R", "RA"])
def test_a_reset_is_never_answered(r: Router, clock: Clock, flags: str) -> None:
    acts = r.receive(1, v4(TCP(sport=1, dport=2, flags=flags, seq=5, ack=9)), clock.now)
    assert transmits(acts) == []
    assert ends(acts) == ["tcp.noport"] and r.stats.get("tcp.sndrst") == 0


def test_bad_segments_are_dropped_and_counted(r: Router, clock: Clock) -> None:
    bad_sum = v4(TCP(sport=1, dport=2, flags="S", chksum=0x1234))
    bad_off = v4(TCP(sport=1, dport=2, flags="S", dataofs=15))
    short = raw(Ether(dst=R_MAC1, src=H1_MAC) / IP(src=H1.ip4, dst=R1, proto=6) / b"0123456789")
    for frame, counter in ((bad_sum, "tcp.rcvbadsum"), (bad_off, "tcp.rcvbadoff"),
                           (short, "tcp.rcvshort")):
        acts = r.receive(1, frame, clock.now)
        assert transmits(acts) == [] and ends(acts) == [counter]
        assert r.stats.get(counter) == 1
    assert r.stats.get("tcp.rcvtotal") == 3


def test_no_reset_to_a_broadcast(r: Router, clock: Clock) -> None:
    frame = raw(Ether(dst="ff:ff:ff:ff:ff:ff", src=H1_MAC)
                / IP(src=H1.ip4, dst="198.51.100.255") / TCP(sport=1, dport=2, flags="S"))
    acts = r.receive(1, frame, clock.now)
    assert transmits(acts) == [] and ends(acts) == ["tcp.noport"]


def test_v6_syn_behind_an_extension_header_gets_rst(r: Router, clock: Clock) -> None:
    acts = r.receive(1, v6(TCP(sport=5555, dport=179, flags="S", seq=41), IPv6ExtHdrDestOpt()),
                     clock.now)
    got = only_frame(acts, 1)
    assert (got[IPv6].src, got[IPv6].dst, got[IPv6].nh, got[IPv6].hlim) == (
        R1_6, H1.ip6, 6, 64)
    assert (got[TCP].sport, got[TCP].dport) == (179, 5555)
    assert (str(got[TCP].flags), got[TCP].seq, got[TCP].ack) == ("RA", 0, 42)
    again = Ether(raw(got))
    del again[TCP].chksum
    assert Ether(raw(again))[TCP].chksum == got[TCP].chksum
    assert ends(acts) == ["ip6.delivered"] and r.stats.get("tcp.sndrst") == 1


def test_resets_share_the_icmp_rate_limit(clock: Clock) -> None:
    router = make_router(sysctl={"net.inet.icmp.icmplim": 2})
    learn(router, H1, clock.now)
    sent = [transmits(router.receive(1, v4(TCP(sport=1000 + i, dport=22, flags="S")),
                                     clock.now)) for i in range(5)]
    assert [len(s) for s in sent] == [1, 1, 0, 0, 0]
    assert router.stats.get("tcp.rstlimited") == 3 and router.stats.get("tcp.sndrst") == 2
