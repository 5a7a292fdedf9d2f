"""The daemon follows link state (rtnetlink) and reloads its configuration on SIGHUP.

h1 -- r -- h2 (the `line` topology, built per test and per fast-path mode): h2's side of the
r--h2 veth is set down and up again, and the router's configuration file is rewritten and
re-read with SIGHUP while pings cross the router.
"""

from __future__ import annotations

import json
import re
import signal
from typing import Any

import yaml

from netns import Line, RouterProcess, line_config, wait_for


def ping(line: Line, target: str, count: int = 2) -> tuple[bool, str]:
    proc = line.h1.run(["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", target],
                       check=False)
    return proc.returncode == 0, proc.stdout + proc.stderr


def interface(router: RouterProcess, name: str) -> dict[str, Any]:
    data = json.loads(router.ctl("show", "interfaces", "--json").stdout)
    return next(i for i in data if i["name"] == name)


def routes(router: RouterProcess) -> dict[str, dict[str, Any]]:
    return {r["prefix"]: r for r in json.loads(router.ctl("show", "routes", "--json").stdout)}


def restore_h2(line: Line) -> None:
    """What Linux took from h2 when its link went administratively down: the IPv6 address
    (keep_addr_on_down is off) and the default routes through the dead link."""
    h2 = line.h2
    h2.run(["ip", "-6", "addr", "replace", "2001:db8:2::2/64", "dev", "h2-r", "nodad"])
    h2.run(["ip", "route", "replace", "default", "via", Line.R_H2])
    h2.run(["ip", "-6", "route", "replace", "default", "via", Line.R_H2_6])


# ---------------------------------------------------------------------------- link state


def test_link_down_withdraws_routes_and_link_up_restores_them(fresh_line: Line) -> None:
    router = fresh_line.start()
    assert ping(fresh_line, Line.H2)[0] and ping(fresh_line, Line.H2_6)[0]
    assert interface(router, "r-h2")["state"] == "up"

    # A packet waiting on an unresolved neighbor out of r-h2 (nobody has 198.51.100.50).
    dropped_before = router.stats()["arp.dropped"]
    pinger = fresh_line.h1.popen(["ping", "-n", "-c", "1", "-W", "1", "198.51.100.50"])
    try:
        assert wait_for(lambda: any(
            n["address"] == "198.51.100.50" and n["queued"] == 1
            for n in json.loads(router.ctl("show", "neighbors", "--json").stdout)),
            timeout=2, interval=0.05)
        fresh_line.h2.run(["ip", "link", "set", "h2-r", "down"])
    finally:
        pinger.wait(10)
    assert wait_for(lambda: interface(router, "r-h2")["state"] == "down", timeout=10), \
        router.log()
    assert re.search(r"r-h2: link down \(admin up, carrier off, operstate \w+\): \d+ routes "
                     r"withdrawn, [1-9]\d* neighbors flushed, 1 queued packets dropped",
                     router.log()), router.log()
    assert router.stats()["arp.dropped"] == dropped_before + 1
    table = routes(router)
    assert table["198.51.100.0/26"].get("linkdown") is True
    assert table["2001:db8:2::/64"].get("linkdown") is True
    assert table["192.0.2.0/26"].get("linkdown") is None
    text = router.ctl("show", "routes").stdout
    assert re.search(r"^198\.51\.100\.0/26\s+link#r-h2\s+r-h2\s+connected\s+linkdown$", text,
                     re.M), text
    assert "status: down" in router.ctl("show", "interfaces").stdout
    assert json.loads(router.ctl("status", "--json").stdout)["links_down"] == ["r-h2"]
    neighbors = json.loads(router.ctl("show", "neighbors", "--json").stdout)
    assert not [n for n in neighbors if n["interface"] == "r-h2"], neighbors

    before = router.stats()
    ok, out = ping(fresh_line, Line.H2)
    assert not ok and "Destination Net Unreachable" in out, out
    ok6, out6 = ping(fresh_line, Line.H2_6)
    assert not ok6 and "No route" in out6, out6
    after = router.stats()
    assert after["ip.noroute"] - before["ip.noroute"] >= 2
    assert after["ip6.noroute"] - before["ip6.noroute"] >= 2
    assert after["ip.forward"] == before["ip.forward"]
    assert after["ip6.forward"] == before["ip6.forward"]
    # The router's own address on the dead link still answers (weak host model).
    assert ping(fresh_line, Line.R_H2)[0]

    fresh_line.h2.run(["ip", "link", "set", "h2-r", "up"])
    restore_h2(fresh_line)
    assert wait_for(lambda: interface(router, "r-h2")["state"] == "up", timeout=10), \
        router.log()
    assert re.search(r"r-h2: link up \(admin up, carrier on, operstate \w+\): \d+ routes "
                     r"restored, \d+ announcements sent", router.log()), router.log()
    assert interface(router, "r-h2")["link_changes"] == 2
    assert all(not r.get("linkdown") for r in routes(router).values())
    assert wait_for(lambda: ping(fresh_line, Line.H2, count=1)[0], timeout=15)
    assert wait_for(lambda: ping(fresh_line, Line.H2_6, count=1)[0], timeout=15)
    after_up = router.stats()
    assert after_up["arp.txannounce"] > after["arp.txannounce"]
    assert after_up["nd.txna"] > after["nd.txna"]
    if fresh_line.mode != "off":  # the fast path forwards out of the link again
        assert ping(fresh_line, Line.H2, count=3)[0]
        assert router.stats()["ip.fastforward"] > after_up["ip.fastforward"]


def test_router_side_admin_down_and_up(fresh_line: Line) -> None:
    """The router's own interface set down by hand: same withdrawal, and once it is up again
    its rings carry traffic again (the kernel re-hooks the packet sockets)."""
    router = fresh_line.start()
    assert ping(fresh_line, Line.H2)[0]
    fresh_line.r.run(["ip", "link", "set", "r-h2", "down"])
    assert wait_for(lambda: interface(router, "r-h2")["state"] == "down", timeout=10)
    assert "r-h2: link down (admin down" in router.log()
    assert not ping(fresh_line, Line.H2, count=1)[0]
    fresh_line.r.run(["ip", "link", "set", "r-h2", "up"])
    assert wait_for(lambda: interface(router, "r-h2")["state"] == "up", timeout=10)
    assert wait_for(lambda: ping(fresh_line, Line.H2, count=1)[0], timeout=15), router.log()
    assert router.proc.poll() is None


# ---------------------------------------------------------------------------- SIGHUP


def reload(router: RouterProcess, config: dict[str, Any] | str) -> str:
    """Write `config` (a dict, or raw text) over the daemon's file, SIGHUP it, and return the
    log lines the reload wrote once it has finished."""
    start = len(router.log())
    text = config if isinstance(config, str) else yaml.safe_dump(config)
    router.config_path.write_text(text)
    router.proc.send_signal(signal.SIGHUP)
    finished = re.compile(r"^vrlab-router: reload (applied|refused)", re.M)
    assert wait_for(lambda: bool(finished.search(router.log()[start:])), timeout=10), \
        router.log()
    return router.log()[start:]


def test_reload_applies_routes_sysctl_addresses_and_neighbors(fresh_line: Line) -> None:
    router = fresh_line.start()
    fresh_line.h2.run(["ip", "addr", "add", "203.0.113.130/32", "dev", "lo"])
    assert not ping(fresh_line, "203.0.113.130", count=1)[0]
    assert not ping(fresh_line, "192.0.2.65", count=1)[0]
    assert "ttl=64" in ping(fresh_line, Line.R_H1, count=1)[1]

    config = line_config()
    config["interfaces"][0]["addresses"].append("192.0.2.65/26")
    config["routes"] = [{"prefix": "203.0.113.128/25", "via": Line.H2}]  # reject route gone
    config["sysctl"] = {"net.inet.ip.ttl": 33}
    config["neighbors"] = [{"address": "198.51.100.9", "mac": "02:00:00:00:09:09",
                            "interface": "r-h2"}]
    out = reload(router, config)
    summary = re.search(r"^vrlab-router: reload applied \(\S+\): (.*)$", out, re.M)
    assert summary, out
    for item in ("route -203.0.113.0/25 reject", f"route +203.0.113.128/25 via {Line.H2}",
                 "sysctl net.inet.ip.ttl 64 -> 33", "address +192.0.2.65/26 on r-h1",
                 "neighbor +198.51.100.9 on r-h2"):
        assert item in summary.group(1), summary.group(1)

    table = routes(router)
    assert table["203.0.113.128/25"]["gateway"] == Line.H2
    assert "203.0.113.0/25" not in table
    assert table["192.0.2.64/26"]["origin"] == "connected"
    assert router.ctl("sysctl", "net.inet.ip.ttl").stdout == "net.inet.ip.ttl: 33\n"
    assert "192.0.2.65/26" in interface(router, "r-h1")["ipv4"]
    neighbors = json.loads(router.ctl("show", "neighbors", "--json").stdout)
    assert {"address": "198.51.100.9", "state": "PERMANENT", "mac": "02:00:00:00:09:09"} \
        .items() <= next(n for n in neighbors if n["address"] == "198.51.100.9").items()
    # Traffic follows: the new route carries pings, the new address answers, with TTL 33.
    assert wait_for(lambda: ping(fresh_line, "203.0.113.130", count=1)[0], timeout=10)
    ok, out = ping(fresh_line, "192.0.2.65", count=1)
    assert ok and "ttl=33" in out, out
    assert router.proc.poll() is None

    # Reloading the same file again changes nothing.
    assert "): no changes" in reload(router, config)


def test_reload_refuses_broken_and_restart_needing_configs(fresh_line: Line) -> None:
    router = fresh_line.start()
    before = routes(router)
    assert before["203.0.113.0/25"]["type"] == "reject"

    broken = yaml.safe_dump(line_config(
        routes=[{"prefix": "203.0.113.128/25", "via": "198.51.100.300"}],
        sysctl={"net.inet.ip.ttl": 0}))
    out = reload(router, broken)
    path = re.escape(str(router.config_path))
    assert re.search(rf"reload: {path}:\d+:\d+: routes\[0\]\.via: ", out), out
    assert re.search(rf"reload: {path}:\d+:\d+: sysctl\['net\.inet\.ip\.ttl'\]: ", out), out
    assert "reload refused: 2 problem(s)" in out
    assert router.proc.poll() is None
    assert routes(router) == before
    assert router.ctl("sysctl", "net.inet.ip.ttl").stdout == "net.inet.ip.ttl: 64\n"
    assert ping(fresh_line, Line.H2)[0]

    # Well-formed but impossible here: a gateway on no connected subnet.
    out = reload(router, line_config(routes=[{"prefix": "203.0.113.128/25",
                                              "via": "203.0.113.1"}]))
    assert "not on a connected subnet" in out and "reload refused" in out, out
    assert routes(router) == before

    # An MTU change needs a restart: said so, nothing changed.
    config = line_config(sysctl={"net.inet.ip.ttl": 40})
    config["interfaces"][1]["mtu"] = 1400
    out = reload(router, config)
    assert "r-h2: mtu 1280 -> 1400: restart needed" in out, out
    assert "reload refused: restart needed" in out
    assert interface(router, "r-h2")["mtu"] == 1280
    assert router.ctl("sysctl", "net.inet.ip.ttl").stdout == "net.inet.ip.ttl: 64\n"
    assert ping(fresh_line, Line.H2)[0] and router.proc.poll() is None

    # routerctl reload does what SIGHUP does and says so: refused (exit 1) ...
    proc = router.ctl("reload", check=False)
    assert proc.returncode == 1 and "reload refused: restart needed" in proc.stderr, proc
    assert "r-h2: mtu 1280 -> 1400: restart needed" in proc.stderr
    # ... or applied (exit 0, the summary on stdout).
    router.config_path.write_text(yaml.safe_dump(line_config(sysctl={"net.inet.ip.ttl": 40})))
    proc = router.ctl("reload")
    assert proc.stdout.startswith("reload applied (") and \
        "sysctl net.inet.ip.ttl 64 -> 40" in proc.stdout, proc.stdout
    assert router.ctl("sysctl", "net.inet.ip.ttl").stdout == "net.inet.ip.ttl: 40\n"

