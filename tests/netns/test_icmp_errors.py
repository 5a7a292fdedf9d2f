"""ICMP and ICMPv6 errors from vrlab-router as real host tools see them: traceroute,
tracepath across the 1280-byte link, Frag Needed / Packet Too Big, unreachables."""

from __future__ import annotations

import re

import pytest

from netns import Line


def flush_pmtu(line: Line) -> None:
    """Forget h1's cached path MTUs so the next probe needs the router's ICMP again."""
    line.h1.run(["ip", "route", "flush", "cache"])
    line.h1.run(["ip", "-6", "route", "flush", "cache"])


def hops(output: str) -> dict[int, str]:
    """traceroute output as {hop: address} ('*' when no answer)."""
    found = {}
    for text in output.splitlines()[1:]:
        m = re.match(r"\s*(\d+)\s+(\S+)", text)
        if m:
            found[int(m.group(1))] = m.group(2)
    return found


def test_traceroute(line: Line) -> None:
    out = line.h1.run(["traceroute", "-n", "-q", "1", "-w", "3", "-m", "5", Line.H2]).stdout
    assert hops(out) == {1: Line.R_H1, 2: Line.H2}, out


def test_traceroute6(line: Line) -> None:
    out = line.h1.run(["traceroute6", "-n", "-q", "1", "-w", "3", "-m", "5", Line.H2_6]).stdout
    assert hops(out) == {1: Line.R_H1_6, 2: Line.H2_6}, out


@pytest.mark.parametrize("family", ["4", "6"])
def test_tracepath_finds_pmtu_1280(line: Line, family: str) -> None:
    assert line.router is not None
    flush_pmtu(line)
    before = line.router.stats()
    target = Line.H2 if family == "4" else Line.H2_6
    out = line.h1.run(["tracepath", f"-{family}", "-n", "-m", "5", target], timeout=60).stdout
    assert re.search(r"pmtu 1280", out), out
    assert re.search(r"Resume: pmtu 1280 hops 2", out), out
    after = line.router.stats()
    key = "icmp.outhist.3" if family == "4" else "icmp6.outhist.2"
    assert after[key] > before.get(key, 0)


def test_ping_df_gets_frag_needed(line: Line) -> None:
    assert line.router is not None
    flush_pmtu(line)
    before = line.router.stats()
    proc = line.h1.run(["ping", "-n", "-c", "2", "-i", "0.3", "-W", "2", "-M", "do",
                        "-s", "1400", Line.H2], check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert re.search(rf"From {re.escape(Line.R_H1)} .*Frag needed and DF set \(mtu = 1280\)",
                     out), out
    after = line.router.stats()
    assert after["ip.cantfrag"] > before["ip.cantfrag"]
    # The kernel learned the path MTU from the router's message.
    route = line.h1.run(["ip", "route", "get", Line.H2]).stdout
    assert "mtu 1280" in route, route


def test_ping6_gets_packet_too_big(line: Line) -> None:
    assert line.router is not None
    flush_pmtu(line)
    before = line.router.stats()
    proc = line.h1.run(["ping", "-6", "-n", "-c", "2", "-i", "0.3", "-W", "2", "-M", "do",
                        "-s", "1400", Line.H2_6], check=False)
    out = proc.stdout + proc.stderr
    assert re.search(rf"From {re.escape(Line.R_H1_6)} .*Packet too big: mtu=1280", out), out
    after = line.router.stats()
    assert after["icmp6.outhist.2"] > before.get("icmp6.outhist.2", 0)
    route = line.h1.run(["ip", "-6", "route", "get", Line.H2_6]).stdout
    assert "mtu 1280" in route, route


def test_ttl_exceeded(line: Line) -> None:
    proc = line.h1.run(["ping", "-n", "-c", "1", "-W", "2", "-t", "1", Line.H2], check=False)
    assert re.search(rf"From {re.escape(Line.R_H1)} .*Time to live exceeded", proc.stdout), \
        proc.stdout


@pytest.mark.parametrize(("target", "message", "counter"), [
    ("203.0.113.200", "Destination Net Unreachable", "ip.noroute"),
    ("203.0.113.5", "Packet filtered", "icmp.outhist.3"),  # the reject route: admin-prohibited
    ("2001:db8:99::1", "Destination unreachable: No route", "icmp6.outhist.1"),
])
def test_unreachable(line: Line, target: str, message: str, counter: str) -> None:
    assert line.router is not None
    before = line.router.stats()
    proc = line.h1.run(["ping", "-n", "-c", "1", "-W", "2", target], check=False)
    assert proc.returncode != 0
    source = Line.R_H1_6 if ":" in target else Line.R_H1
    assert re.search(rf"From {re.escape(source)} .*{message}", proc.stdout), proc.stdout
    assert line.router.stats()[counter] > before.get(counter, 0)


_UDP_PROBE = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((sys.argv[1], 33434))
s.send(b"probe")
try:
    s.recv(100)
    print("answered")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
"""


@pytest.mark.parametrize("target", [Line.R_H1, Line.R_H2, Line.R_H1_6])
def test_closed_udp_port_on_router_is_refused(line: Line, target: str) -> None:
    """A UDP datagram to the router's own address gets Port Unreachable (RFC 1812 §4.3.3.1),
    which the sender's kernel turns into ECONNREFUSED."""
    out = line.h1.run(["python3", "-c", _UDP_PROBE, target]).stdout.strip()
    assert out == "refused"


def test_traceroute_udp_to_router_is_one_hop(line: Line) -> None:
    """The router's far address answers at hop 1 with Port Unreachable, whose source is the
    inbound interface's address (RFC 1812 §4.3.2.4, DESIGN.md), so that is what is shown."""
    out = line.h1.run(["traceroute", "-U", "-n", "-q", "1", "-w", "3", "-m", "5",
                       Line.R_H2]).stdout
    assert hops(out) == {1: Line.R_H1}, out
