"""The probe `vrlab trace` sends from a host, run for real in the netns line (h1 -- r -- h2,
the r-h2 link at MTU 1280): what it reports for a reply, a TTL expiry, a port unreachable, a
refused TCP connection and a Fragmentation Needed / Packet Too Big from the router."""

from __future__ import annotations

import json
import shlex

import pytest

from orchestrate.trace.probe import DEFAULT_DPORT, ProbeSpec

from netns import Line

pytestmark = pytest.mark.netns


def probe(line: Line, family: int, proto: str, dst: str, *, ttl: int = 64, size: int = 56,
          df: bool = False) -> dict[str, object]:
    spec = ProbeSpec(family, proto, dst, 0x4242, size, ttl, df, 3.0, DEFAULT_DPORT[proto])
    out = line.h1.run(["sh", "-c", spec.command()], timeout=30).stdout
    report: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize(("family", "dst"), [(4, Line.H2), (6, Line.H2_6)])
def test_probe_reports_what_came_back(line: Line, family: int, dst: str) -> None:
    assert line.router is not None
    line.h1.run(["ping", f"-{family}", "-c", "1", "-W", "2", dst], check=False)  # neighbors
    assert probe(line, family, "icmp", dst)["answer"] == "reply"
    expired = probe(line, family, "icmp", dst, ttl=1)
    assert (expired["answer"], expired["type"]) == ("error", 11 if family == 4 else 3)
    unreachable = probe(line, family, "udp", dst)  # nothing listens on 33434 at h2
    assert (unreachable["answer"], unreachable["type"], unreachable["code"]) == (
        ("error", 3, 3) if family == 4 else ("error", 1, 4))
    assert probe(line, family, "tcp", dst)["answer"] == "refused"  # h2 answers RST on :22
    big = probe(line, family, "icmp", dst, size=1400, df=True)
    assert (big["answer"], big["type"]) == ("error", 3 if family == 4 else 2), big
    # IP_PMTUDISC_PROBE: a second big probe still leaves h1 although it learned the MTU
    again = probe(line, family, "icmp", dst, size=1400, df=True)
    assert again["answer"] == "error", again


def test_probe_command_quotes_its_arguments() -> None:
    spec = ProbeSpec(4, "udp", "198.51.100.2", 1, 0, 1, False, 1.5, 7)
    argv = shlex.split(spec.command())
    assert argv[:2] == ["python3", "-c"]
    assert argv[3:] == ["4", "udp", "198.51.100.2", "1", "0", "1", "0", "1.5", "7"]
