"""The daemon's life: taking interfaces from the kernel, routerctl against the live router,
the trace, refusing bad input, and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from netns import (
    HAVE_C,
    MAC,
    MODE_ARGS,
    REPO,
    Lab,
    Line,
    Namespace,
    build_line,
    line_config,
    wait_for,
)


def ping_ok(line: Line, target: str, count: int = 2) -> bool:
    proc = line.h1.run(["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", target],
                       check=False)
    return proc.returncode == 0


# ---------------------------------------------------------------------------- routerctl


def test_show_interfaces(line: Line) -> None:
    assert line.router is not None
    data = json.loads(line.router.ctl("show", "interfaces", "--json").stdout)
    by_name = {i["name"]: i for i in data}
    assert set(by_name) == {"r-h1", "r-h2"}
    assert by_name["r-h1"]["mac"] == "02:00:00:00:01:01"
    assert by_name["r-h2"]["mtu"] == 1280
    assert "198.51.100.1/26" in by_name["r-h2"]["ipv4"]
    assert f"{Line.R_H1_LL}/64" in by_name["r-h1"]["ipv6"]
    text = line.router.ctl("show", "interfaces").stdout
    assert "r-h2: ifindex" in text and "mtu 1280" in text


def test_show_routes_and_neighbors(line: Line) -> None:
    assert line.router is not None
    routes = line.router.ctl("show", "routes").stdout
    assert re.search(r"^192\.0\.2\.0/26\s+link#r-h1\s+r-h1\s+connected$", routes, re.M), routes
    assert re.search(r"^203\.0\.113\.0/25\s+reject\s", routes, re.M), routes
    assert ping_ok(line, Line.H2) and ping_ok(line, Line.H2_6)
    neighbors = json.loads(line.router.ctl("show", "neighbors", "--json").stdout)
    seen = {(n["address"], n["interface"]): n for n in neighbors}
    h2 = seen[(Line.H2, "r-h2")]
    assert h2["mac"] == "02:00:00:00:02:02"
    assert h2["state"] in ("REACHABLE", "STALE", "DELAY", "PROBE")
    assert (Line.H2_6, "r-h2") in seen


def test_show_stats_text(line: Line) -> None:
    assert line.router is not None
    assert ping_ok(line, Line.H2)
    text = line.router.ctl("show", "stats").stdout
    assert re.search(r"^ip:$", text, re.M)
    m = re.search(r"^\t(\d+) packets forwarded \((\d+) packets? fast forwarded\)$", text, re.M)
    assert m, text
    assert int(m.group(1)) >= 4
    assert (int(m.group(2)) > 0) == (line.mode != "off")
    # The fast path's own group follows the netstat ones, with what it forwarded and kicked:
    # its forwards per family are the ip and ip6 groups' "fast forwarded".
    ip4, ip6 = (int(fast) for _, fast in re.findall(
        r"^\t(\d+) packets? forwarded \((\d+) packets? fast forwarded\)$", text, re.M))
    fast = re.search(r"^fastpath:$", text, re.M)
    assert bool(fast) == (line.mode != "off"), text
    if fast:
        m = re.search(r"^\t(\d+) forwarded IPv4, (\d+) forwarded IPv6$", text, re.M)
        assert m and (int(m.group(1)), int(m.group(2))) == (ip4, ip6), text
        kicks = re.search(r"^\t(\d+) TX kicks?$", text, re.M)
        assert kicks and int(kicks.group(1)) >= 1, text


def test_status(line: Line) -> None:
    assert line.router is not None
    status = json.loads(line.router.ctl("status", "--json").stdout)
    assert status["hostname"] == "r"
    assert status["pid"] == line.router.proc.pid
    assert status["fastpath"].startswith({"c": "C", "python": "Python", "off": "off"}[line.mode])


def test_sysctl_forwarding_off_and_on(line: Line) -> None:
    """The sysctl reaches the fast path too: with forwarding off nothing crosses."""
    assert line.router is not None
    ctl = line.router.ctl
    assert ping_ok(line, Line.H2)
    out = ctl("sysctl", "-w", "net.inet.ip.forwarding=0").stdout
    assert out == "net.inet.ip.forwarding: 1 -> 0\n"
    try:
        before = line.router.stats()["ip.cantforward"]
        assert not ping_ok(line, Line.H2)
        assert line.router.stats()["ip.cantforward"] > before
        assert ping_ok(line, Line.H2_6)  # IPv6 has its own knob
        assert ctl("sysctl", "net.inet.ip.forwarding").stdout == "net.inet.ip.forwarding: 0\n"
    finally:
        ctl("sysctl", "-w", "net.inet.ip.forwarding=1")
    assert ping_ok(line, Line.H2)


def test_sysctl_refuses_unknown_and_out_of_range(line: Line) -> None:
    assert line.router is not None
    proc = line.router.ctl("sysctl", "-w", "net.inet.ip.bogus=1", check=False)
    assert proc.returncode == 1 and "unknown sysctl" in proc.stderr
    proc = line.router.ctl("sysctl", "-w", "net.inet.ip.ttl=0", check=False)
    assert proc.returncode == 1 and "out of range" in proc.stderr
    assert line.router.ctl("sysctl", "net.inet.ip.ttl").stdout == "net.inet.ip.ttl: 64\n"


def test_route_blackhole_then_delete(line: Line) -> None:
    assert line.router is not None
    ctl = line.router.ctl
    assert ping_ok(line, Line.H2)
    assert ctl("route", "add", f"{Line.H2}/32", "blackhole").stdout == \
        f"add route {Line.H2}/32: blackhole\n"
    try:
        assert not ping_ok(line, Line.H2)
        assert ping_ok(line, Line.H2_6)
    finally:
        ctl("route", "del", f"{Line.H2}/32")
    assert ping_ok(line, Line.H2)


def test_route_add_via_gateway(line: Line) -> None:
    """A new prefix behind h2 becomes reachable once routed, and unreachable once deleted."""
    assert line.router is not None
    ctl = line.router.ctl
    line.h2.run(["ip", "addr", "add", "203.0.113.130/32", "dev", "lo"])
    try:
        assert not ping_ok(line, "203.0.113.130", count=1)
        ctl("route", "add", "203.0.113.128/25", "via", Line.H2)
        assert ping_ok(line, "203.0.113.130")
        routes = json.loads(ctl("show", "routes", "--json").stdout)
        assert {"prefix": "203.0.113.128/25", "type": "unicast", "gateway": Line.H2,
                "interface": "r-h2", "origin": "static"} in routes
        ctl("route", "del", "203.0.113.128/25")
        assert not ping_ok(line, "203.0.113.130", count=1)
    finally:
        line.h2.run(["ip", "addr", "del", "203.0.113.130/32", "dev", "lo"], check=False)
        line.router.ctl("route", "del", "203.0.113.128/25", check=False)


def test_route_errors(line: Line) -> None:
    assert line.router is not None
    proc = line.router.ctl("route", "add", "203.0.113.128/25", "via", "192.0.2.200/1",
                           check=False)
    assert proc.returncode == 1 and "bad gateway" in proc.stderr
    proc = line.router.ctl("route", "add", "203.0.113.128/25", "via", "203.0.113.1",
                           check=False)
    assert proc.returncode == 1 and "not on a connected subnet" in proc.stderr
    proc = line.router.ctl("route", "del", "203.0.113.128/26", check=False)
    assert proc.returncode == 1 and "no route" in proc.stderr


def test_trace_shows_stages(line: Line) -> None:
    """routerctl trace -n 3 while h1 pings h2: each packet's stages, times relative to rx."""
    assert line.router is not None
    assert ping_ok(line, Line.H2)  # neighbors resolved: the traced packets are plain forwards
    env = dict(os.environ, PYTHONPATH=str(REPO))
    tracer = subprocess.Popen(
        [sys.executable, "-m", "appliance.control.ctl", "--socket", str(line.router.socket),
         "trace", "-n", "3", "--wait", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(50):  # bounded: ping until the tracer has its two packets
            if tracer.poll() is not None:
                break
            line.h1.run(["ping", "-n", "-c", "1", "-W", "1", Line.H2], check=False)
        out, err = tracer.communicate(timeout=30)
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait(5)
    assert tracer.returncode == 0, err
    records = out.split("packet ")[1:]
    assert len(records) == 3, out
    for record in records:
        assert re.search(r"^\s+\+0\.0 us\s+rx\s", record, re.M), record
    # One of them may be an ARP or ND frame (a neighbor entry being refreshed just then); the
    # echo requests are forwards and show every stage.
    forwards = [r for r in records if re.search(r"^\s+\+\d+\.\d us\s+fib\s", r, re.M)]
    assert forwards, out
    for stage in ("verify", "fib", "ttl", "tx"):
        assert re.search(rf"^\s+\+\d+\.\d us\s+{stage}\s", forwards[0], re.M), (
            stage, forwards[0])
    # Tracing has ended: the fast path (if any) forwards again.
    if line.mode != "off":
        before = line.router.stats()["ip.fastforward"]
        assert ping_ok(line, Line.H2, count=3)
        assert line.router.stats()["ip.fastforward"] > before


def test_filtered_trace_keeps_the_fast_path(line: Line) -> None:
    """`routerctl trace --start --filter` (what `vrlab trace` does): the traced pings are still
    forwarded by the fast path (ip.fastforward moves), and their records say so with every
    stage; a TTL-1 ping is punted and traced by the slow path with the punt reason."""
    assert line.router is not None
    if line.mode == "off":
        pytest.skip("no fast path in this mode")
    assert ping_ok(line, Line.H2)  # neighbors resolved
    # A STALE neighbor sends one packet through the slow path (RFC 4861 §7.3.3), which a busy
    # machine's delays can cause: start once both of r's neighbors are REACHABLE.
    for _ in range(40):  # bounded: STALE -> DELAY -> PROBE -> REACHABLE takes ~5 s
        states = {n["address"]: str(n["state"]).upper() for n in
                  json.loads(line.router.ctl("show", "neighbors", "--json").stdout)}
        if states.get(Line.H1) == states.get(Line.H2) == "REACHABLE":
            break
        line.h1.run(["ping", "-n", "-c", "1", "-W", "1", Line.H2], check=False)
        time.sleep(0.25)
    else:
        raise AssertionError(f"r's neighbors never became REACHABLE: {states}")
    started = line.router.ctl("trace", "--start", "-n", "50", "--filter", Line.H2)
    session = json.loads(started.stdout)["session"]
    before = line.router.stats()["ip.fastforward"]
    assert ping_ok(line, Line.H2, count=3)
    line.h1.run(["ping", "-n", "-c", "1", "-W", "1", "-t", "1", Line.H2], check=False)
    after = line.router.stats()["ip.fastforward"]
    assert after - before >= 6  # 3 requests and 3 replies, fast-forwarded while traced
    out = line.router.ctl("trace", "--collect", str(session), "--json").stdout
    records = [json.loads(x) for x in out.splitlines()]
    fast = [r for r in records if r["path"] == "fast"]
    requests = [r for r in fast if r["flow"].get("icmp_type") == 8]
    assert len(requests) >= 3, records
    assert [s["stage"] for s in requests[0]["stages"]] == \
        ["rx", "verify", "fib", "neighbor", "ttl", "tx"]
    assert requests[0]["flow"]["dst"] == Line.H2 and requests[0]["interface"] == "r-h1"
    expired = [r for r in records if r["path"] == "slow" and r["flow"].get("ttl") == 1]
    assert expired, records
    stages = {s["stage"]: s["detail"] for s in expired[0]["stages"]}
    assert stages["punt"] == "ttl" and "type 11" in stages["icmp"]
    # nothing to or from other addresses was recorded
    assert all(Line.H2 in (r["flow"].get("src"), r["flow"].get("dst")) for r in records)


# ---------------------------------------------------------------------------- life cycle


def test_takes_interfaces_from_the_kernel(fresh_line: Line) -> None:
    """Kernel addresses, kernel IPv6 and kernel forwarding on r's interfaces before start are
    all gone once the daemon is ready (decision: remove, logged; see appliance/host/kernel.py)."""
    r = fresh_line.r
    r.add_address("r-h1", "192.0.2.1/26")
    r.add_address("r-h1", "2001:db8:1::1/64")
    r.sysctl("net.ipv4.conf.r-h1.forwarding", 1)
    r.sysctl("net.ipv6.conf.r-h2.forwarding", 1)
    router = fresh_line.start()
    assert r.run(["ip", "-o", "addr", "show", "dev", "r-h1"]).stdout.strip() == ""
    assert r.run(["ip", "-o", "addr", "show", "dev", "r-h2"]).stdout.strip() == ""
    for ifname in ("r-h1", "r-h2"):
        assert r.read_sysctl(f"net/ipv4/conf/{ifname}/forwarding") == "0"
        assert r.read_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6") == "1"
        assert r.read_sysctl(f"net/ipv4/conf/{ifname}/arp_ignore") == "8"
    assert "r-h1: removed kernel address 192.0.2.1/26" in router.log()
    # Only the appliance answers: one echo reply per request, from the router.
    out = fresh_line.h1.run(["ping", "-n", "-c", "2", "-W", "3", Line.R_H1]).stdout
    assert "DUP!" not in out and " 0% packet loss" in out
    assert router.stats()["icmp.outhist.0"] >= 2


def test_sigterm_cleans_up(fresh_line: Line) -> None:
    router = fresh_line.start()
    mode = os.stat(router.socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert router.stop() == 0
    assert not router.socket.exists()
    assert "stopping on signal" in router.log()
    # The namespace has no packet sockets left (the rings were closed).
    sockets = fresh_line.r.run(["cat", "/proc/net/packet"]).stdout.splitlines()
    assert len(sockets) == 1, sockets  # the header line only


def ip_in_receives(ns: Namespace) -> int:
    """The kernel's IPv4 input counter (Ip InReceives) in a namespace."""
    lines = [line.split() for line in ns.run(["cat", "/proc/net/snmp"]).stdout.splitlines()
             if line.startswith("Ip:")]
    return int(lines[1][lines[0].index("InReceives")])


def master_of(ns: Namespace, ifname: str) -> str | None:
    info = json.loads(ns.run(["ip", "-j", "link", "show", ifname]).stdout)[0]
    return info.get("master")


def test_kernel_receive_path_detached_then_given_back(fresh_line: Line) -> None:
    """While the router runs, its interfaces are ports of the down bridge vrlab-detach: the
    kernel's IP input in r sees none of the forwarded packets (its counter stays put while
    pings go through), and after SIGTERM the bridge is gone and the interfaces are free."""
    router = fresh_line.start()
    r = fresh_line.r
    assert master_of(r, "r-h1") == master_of(r, "r-h2") == "vrlab-detach"
    bridge = json.loads(r.run(["ip", "-j", "link", "show", "vrlab-detach"]).stdout)[0]
    assert "UP" not in bridge["flags"]
    assert "kernel receive path detached" in router.log()
    before = ip_in_receives(r)
    assert ping_ok(fresh_line, Line.H2, count=5)
    assert ip_in_receives(r) == before
    assert router.stop() == 0
    assert master_of(r, "r-h1") is None and master_of(r, "r-h2") is None
    links = r.run(["ip", "link", "show"]).stdout
    assert "vrlab-detach" not in links


def test_sigint_cleans_up(fresh_line: Line) -> None:
    router = fresh_line.start()
    router.proc.send_signal(signal.SIGINT)
    assert router.proc.wait(10) == 0
    assert not router.socket.exists()


def test_refuses_missing_interface(fresh_line: Line) -> None:
    config = line_config(interfaces=[
        {"name": "r-h1", "addresses": ["192.0.2.1/26"]},
        {"name": "r-nope", "addresses": ["198.51.100.1/26"]},
    ])
    with pytest.raises(AssertionError, match="r-nope: no such interface"):
        fresh_line.lab.start_router(fresh_line.r, config, MODE_ARGS[fresh_line.mode])
    assert not list(fresh_line.lab.workdir.glob("*.sock"))
    # Nothing was changed on the interface that does exist (the check comes first).
    assert fresh_line.r.read_sysctl("net/ipv6/conf/r-h1/disable_ipv6") == "0"


def test_refuses_bad_config(fresh_line: Line) -> None:
    config = line_config(sysctl={"net.inet.ip.nonsense": 1})
    with pytest.raises(AssertionError, match=r"sysctl\['net\.inet\.ip\.nonsense'\]"):
        fresh_line.lab.start_router(fresh_line.r, config, MODE_ARGS[fresh_line.mode])


def test_ready_only_when_socket_answers(fresh_line: Line) -> None:
    """The readiness line comes after the control socket exists and answers."""
    started = time.monotonic()
    router = fresh_line.start()
    assert router.stdout_lines[-1] == "vrlab-router: ready"
    assert router.socket.exists()
    assert json.loads(router.ctl("status", "--json").stdout)["uptime"] <= \
        time.monotonic() - started + 1


@pytest.mark.skipif(not HAVE_C, reason="without the C extension MODES already runs the twin")
def test_python_twin_forwards(lab: Lab) -> None:
    """--fastpath python: the pure-Python twin walks the same rings and fast-forwards."""
    line = build_line(lab, "python")
    assert line.router is not None
    assert ping_ok(line, Line.H2) and ping_ok(line, Line.H2_6)
    before = line.router.stats()
    assert ping_ok(line, Line.H2, count=3)
    assert line.router.stats()["ip.fastforward"] - before["ip.fastforward"] >= 6
    status = json.loads(line.router.ctl("status", "--json").stdout)
    assert status["fastpath"].startswith("Python twin")


def test_warns_when_kernel_takes_an_interface_back(fresh_line: Line) -> None:
    router = fresh_line.lab.start_router(fresh_line.r, line_config(),
                                         [*MODE_ARGS[fresh_line.mode], "--kernel-check", "0.5"])
    fresh_line.r.add_address("r-h2", "198.51.100.1/26")
    try:
        assert wait_for(lambda: "the kernel still has address 198.51.100.1/26" in router.log(),
                        timeout=10), router.log()
        assert "WARNING" in router.log()
    finally:
        fresh_line.r.run(["ip", "addr", "del", "198.51.100.1/26", "dev", "r-h2"], check=False)
    assert wait_for(lambda: "no longer owns any data interface" in router.log(), timeout=10)


def test_waits_for_late_interfaces(lab: Lab) -> None:
    """--wait-interfaces: an interface that appears after start (udev naming NICs at boot)."""
    h1, r, h2 = lab.namespace("h1"), lab.namespace("r"), lab.namespace("h2")
    lab.veth(h1, "h1-r", r, "r-h1", a_mac=MAC["h1-r"], b_mac=MAC["r-h1"])
    h1.add_address("h1-r", "192.0.2.2/26")
    h1.add_route("0.0.0.0/0", Line.R_H1)

    log = lab.workdir / f"{r.name}.log"  # where RouterProcess sends the daemon's stderr

    def late_link() -> None:
        # Only once the daemon says it is waiting (its start-up takes a while under load).
        wait_for(lambda: log.exists() and "waiting up to" in log.read_text(), timeout=20)
        lab.veth(r, "r-h2", h2, "h2-r", a_mac=MAC["r-h2"], b_mac=MAC["h2-r"])
        h2.add_address("h2-r", "198.51.100.2/26")
        h2.add_route("0.0.0.0/0", Line.R_H2)

    thread = threading.Thread(target=late_link)
    thread.start()
    try:
        router = lab.start_router(r, line_config(), ["--no-fastpath", "--wait-interfaces", "20"])
    finally:
        thread.join(20)
    assert "waiting up to 20s for r-h2" in router.log()
    proc = h1.run(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "3", Line.H2])
    assert " 0% packet loss" in proc.stdout


def test_second_daemon_on_the_same_socket_refuses(line: Line) -> None:
    """A second vrlab-router pointed at a live daemon's socket exits before touching anything,
    and the first keeps routing."""
    assert line.router is not None
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        line.r.argv([sys.executable, "-m", "appliance.host.daemon", "--config",
                     str(line.router.config_path), "--control", str(line.router.socket)]),
        capture_output=True, text=True, timeout=30, env=env, cwd=str(REPO))
    assert proc.returncode == 1
    assert "already answering" in proc.stderr
    assert "ready" not in proc.stdout
    assert line.router.socket.exists()
    assert ping_ok(line, Line.H2)


def test_busy_poll_forwards_in_the_fast_path(fresh_line: Line) -> None:
    """--busy-poll: serve() keeps walking the rings that long after the last frame before it
    sleeps; frames still go through the fast path and the daemon still answers."""
    router = fresh_line.lab.start_router(fresh_line.r, line_config(),
                                         [*MODE_ARGS[fresh_line.mode], "--busy-poll", "500"])
    assert ping_ok(fresh_line, Line.H2, count=4) and ping_ok(fresh_line, Line.H2_6, count=4)
    stats = router.stats()
    assert stats["ip.forward"] >= 8 and stats["ip6.forward"] >= 8
    assert (stats["ip.fastforward"] >= 6) == (fresh_line.mode != "off")
    status = json.loads(router.ctl("status", "--json").stdout)  # answered while spinning
    assert status["hostname"] == "r"
