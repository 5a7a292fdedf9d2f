"""The pytest plugin on real VMs: configs/line.yaml (h1 - r1 - h2) booted once for this module.

Each test asserts what was observed on the wire or in the router's counters; the last one runs
every check of the file's `tests:` section, as `vrlab test configs/line.yaml` would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrate.pytest_plugin import LabSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.vrlab_topology("configs/line.yaml"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs QEMU"),
]


def test_h1_reaches_h2_over_both_families(lab: LabSession) -> None:
    v4 = lab.ping("h1", "h2", family=4, count=3)
    v6 = lab.ping("h1", "h2", family=6, count=3)
    assert (v4.received, v6.received) == (3, 3), v4.output + v6.output


def test_ttl_1_expires_at_r1(lab: LabSession) -> None:
    result = lab.ping("h1", "h2", family=4, ttl=1)
    assert result.received == 0
    assert result.errors and result.errors[0].startswith("From 198.51.100.1 "), result.output
    assert "Time to live exceeded" in result.errors[0]


def test_r1_counts_what_it_forwards(lab: LabSession) -> None:
    before = lab.counters("r1")["ip.forward"]
    assert lab.ping("h1", "h2", family=4, count=5).ok
    # five echo requests one way, five replies the other
    assert lab.counters("r1")["ip.forward"] - before >= 10


def test_forwarded_echo_has_its_ttl_decremented(lab: LabSession, tmp_path: Path) -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.utils import rdpcap

    with lab.capture("h2", "eth1", tmp_path / "h2.pcap") as pcap:
        assert lab.ping("h1", "h2", family=4, count=2).ok
    echoes = [p for p in rdpcap(str(pcap)) if ICMP in p and p[ICMP].type == 8
              and p[IP].src == "198.51.100.2" and p[IP].dst == "198.51.100.66"]
    assert echoes, "no echo request from h1 seen on h2's link"
    assert {p[IP].ttl for p in echoes} == {63}  # Linux sends 64; r1 took one


def test_every_check_of_the_file(lab: LabSession) -> None:
    results = lab.runner.run_all(lab.topology.tests)
    failed = [f"{r.name}: {r.reason}\n{r.detail}" for r in results if not r.passed]
    assert not failed, "\n\n".join(failed)
    assert len(results) == len(lab.topology.tests) == 15
