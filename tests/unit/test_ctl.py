"""routerctl against a control server with the real commands over a fake router."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_control import FakeRouter, serving

from appliance.control import ctl
from appliance.control.server import ControlCommands


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, FakeRouter]]:
    router = FakeRouter()
    commands = ControlCommands(router, status=lambda: {"hostname": "r"})  # type: ignore[arg-type]

    def dispatch(request: dict[str, Any]) -> Any:
        if request["op"] == "trace-read" and commands.tracing:
            rec = router.tracer.begin(3, 1.0)  # a packet arrives between two reads
            rec.add("rx", "r-h1 98 bytes")
            rec.add("tx", "r-h2")
            commands.trace_poll()
        return commands(request)

    path = str(tmp_path / "ctl.sock")
    with serving(Path(path), dispatch):
        yield path, router


def run(capsys: pytest.CaptureFixture[str], path: str, *args: str) -> tuple[int, str, str]:
    code = ctl.main(["--socket", path, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_routes_and_interfaces(live: tuple[str, FakeRouter],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = live
    code, out, _ = run(capsys, path, "show", "routes")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["Destination", "Gateway", "Netif", "Origin"]
    assert ["192.0.2.0/26", "link#r-h1", "r-h1", "connected"] in [ln.split() for ln in lines]
    code, out, _ = run(capsys, path, "show", "interfaces")
    assert "r-h1: ifindex 3 mtu 1500 ether 02:00:00:00:01:01" in out
    assert "\tinet6 2001:db8:1::1/64" in out


def test_show_stats_text_and_json(live: tuple[str, FakeRouter],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path, router = live
    router.stats.bump("ip.total", 7)
    code, out, _ = run(capsys, path, "show", "stats")
    assert code == 0 and "\nip:\n\t7 total packets received\n" in out
    code, out, _ = run(capsys, path, "show", "stats", "--json")
    assert json.loads(out)["counters"]["ip.total"] == 7


def test_sysctl_write_and_read(live: tuple[str, FakeRouter],
                               capsys: pytest.CaptureFixture[str]) -> None:
    path, router = live
    code, out, _ = run(capsys, path, "sysctl", "-w", "net.inet.ip.ttl=32")
    assert (code, out) == (0, "net.inet.ip.ttl: 64 -> 32\n")
    assert router.sysctl.get("net.inet.ip.ttl") == 32
    code, out, _ = run(capsys, path, "sysctl", "net.inet.ip.ttl")
    assert (code, out) == (0, "net.inet.ip.ttl: 32\n")
    code, out, err = run(capsys, path, "sysctl", "-w", "net.inet.ip.ttl=999")
    assert code == 1 and "out of range" in err
    code, _, err = run(capsys, path, "sysctl", "net.inet.ip.ttl=1")
    assert code == 2 and "sysctl -w" in err


def test_route_add_del(live: tuple[str, FakeRouter], capsys: pytest.CaptureFixture[str]) -> None:
    path, router = live
    code, out, _ = run(capsys, path, "route", "add", "203.0.113.0/24", "via", "198.51.100.2")
    assert (code, out) == (0, "add route 203.0.113.0/24: gateway 198.51.100.2\n")
    code, out, _ = run(capsys, path, "route", "add", "192.0.2.64/26", "blackhole")
    assert (code, out) == (0, "add route 192.0.2.64/26: blackhole\n")
    code, out, _ = run(capsys, path, "route", "del", "203.0.113.0/24")
    assert (code, out) == (0, "delete route 203.0.113.0/24\n")
    assert [str(r.prefix) for r in router.fib.routes()].count("203.0.113.0/24") == 0
    code, _, err = run(capsys, path, "route", "del", "203.0.113.0/24")
    assert code == 1 and "no route for 203.0.113.0/24" in err
    code, _, err = run(capsys, path, "route", "add", "203.0.113.0/24", "gateway", "x")
    assert code == 2 and "unexpected 'gateway'" in err


def test_trace_prints_stages(live: tuple[str, FakeRouter],
                             capsys: pytest.CaptureFixture[str]) -> None:
    path, router = live
    code, out, err = run(capsys, path, "trace", "-n", "2", "--wait", "10")
    assert code == 0, err
    assert out.count("packet ") == 2
    assert "rx        r-h1 98 bytes" in out and "tx        r-h2" in out
    assert out.count("(slow path)") == 2
    assert "tracing the next 2 packets received" in err
    assert not router.tracer.enabled


def test_trace_start_then_collect_with_a_filter(live: tuple[str, FakeRouter],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`vrlab trace` arms a router with --start --filter, and later collects the records."""
    path, router = live
    code, out, err = run(capsys, path, "trace", "--start", "-n", "5", "--filter",
                         "198.51.100.2,2001:db8:2::2")
    assert code == 0, err
    session = json.loads(out)["session"]
    assert router.tracer.enabled
    assert router.tracer.addresses == ["198.51.100.2", "2001:db8:2::2"]
    rec = router.tracer.begin(3, 2.0, bytes.fromhex(
        "020000000101" "020000000202" "0800" "4500001c00014000" "3f01" "0000"
        "c6336402" "c6336442" "0800f7fe" "0001" "0000"))
    rec.add("rx", "r-h1 42 bytes")
    code, out, err = run(capsys, path, "trace", "--collect", str(session), "--json")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) >= 1
    first = next(r for r in records if r["flow"])
    assert first["flow"]["src"] == "198.51.100.2" and first["flow"]["ttl"] == 63
    assert first["flow"]["icmp_type"] == 8 and first["path"] == "slow"
    assert not router.tracer.enabled and router.tracer.addresses == []  # collected = ended
    code, _, err = run(capsys, path, "trace", "--start", "--filter", "not-an-address")
    assert code == 1 and "not an IP address" in err


def test_no_daemon_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(tmp_path / "none.sock"), "show", "routes")
    assert code == 1
    assert "cannot connect" in err and "is vrlab-router running" in err


def test_trace_help_says_slow_path(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ctl.main(["trace", "--help"])
    assert "slow path" in capsys.readouterr().out
