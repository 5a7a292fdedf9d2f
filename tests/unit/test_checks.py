"""Checks against a fake lab: each kind passes on the output it should and fails with a reason
on the output it should not, and retries stay inside their window."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from orchestrate import pcapfilter
from orchestrate.checks import (
    CheckRunner,
    expand_command,
    flatten_counters,
    parse_traceroute,
)
from orchestrate.topology import CheckSpec, Topology, TopologyError, load_topology, parse_topology

from fakelab import FakeLab, ping_output

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture
def line() -> Topology:
    return load_topology(CONFIGS / "line.yaml")


def spec(kind: str, **params: Any) -> CheckSpec:
    return CheckSpec(kind, f"test {kind}", params, "t.yaml", 1, 1)


def runner(lab: FakeLab, topology: Topology, **kw: Any) -> tuple[CheckRunner, list[float]]:
    sleeps: list[float] = []
    return CheckRunner(lab, topology, sleep=sleeps.append, workdir=lab.directory, **kw), sleeps


def test_ping_success_runs_iputils_on_the_source(tmp_path: Path, line: Topology) -> None:
    lab = FakeLab(tmp_path, {"h1": [(r"^ping ", (0, ping_output("198.51.100.66", 3, 3), ""))]})
    r, _ = runner(lab, line)
    result = r.run(spec("ping", **{"from": "h1", "to": "h2", "count": 3}))
    assert result.passed, result.reason
    assert result.reason == "3/3 replies"
    assert lab.log == [("h1", "ping -4 -n -c 3 -W 2 -i 0.2 198.51.100.66")]


def test_ping_loss_fails_with_the_output(tmp_path: Path, line: Topology) -> None:
    lab = FakeLab(tmp_path, {"h1": [(r"^ping ", (1, ping_output("2001:db8:2::2", 3, 2), ""))]})
    r, sleeps = runner(lab, line)
    result = r.run(spec("ping", **{"from": "h1", "to": "h2", "family": 6, "count": 3,
                                   "attempts": 2, "interval": 0.5}))
    assert not result.passed
    assert result.reason == "expected every echo answered, got 2/3 replies"
    assert "3 packets transmitted, 2 received" in result.detail
    assert result.attempts == 2 and sleeps == [0.5]
    assert lab.log[0][1].startswith("ping -6 ") and lab.log[0][1].endswith(" 2001:db8:2::2")


def test_ping_retries_until_it_passes(tmp_path: Path, line: Topology) -> None:
    replies = iter([(1, ping_output("198.51.100.66", 1, 0), ""),
                    (0, ping_output("198.51.100.66", 1, 1), "")])
    lab = FakeLab(tmp_path, {"h1": [(r"^ping ", lambda cmd: next(replies))]})
    r, sleeps = runner(lab, line)
    result = r.run(spec("ping", **{"from": "h1", "to": "h2", "attempts": 5}))
    assert result.passed and result.attempts == 2 and len(sleeps) == 1


@pytest.mark.parametrize(("expect", "error_line", "passes"), [
    ("time-exceeded", "From 198.51.100.1 icmp_seq=1 Time to live exceeded", True),
    ("time-exceeded", "From 2001:db8:1::1 icmp_seq=1 Time exceeded: Hop limit", True),
    ("net-unreachable", "From 198.51.100.1 icmp_seq=1 Destination Net Unreachable", True),
    ("net-unreachable", "From 198.51.100.1 icmp_seq=1 Destination Host Unreachable", False),
    ("unreachable", "From 2001:db8:1::1 icmp_seq=1 Destination unreachable: No route", True),
    ("admin-prohibited", "From 198.51.100.1 icmp_seq=1 Packet filtered", True),
    ("port-unreachable", "From 198.51.100.66 icmp_seq=1 Destination Port Unreachable", True),
    ("frag-needed", "From 198.51.100.1 icmp_seq=1 Frag needed and DF set (mtu = 1280)", True),
    ("frag-needed", "From 2001:db8:1::1 icmp_seq=1 Packet too big: mtu=1280", True),
    ("frag-needed", "ping: local error: message too long, mtu=1280", True),
    ("frag-needed", "From 198.51.100.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)", False),
    ("time-exceeded", "From 198.51.100.1 icmp_seq=1 Destination Net Unreachable", False),
])
def test_ping_expected_icmp_errors(tmp_path: Path, line: Topology, expect: str,
                                   error_line: str, passes: bool) -> None:
    out = ping_output("198.51.100.66", 1, 0, (error_line,))
    lab = FakeLab(tmp_path, {"h1": [(r"^ping ", (1, out, ""))]})
    r, _ = runner(lab, line)
    params: dict[str, Any] = {"from": "h1", "to": "h2", "expect": expect, "attempts": 1}
    if expect == "frag-needed":
        params |= {"mtu": 1280, "size": 1400, "df": True}
    result = r.run(spec("ping", **params))
    assert result.passed is passes, result.reason
    if passes:
        assert result.reason == error_line.strip()
    if expect == "frag-needed":
        assert "-s 1400 -M do" in lab.log[0][1]


def test_ping_expecting_an_error_fails_on_a_reply(tmp_path: Path, line: Topology) -> None:
    lab = FakeLab(tmp_path, {"h1": [(r"^ping ", (0, ping_output("198.51.100.66", 1, 1), ""))]})
    r, _ = runner(lab, line)
    result = r.run(spec("ping", **{"from": "h1", "to": "h2", "ttl": 1,
                                   "expect": "time-exceeded", "attempts": 1}))
    assert not result.passed
    assert result.reason == "expected time-exceeded, got 1/1 replies"
    assert "-t 1" in lab.log[0][1]


def test_ping_no_reply(tmp_path: Path, line: Topology) -> None:
    lab = FakeLab(tmp_path, {"h1": [(r"^ping ", (1, ping_output("192.0.2.1", 1, 0), ""))]})
    r, _ = runner(lab, line)
    assert r.run(spec("ping", **{"from": "h1", "to": "192.0.2.1", "expect": "no-reply"})).passed
    assert lab.log[0][1].endswith(" 192.0.2.1")


def test_link_local_target_uses_the_mac_and_the_source_interface(tmp_path: Path) -> None:
    duo = load_topology(CONFIGS / "duo.yaml")
    lab = FakeLab(tmp_path, {
        "piano": [(r"cat /sys/class/net/vioif0/address", (0, "52:54:00:12:34:56\n", ""))],
        "violin": [(r"^ping ", (0, ping_output("fe80::5054:ff:fe12:3456", 3, 3), ""))],
    })
    r, _ = runner(lab, duo)
    result = r.run(spec("ping", **{"from": "violin", "to": "piano:vioif0", "family": 6,
                                   "count": 3}))
    assert result.passed, result.reason
    assert lab.log[-1] == ("violin", "ping -6 -n -c 3 -W 2 -i 0.2 fe80::5054:ff:fe12:3456%vioif0")


def test_link_local_from_the_lab_handle_when_it_knows(tmp_path: Path) -> None:
    duo = load_topology(CONFIGS / "duo.yaml")
    lab = FakeLab(tmp_path, {"violin": [(r"^ping ", (0, ping_output("fe80::1", 1, 1), ""))]})
    lab.node("piano").link_local = lambda ifname: "fe80::abcd"  # type: ignore[attr-defined]
    r, _ = runner(lab, duo)
    assert r.run(spec("ping", **{"from": "violin", "to": "piano", "family": 6})).passed
    assert lab.log == [("violin", "ping -6 -n -c 1 -W 2 fe80::abcd%vioif0")]


TRACE_OK = """\
traceroute to 198.51.100.66 (198.51.100.66), 8 hops max, 60 byte packets
 1  198.51.100.1  0.812 ms
 2  198.51.100.66  1.231 ms
"""


def stats_output(target: str, low: float, sent: int = 20, got: int = 20) -> str:
    rtt = f"rtt min/avg/max/mdev = {low:.3f}/{low + 1:.3f}/{low + 3:.3f}/0.500 ms\n"
    return ping_output(target, sent, got) + (rtt if got else "")


@pytest.mark.parametrize(("impaired", "passed", "reason"), [
    (43.9, True, "loss 0.0% (0/20), rtt min 43.9 avg 44.9 ms; baseline r1 rtt min 0.9 ms: "
                 "+43.0 ms"),
    (0.9, False, "loss 0.0% (0/20), rtt min 0.9 avg 1.9 ms; baseline r1 rtt min 0.9 ms: "
                 "+0.0 ms added, outside [35.0, 45.0] ms"),  # the impairment is missing
    (52.0, False, "loss 0.0% (0/20), rtt min 52.0 avg 53.0 ms; baseline r1 rtt min 0.9 ms: "
                  "+51.1 ms added, outside [35.0, 45.0] ms"),
])
def test_ping_stats_added_rtt_against_a_baseline(tmp_path: Path, line: Topology,
                                                 impaired: float, passed: bool,
                                                 reason: str) -> None:
    lab = FakeLab(tmp_path, {"h1": [
        (r"^ping .* 198\.51\.100\.66$", (0, stats_output("198.51.100.66", impaired), "")),
        (r"^ping .* 198\.51\.100\.1$", (0, stats_output("198.51.100.1", 0.9), "")),
    ]})
    r, _ = runner(lab, line)
    result = r.run(spec("ping-stats", **{"from": "h1", "to": "h2", "baseline": "r1",
                                         "added": [35.0, 45.0]}))
    assert (result.passed, result.reason) == (passed, reason)
    assert [cmd.split()[-1] for _, cmd in lab.log[:2]] == ["198.51.100.66", "198.51.100.1"]


def test_ping_stats_baseline_needs_added() -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology(BASE + "  - {kind: ping-stats, from: h1, to: r1, baseline: r1}\n",
                       "c.yaml")
    assert "added: and baseline: go together" in str(info.value.problems[0])


def test_traceroute_hops_by_node_name(tmp_path: Path, line: Topology) -> None:
    lab = FakeLab(tmp_path, {"h1": [(r"^traceroute ", (0, TRACE_OK, ""))]})
    r, _ = runner(lab, line)
    result = r.run(spec("traceroute", **{"from": "h1", "to": "h2", "hops": ["r1", "h2"]}))
    assert result.passed, result.reason
    assert result.reason == "198.51.100.1 (r1) -> 198.51.100.66 (h2)"
    assert lab.log == [("h1", "traceroute -4 -n -q 1 -w 2 -m 8 198.51.100.66")]


@pytest.mark.parametrize("proto, flag", [("tcp", "-T "), ("icmp", "-I "), ("udp", "")])
def test_traceroute_proto_picks_the_probes(tmp_path: Path, line: Topology, proto: str,
                                           flag: str) -> None:
    lab = FakeLab(tmp_path, {"h1": [(r"^traceroute ", (0, TRACE_OK, ""))]})
    r, _ = runner(lab, line)
    result = r.run(spec("traceroute", **{"from": "h1", "to": "h2", "hops": ["r1", "h2"],
                                         "proto": proto}))
    assert result.passed, result.reason
    assert lab.log == [("h1", f"traceroute -4 {flag}-n -q 1 -w 2 -m 8 198.51.100.66")]


def test_traceroute_wrong_hop_and_stars(tmp_path: Path, line: Topology) -> None:
    out = TRACE_OK.replace(" 1  198.51.100.1  0.812 ms", " 1  *")
    lab = FakeLab(tmp_path, {"h1": [(r"^traceroute ", (0, out, ""))]})
    r, _ = runner(lab, line)
    result = r.run(spec("traceroute", **{"from": "h1", "to": "h2", "hops": ["r1", "h2"],
                                         "attempts": 1}))
    assert not result.passed and result.reason == "hop 1: expected r1, got *"
    result = r.run(spec("traceroute", **{"from": "h1", "to": "h2", "attempts": 1,
                                         "hops": ["198.51.100.1", "r1", "h2"]}))
    assert not result.passed
    assert result.reason == "hop 1: expected 198.51.100.1, got *"
    assert parse_traceroute(TRACE_OK) == ["198.51.100.1", "198.51.100.66"]


def test_exec_status_and_stdout(tmp_path: Path, line: Topology) -> None:
    lab = FakeLab(tmp_path, {"r1": [(r"routerctl show routes",
                                     (0, "198.51.100.64/26 connected r1-h2\n", ""))]})
    r, _ = runner(lab, line)
    ok = r.run(spec("exec", node="r1", command="routerctl show routes",
                    stdout=r"198\.51\.100\.64/26"))
    assert ok.passed
    bad = r.run(spec("exec", node="r1", command="routerctl show routes", stdout="2001:db8:9::",
                     attempts=1))
    assert not bad.passed and bad.reason == "stdout does not match /2001:db8:9::/"
    assert "198.51.100.64/26 connected" in bad.detail
    missing = r.run(spec("exec", node="r1", command="false", attempts=1))
    assert not missing.passed and missing.reason == "exit status 127, expected 0"


def stats_json(**counters: int) -> str:
    import json

    return json.dumps({"counters": {k.replace("_", "."): v for k, v in counters.items()},
                       "text": "..."})


def test_counter_over_a_command(tmp_path: Path, line: Topology) -> None:
    values = iter([stats_json(ip_forward=10), stats_json(ip_forward=15)])
    lab = FakeLab(tmp_path, {
        "r1": [(r"routerctl show stats --json", lambda cmd: (0, next(values), ""))],
        "h1": [(r"^ping ", (0, ping_output("198.51.100.66", 5, 5), ""))],
    })
    r, _ = runner(lab, line)
    result = r.run(spec("counter", node="r1", key="ip.forward", at_least=5, on="h1",
                        command="ping -c 5 {h2.4}"))
    assert result.passed, result.reason
    assert result.reason == "ip.forward 10 -> 15 (+5)"
    assert ("h1", "ping -c 5 198.51.100.66") in lab.log


def test_counter_between_checks_and_missing_key(tmp_path: Path, line: Topology) -> None:
    lab = FakeLab(tmp_path, {
        "r1": [(r"routerctl show stats --json", (0, stats_json(ip_redirectsent=2), ""))]})
    r, _ = runner(lab, line)
    results = r.run_all([
        spec("counter", node="r1", key="ip.redirectsent", attempts=2),
        spec("counter", node="r1", key="ip.redirectsnt", attempts=1),
    ])
    assert not results[0].passed
    assert results[0].reason == "ip.redirectsent 2 -> 2 (+0), expected at least +1"
    assert results[0].attempts == 2
    assert results[1].reason == "r1 has no counter ip.redirectsnt; similar: ip.redirectsent"
    # one baseline read per counter before the checks, then one read per attempt
    assert len(lab.log) == 2 + 2 + 1


def test_counter_reports_routerctl_failure(tmp_path: Path, line: Topology) -> None:
    lab = FakeLab(tmp_path, {"r1": [(r"routerctl", (1, "", "cannot connect to socket"))]})
    r, _ = runner(lab, line)
    result = r.run(spec("counter", node="r1", key="ip.forward", attempts=1))
    assert result.reason == "routerctl show stats failed on r1 (exit 1): cannot connect to socket"


needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")


@needs_tcpdump
def test_capture_present_and_absent(tmp_path: Path, line: Topology) -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    echo = Ether() / IP(src="198.51.100.2", dst="198.51.100.66") / ICMP(type=8)
    lab = FakeLab(tmp_path, {"h1": [(r"^ping ", (0, "", ""))]}, packets=[echo])
    r, _ = runner(lab, line)
    filt = "icmp and icmp[icmptype] == icmp-echo and src host 198.51.100.2"
    present = r.run(spec("capture", endpoint="h2:eth1", on="h1", command="ping -c 1 {h2.4}",
                         filter=filt))
    assert present.passed and present.reason == "1 matching packet(s)"
    assert lab.captures[0][:2] == ("h2", "eth1")
    assert "198.51.100.2 > 198.51.100.66: ICMP echo request" in present.detail
    absent = r.run(spec("capture", endpoint="h2:eth1", on="h1", command="ping -c 1 {h2.4}",
                        filter=filt, expect="absent", attempts=1))
    assert not absent.passed
    assert absent.reason.startswith("1 packet(s) matching")
    redirect = r.run(spec("capture", endpoint="h2:eth1", on="h1", command="true",
                          filter="icmp and icmp[icmptype] == icmp-redirect", expect="absent"))
    assert redirect.passed and redirect.reason == "no matching packet"


@needs_tcpdump
def test_capture_bad_filter_is_reported(tmp_path: Path, line: Topology) -> None:
    lab = FakeLab(tmp_path, {"h1": [(r".", (0, "", ""))]}, packets=[])
    r, _ = runner(lab, line)
    result = r.run(spec("capture", endpoint="h2:eth1", on="h1", command="true",
                        filter="icmp and ((", attempts=1))
    assert not result.passed and result.reason.startswith("cannot filter the capture:")


@needs_tcpdump
def test_a_filter_never_reaches_tcpdump_as_an_option(tmp_path: Path, line: Topology) -> None:
    # Validation refuses it; the runner is the second line of defence (a check built in
    # Python skips validation): the old runner let tcpdump write this file and count 0.
    written = tmp_path / "written.pcap"
    lab = FakeLab(tmp_path, {"h1": [(r".", (0, "", ""))]}, packets=[])
    r, _ = runner(lab, line)
    result = r.run(spec("capture", endpoint="h2:eth1", on="h1", command="true",
                        filter=f"-w{written}", expect="absent", attempts=1))
    assert not result.passed and result.reason.startswith("cannot filter the capture:")
    assert not written.exists()


@pytest.mark.skipif(not pcapfilter.available(), reason="needs libpcap")
@pytest.mark.parametrize(("expression", "problem"), [
    ("icmp", None),
    ("icmp6 and ip6[40] == 135", None),
    ("vlan and ether host 02:00:00:00:00:01", None),
    ("icmp and ((", "does not compile: can't parse filter expression: syntax error"),
    ("tcp port 99999", "does not compile: illegal port number 99999 > 65535"),
    ("-w/tmp/x", "starts with '-'"),
    ("  -r /etc/shadow", "starts with '-'"),
    ("", "the filter is empty"),
    ("icmp\0-w/tmp/x", "NUL"),
])
def test_filters_are_compiled(expression: str, problem: str | None) -> None:
    got = pcapfilter.filter_problem(expression)
    assert got is None if problem is None else problem in str(got)


def test_lab_exceptions_fail_only_that_check(tmp_path: Path, line: Topology) -> None:
    def boom(cmd: str) -> tuple[int, str, str]:
        raise ConnectionError("ssh dropped")

    lab = FakeLab(tmp_path, {"h1": [(r".", boom)], "h2": [(r".", (0, "x", ""))]})
    r, _ = runner(lab, line)
    results = r.run_all([spec("exec", node="h1", command="true", attempts=2),
                         spec("exec", node="h2", command="true")])
    assert [x.passed for x in results] == [False, True]
    assert results[0].reason == "ConnectionError: ssh dropped" and results[0].attempts == 2


def test_expand_command_and_counters_json(line: Topology) -> None:
    assert expand_command("ping {h2.4} && ping -6 {h2.6}", line) == \
        "ping 198.51.100.66 && ping -6 2001:db8:2::2"
    assert flatten_counters({"counters": {"ip.forward": 3}}) == {"ip.forward": 3}
    assert flatten_counters({"ip": {"forward": 3, "x": "no"}, "icmp": {"outhist": {"3": 1}}}) \
        == {"ip.forward": 3, "icmp.outhist.3": 1}


BASE = """\
nodes:
  r1: {role: router, interfaces: [{name: a, addresses: [198.51.100.1/26]}]}
  h1: {role: host, interfaces: [{name: e, addresses: [198.51.100.2/26]}]}
links: [[r1:a, h1:e]]
tests:
"""


@pytest.mark.parametrize(("check", "message"), [
    ("{kind: ping, from: h1, to: '2001:db8::1', family: 4}", "tests[0].family: target "
     "2001:db8::1 is IPv6, not IPv4"),
    ("{kind: ping, from: h1, to: 10.0.0.1}", "tests[0].to: 10.0.0.1/32 is outside the "
     "documentation ranges (use 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32 "
     "or fe80::/10)"),
    ("{kind: counter, node: h1, key: ip.forward}", "tests[0].node: h1 is a host; counters "
     "live on routers (routers: r1)"),
    ("{kind: exec, node: r1, command: 'ping {h9.4}'}", "tests[0].command: {h9.4}: unknown "
     "node 'h9'"),
    ("{kind: exec, node: r1, cmd: true}", "tests[0]: an exec check needs command:"),
    ("{kind: capture, endpoint: r1:b, on: h1, command: x, filter: icmp}",
     "tests[0].endpoint: node r1 has no interface 'b' (it has: a)"),
    ("{kind: ping, from: h1, to: r1, expect: lost}", "tests[0].expect: expected one of "
     "success, unreachable, net-unreachable, host-unreachable, port-unreachable, "
     "admin-prohibited, frag-needed, time-exceeded, no-reply, got 'lost'"),
    ("{kind: traceroute, from: h1, to: r1}", "tests[0]: a traceroute check needs hops:"),
    ("{kind: traceroute, from: h1, to: r1, hops: [r1], proto: sctp}",
     "tests[0].proto: expected one of udp, tcp, icmp, got 'sctp'"),
])
def test_check_validation(check: str, message: str) -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology(BASE + f"  - {check}\n", "c.yaml")
    assert [str(p).split(":", 3)[3].strip() for p in info.value.problems][:1] == [message]


def test_check_validation_reports_every_key() -> None:
    text = BASE + "  - {kind: exec, node: r9, cmd: true}\n"
    with pytest.raises(TopologyError) as info:
        parse_topology(text, "c.yaml")
    assert [str(p) for p in info.value.problems] == [
        "c.yaml:6:5: tests[0]: an exec check needs command:",
        "c.yaml:6:24: tests[0].node: unknown node 'r9' (nodes: h1, r1)",
        "c.yaml:6:28: tests[0].cmd: unknown key 'cmd' for an exec check (exec takes: node, "
        "command, status, stdout)",
    ]


# -- `vrlab test` with the lab module replaced by fakes


class FakeStatus:
    def __init__(self, name: str, state: str = "running") -> None:
        self.name, self.state = name, state


class LabError(Exception):
    pass


def fake_lab_module(tmp_path: Path, *, existing: FakeLab | None, rules: dict[str, Any],
                    state: str = "up") -> Any:
    import types

    made: list[FakeLab] = []

    class Lab:
        @staticmethod
        def open(name: str) -> FakeLab:
            if existing is None:
                raise LabError(f"no lab named {name!r}")
            return existing

        @staticmethod
        def up(topology: Topology, backend: str, accel: str) -> FakeLab:
            lab = FakeLab(tmp_path, rules)
            lab.record = types.SimpleNamespace(data={"state": "up"})  # type: ignore[attr-defined]
            lab.status = lambda: [FakeStatus(n) for n in topology.nodes]  # type: ignore[attr-defined]
            lab.up_args = (backend, accel)  # type: ignore[attr-defined]
            made.append(lab)
            return lab

    if existing is not None:
        existing.record = types.SimpleNamespace(data={"state": state})  # type: ignore[attr-defined]
        existing.status = lambda: [FakeStatus(n) for n in ("h1", "h2", "r1")]  # type: ignore[attr-defined]
    return types.SimpleNamespace(Lab=Lab, LabError=LabError, made=made)


def run_test_command(monkeypatch: pytest.MonkeyPatch, module: Any, *argv: str) -> int:
    from orchestrate.commands import test as test_command

    monkeypatch.setattr(test_command, "_lab_module", lambda: module)
    sleeps: list[float] = []
    monkeypatch.setattr(test_command, "CheckRunner",
                        lambda lab, topology: CheckRunner(lab, topology, sleep=sleeps.append))
    import argparse

    parser = argparse.ArgumentParser()
    test_command.register(parser.add_subparsers())
    args = parser.parse_args(["test", *argv])
    status: int = args.func(args)
    return status


FORWARDS = iter(range(0, 1000, 5))
LINE_RULES: dict[str, Any] = {
    "*": [(r"^ping .*-t 1 ", (1, ping_output("x", 1, 0, ("From 198.51.100.1 icmp_seq=1 Time "
                                                         "to live exceeded",)), "")),
          (r"^ping .*192\.0\.2\.1", (1, ping_output("x", 1, 0, (
              "From 198.51.100.1 icmp_seq=1 Destination Net Unreachable",)), "")),
          (r"^ping .*2001:db8:99::1", (1, ping_output("x", 1, 0, (
              "From 2001:db8:1::1 icmp_seq=1 Destination unreachable: No route",)), "")),
          (r"^ping -c 5", (0, "", "")),
          (r"^ping ", (0, ping_output("x", 1, 1), "")),
          (r"^traceroute -4", (0, TRACE_OK, "")),
          (r"^traceroute -6 -T .* 2001:db8:1::1$", (0, " 1  2001:db8:1::1  1 ms\n", "")),
          (r"^traceroute -6", (0, " 1  2001:db8:1::1  1 ms\n 2  2001:db8:2::2  1 ms\n", "")),
          (r"routerctl show stats", lambda cmd: (0, stats_json(ip_forward=next(FORWARDS)), "")),
          (r"routerctl show routes", (0, "198.51.100.64/26 connected\n", ""))],
}


@needs_tcpdump
def test_vrlab_test_brings_up_runs_and_tears_down(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    module = fake_lab_module(tmp_path, existing=None, rules=LINE_RULES)
    junit = tmp_path / "out.xml"
    original_up = module.Lab.up

    def up(topology: Topology, backend: str, accel: str) -> FakeLab:
        lab = original_up(topology, backend, accel)
        lab.packets = [Ether() / IP(src="198.51.100.2", dst="198.51.100.66") / ICMP(type=8)]
        return lab

    module.Lab.up = up
    status = run_test_command(monkeypatch, module, str(CONFIGS / "line.yaml"), "--junit",
                              str(junit), "--accel", "tcg")
    (lab,) = module.made
    assert status == 0
    assert lab.up_args == ("qemu", "tcg")
    assert lab.downs == 1
    assert junit.read_text().count("<testcase") == 15


def test_vrlab_test_reuses_a_running_lab_and_fails(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    existing = FakeLab(tmp_path, {"*": [(r".", (1, "", "nope"))]})
    module = fake_lab_module(tmp_path, existing=existing, rules={})
    status = run_test_command(monkeypatch, module, str(CONFIGS / "line.yaml"), "--keep")
    assert status == 1
    assert module.made == [] and existing.downs == 0  # not rebooted, not torn down
    assert len(existing.log) == 15 * 3  # every check tried 3 times, failing at its first command
    assert ("h1", "ping -4 -n -c 1 -W 2 198.51.100.1") in existing.log


def test_vrlab_test_bad_file_starts_nothing(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    module = fake_lab_module(tmp_path, existing=None, rules={})
    bad = Path(__file__).parent / "bad_topologies" / "bad_role.yaml"
    assert run_test_command(monkeypatch, module, str(bad)) == 2
    assert module.made == []


def test_vrlab_test_json_is_one_document_on_stdout(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    existing = FakeLab(tmp_path, {"*": [(r".", (1, "", "nope"))]})
    module = fake_lab_module(tmp_path, existing=existing, rules={})
    status = run_test_command(monkeypatch, module, str(CONFIGS / "line.yaml"), "--json")
    out, err = capsys.readouterr()
    doc = json.loads(out)  # nothing else on stdout: the PASS/FAIL lines and table are on stderr
    assert status == 1 and doc["passed"] is False and doc["lab"] == "line"
    assert len(doc["checks"]) == 15 and not any(c["passed"] for c in doc["checks"])
    first = doc["checks"][0]
    assert (first["kind"], first["attempts"], first["file"]) == (
        "ping", 3, str(CONFIGS / "line.yaml"))
    assert first["line"] > 0 and first["reason"]
    assert "FAIL" in err
