"""bench vm-forward's pure parts: ping and iperf3 output into numbers, p99, the summary."""

from __future__ import annotations

import math

import pytest

from bench.__main__ import BENCHMARKS, module_name
from bench.vm_forward import (
    InsideRouter,
    PingResult,
    iperf_tcp_mbit,
    iperf_udp_pps,
    parse_ping,
    percentile,
    ratio,
    summarize,
)

PING = """\
PING 198.51.100.6 (198.51.100.6) 56(84) bytes of data.
64 bytes from 198.51.100.6: icmp_seq=1 ttl=63 time=2.51 ms
64 bytes from 198.51.100.6: icmp_seq=2 ttl=63 time=1.49 ms
64 bytes from 198.51.100.6: icmp_seq=2 ttl=63 time=1.77 ms (DUP!)
64 bytes from 198.51.100.6: icmp_seq=4 ttl=63 time=51.0 ms

--- 198.51.100.6 ping statistics ---
4 packets transmitted, 3 received, +1 duplicates, 25% packet loss, time 153ms
rtt min/avg/max/mdev = 1.490/18.333/51.000/23.100 ms
"""


def test_parse_ping_takes_each_reply_once() -> None:
    result = parse_ping(PING, sent=4)
    assert result == PingResult(sent=4, rtts=(2.51, 1.49, 51.0))


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 201)]  # 1..200
    assert percentile(values, 99) == 198.0
    assert percentile(values, 50) == 100.0
    assert percentile(values, 100) == 200.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 99)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_pools_rounds_and_counts_loss() -> None:
    summary = summarize([parse_ping(PING, sent=4), PingResult(sent=2, rtts=(3.0, 2.0))])
    assert summary.min == 1.49 and summary.max == 51.0 and summary.p99 == 51.0
    assert summary.avg == pytest.approx((2.51 + 1.49 + 51.0 + 3.0 + 2.0) / 5)
    assert summary.loss == pytest.approx(100 / 6)
    assert math.isnan(summarize([PingResult(sent=3, rtts=())]).avg)
    assert summarize([PingResult(sent=3, rtts=())]).loss == 100.0


def test_iperf_reports() -> None:
    tcp = {"end": {"sum_received": {"bits_per_second": 143_000_000.0}}}
    assert iperf_tcp_mbit(tcp) == 143.0
    udp = {"end": {"sum": {"packets": 60_000, "lost_packets": 7_800, "seconds": 3.0}}}
    assert iperf_udp_pps(udp) == pytest.approx(17_400.0)


def test_ratio_and_registration() -> None:
    assert ratio(2.0, 4.0) == "0.50x"
    assert ratio(1.0, 0.0) == "-" and ratio(math.nan, 1.0) == "-"
    assert "vm-forward" in BENCHMARKS and module_name("vm-forward") == "bench.vm_forward"


def test_inside_router_sums_what_moved_over_the_echo_phases() -> None:
    inside = InsideRouter()
    inside.add({"rx_wakeups": 10, "rx_wait_ns": 1_000, "tx_kicks": 5, "tx_kick_ns": 500},
               {"rx_wakeups": 110, "rx_wait_ns": 8_001_000, "tx_kicks": 105,
                "tx_kick_ns": 5_000_500})
    inside.add({}, {"rx_wakeups": 100, "rx_wait_ns": 4_000_000, "tx_kicks": 100,
                    "tx_kick_ns": 5_000_000})
    assert (inside.wakeups, inside.wait_ns, inside.kicks, inside.kick_ns) == (
        200, 12_000_000, 200, 10_000_000)
    text = inside.summary()
    assert "200 wake-ups" in text and "waited 60 us" in text and "took 50 us" in text
    assert "no timing counters" in InsideRouter().summary()
