"""`routerctl show stats`' fastpath group (appliance/dataplane/report.py)."""

from __future__ import annotations

from appliance.dataplane.report import render
from appliance.dataplane.twin import COUNTER_NAMES


def test_every_counter_of_a_quiet_fast_path_reads_zero() -> None:
    text = render(dict.fromkeys(COUNTER_NAMES, 0))
    assert text.startswith("fastpath:\n")
    assert "\t0 frames read from the RX rings\n" in text
    assert "\t0 forwarded IPv4, 0 forwarded IPv6\n" in text
    assert "\t0 frames dropped: TX ring full\n" in text
    assert "wake-ups" not in text and "per TX kick" not in text  # no averages of nothing
    assert "\t\t" not in text  # no per-reason punt lines when none moved


def test_counts_punts_by_reason_and_averages_the_timings() -> None:
    counters = dict.fromkeys(COUNTER_NAMES, 0) | {
        "rx": 100, "forward4": 90, "forward6": 5, "punt.nonip": 3, "punt.local": 2,
        "tx_kicks": 40, "tx_backlog": 1, "rx_wakeups": 30, "rx_wait_ns": 3_000_000,
        "tx_kick_ns": 4_000_000}
    lines = render(counters, rx_ring_drops=12).splitlines()
    assert "\t5 frames handed to the slow path" in lines
    punts = lines.index("\t5 frames handed to the slow path")
    assert lines[punts + 1 : punts + 3] == ["\t\t2 local", "\t\t3 nonip"]
    assert "\t12 frames dropped by the kernel: RX ring full" in lines
    assert "\t1 kick left frames on a TX ring (sent by a later kick)" in lines
    assert "\t30 wake-ups, the first frame waited 100.0 us on average on the RX ring" in lines
    assert "\t100.0 us per TX kick on average" in lines


def test_no_fast_path_no_group() -> None:
    assert render({}) == ""
