"""The router's host duties (issue 10), with the C fast path and without: TCP resets from the
router's own addresses, RFC 7112 first fragments, reassembly timers from sysctls, and
interfaces taken and given back by `routerctl reload`."""

from __future__ import annotations

import json
import re
import time

import yaml

from netns import Line, host_offloads_off, wait_for

SCAPY = "from scapy.all import *; conf.verb = 0\n"


def scapy(line: Line, code: str, timeout: float = 30.0) -> str:
    """Run scapy `code` in h1; what it prints."""
    return line.h1.python(SCAPY + code, timeout=timeout).stdout.strip()


def test_syn_to_a_closed_port_gets_rst_v4_and_v6(line: Line) -> None:
    assert line.router is not None
    before = line.router.stats()
    out = scapy(line, f"""
for dst, ip in (("{Line.R_H1}", IP), ("{Line.R_H2}", IP), ("{Line.R_H1_6}", IPv6)):
    a = sr1(ip(dst=dst) / TCP(sport=40123, dport=22, flags="S", seq=1000), timeout=5)
    print(dst, a[TCP].sport, a[TCP].dport, a[TCP].flags, a[TCP].seq, a[TCP].ack
          if a is not None and TCP in a else None)
""")
    assert out.splitlines() == [
        f"{Line.R_H1} 22 40123 RA 0 1001",
        f"{Line.R_H2} 22 40123 RA 0 1001",  # the router's other address (weak host model)
        f"{Line.R_H1_6} 22 40123 RA 0 1001",
    ]
    after = line.router.stats()
    assert after["tcp.sndrst"] - before["tcp.sndrst"] == 3
    assert after.get("icmp.outhist.3", 0) == before.get("icmp.outhist.3", 0)  # no unreachable
    assert after.get("icmp6.outhist.1", 0) == before.get("icmp6.outhist.1", 0)
    # nc -z reads a refused connection (the reset) at once, both families
    for target in (Line.R_H1, Line.R_H1_6):
        started = time.monotonic()
        proc = line.h1.run(["nc", "-z", "-w", "5", target, "443"], check=False)
        assert proc.returncode == 1 and time.monotonic() - started < 4, proc.stderr


def test_a_reset_is_not_answered(line: Line) -> None:
    assert line.router is not None
    before = line.router.stats()
    out = scapy(line, f"""
a = sr1(IP(dst="{Line.R_H1}") / TCP(sport=40124, dport=22, flags="R", seq=5), timeout=2)
print(a)
""")
    assert out == "None"
    after = line.router.stats()
    assert after["tcp.noport"] - before["tcp.noport"] == 1
    assert after["tcp.sndrst"] == before["tcp.sndrst"]


def test_traceroute_tcp_lists_r_and_reaches_h2(line: Line) -> None:
    """traceroute -T: hop 1 is r (Time Exceeded), hop 2 is h2 (its kernel's reset); to r
    itself the router's own reset ends it at hop 1, without !P."""
    out = line.h1.run(["traceroute", "-T", "-n", "-q", "1", "-w", "3", "-m", "4", Line.H2],
                      timeout=60).stdout
    hops = re.findall(r"^\s*(\d+)\s+(\S+)", out, re.M)
    assert hops == [("1", Line.R_H1), ("2", Line.H2)], out
    out = line.h1.run(["traceroute", "-T", "-n", "-q", "1", "-w", "3", "-m", "4", Line.R_H2],
                      timeout=60).stdout
    assert re.findall(r"^\s*(\d+)\s+(\S+)", out, re.M) == [("1", Line.R_H2)], out
    assert "!" not in out.splitlines()[-1], out
    out = line.h1.run(["traceroute", "-6", "-T", "-n", "-q", "1", "-w", "3", "-m", "4",
                       Line.H2_6], timeout=60).stdout
    assert re.findall(r"^\s*(\d+)\s+(\S+)", out, re.M) == [("1", Line.R_H1_6),
                                                           ("2", Line.H2_6)], out


def test_rfc7112_first_fragment_without_the_header_chain(line: Line) -> None:
    """To r: Parameter Problem code 3, pointer 0. Through r to h2: forwarded untouched (h2's
    kernel gets it; r sends no error about it)."""
    assert line.router is not None
    before = line.router.stats()
    out = scapy(line, f"""
tcp = raw(TCP(sport=1, dport=2, flags="S"))[:8]
first = IPv6(dst="{Line.R_H1_6}") / IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=77) / tcp
got = sniff(iface="h1-r", timeout=5, count=1, lfilter=lambda p: ICMPv6ParamProblem in p,
            started_callback=lambda: send(first))
print(*((got[0][ICMPv6ParamProblem].code, got[0][ICMPv6ParamProblem].ptr) if got else ()))
""")
    assert out == "3 0"
    mid = line.router.stats()
    assert mid.get("icmp6.outhist.4", 0) - before.get("icmp6.outhist.4", 0) == 1
    scapy(line, f"""
tcp = raw(TCP(sport=1, dport=2, flags="S"))[:8]
send(IPv6(dst="{Line.H2_6}") / IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=78) / tcp)
""")
    assert wait_for(lambda: line.router is not None
                    and line.router.stats()["ip6.forward"] > mid["ip6.forward"], 5)
    assert line.router.stats().get("icmp6.outhist.4", 0) == mid.get("icmp6.outhist.4", 0)


def test_fragttl_set_by_sysctl_is_honoured(line: Line) -> None:
    """With net.inet.ip.fragttl 2 (default 30) a lone first fragment to r gets Time
    Exceeded code 1 after about 2 s; IPv6 likewise with net.inet6.ip6.fragttl."""
    assert line.router is not None
    ctl = line.router.ctl
    ctl("sysctl", "-w", "net.inet.ip.fragttl=2")
    ctl("sysctl", "-w", "net.inet6.ip6.fragttl=3")
    try:
        out = scapy(line, f"""
import time
for dst, first, kind in (
        ("{Line.R_H1}", IP(dst="{Line.R_H1}", id=4242, flags="MF") / ICMP() / (b"x" * 64),
         ICMP),
        ("{Line.R_H1_6}", IPv6(dst="{Line.R_H1_6}") / IPv6ExtHdrFragment(m=1, id=4243)
         / ICMPv6EchoRequest(data=b"x" * 64), ICMPv6TimeExceeded)):
    sent = time.monotonic()
    got = sniff(iface="h1-r", timeout=12, count=1,
                lfilter=lambda p: (ICMP in p and p[ICMP].type == 11)
                or ICMPv6TimeExceeded in p,
                started_callback=lambda: send(first))
    waited = time.monotonic() - sent
    code = got[0][ICMP].code if got and ICMP in got[0] else (
        got[0][ICMPv6TimeExceeded].code if got else None)
    print(dst, code, round(waited))
""", timeout=60)
    finally:
        ctl("sysctl", "-w", "net.inet.ip.fragttl=30")
        ctl("sysctl", "-w", "net.inet6.ip6.fragttl=60")
    rows = [row.split() for row in out.splitlines()]
    assert [(r[0], r[1]) for r in rows] == [(Line.R_H1, "1"), (Line.R_H1_6, "1")], out
    assert 1 <= int(rows[0][2]) <= 5 and 2 <= int(rows[1][2]) <= 6, out


def test_interface_added_then_removed_by_reload(fresh_line: Line) -> None:
    """A veth added to r's namespace, then to the config, forwards after `routerctl reload`
    (its ring opened, its routes in, the fast path using it); removed from the config, its
    routes are withdrawn and the kernel gets the interface back."""
    line = fresh_line
    router = line.start()
    lab, r = line.lab, line.r
    h3 = lab.namespace("h3")
    lab.veth(r, "r-h3", h3, "h3-r", a_mac="02:00:00:00:03:01", b_mac="02:00:00:00:03:02")
    host_offloads_off(h3, "h3-r")
    h3.add_address("h3-r", "203.0.113.130/26")
    h3.add_address("h3-r", "2001:db8:3::2/64")
    h3.add_route("0.0.0.0/0", "203.0.113.129")
    h3.add_route("::/0", "2001:db8:3::1")
    config = dict(router.config)
    config["interfaces"] = [*config["interfaces"],
                            {"name": "r-h3", "addresses": ["203.0.113.129/26",
                                                          "2001:db8:3::1/64"]}]
    router.config_path.write_text(yaml.safe_dump(config))
    out = router.ctl("reload").stdout
    assert "interface +r-h3" in out, out
    names = [i["name"] for i in json.loads(router.ctl("show", "interfaces", "--json").stdout)]
    assert "r-h3" in names
    for target in (Line.H1, Line.H1_6):
        proc = h3.run(["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", target], check=False)
        assert " 0% packet loss" in proc.stdout, (proc.stdout, router.log())
    if line.mode != "off":
        stats = router.stats()
        assert stats["ip.fastforward"] > 0
    routes = router.ctl("show", "routes").stdout
    assert re.search(r"^203\.0\.113\.128/26\s", routes, re.M), routes

    config["interfaces"] = config["interfaces"][:-1]
    router.config_path.write_text(yaml.safe_dump(config))
    out = router.ctl("reload").stdout
    assert "interface -r-h3" in out, out
    routes = router.ctl("show", "routes").stdout
    assert "203.0.113.128/26" not in routes and "2001:db8:3::" not in routes, routes
    proc = h3.run(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", Line.H1], check=False)
    assert proc.returncode != 0
    info = json.loads(r.run(["ip", "-j", "link", "show", "r-h3"]).stdout)[0]
    assert info.get("master") is None  # out of vrlab-detach: the kernel's again
    log = router.log()
    assert "reload applied" in log and "r-h3 removed: " in log
