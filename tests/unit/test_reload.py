"""appliance.control.reload: the difference between two router configurations, applied in place, and
the configurations it refuses (problems, or a restart needed) without touching the router."""

from __future__ import annotations

import copy
from ipaddress import ip_address
from typing import Any

import pytest
from scapy.all import ARP, Ether  # type: ignore[attr-defined]

from appliance.config import RouterConfig, parse_router_config
from appliance.control.reload import ReloadRefused, apply_reload, plan_reload
from appliance.control.server import ControlCommands, ControlError
from appliance.core.router import LinkInfo, Router

from routerkit import ROUTER_YAML, Clock, make_router, transmits


def config(**changes: Any) -> RouterConfig:
    data = copy.deepcopy(ROUTER_YAML)
    data.update(changes)
    return parse_router_config(data, "test")


def prefixes(router: Router) -> set[str]:
    return {str(r.prefix) for r in router.fib.routes()}


def state(router: Router) -> tuple[Any, ...]:
    return (sorted(prefixes(router)), sorted(router.sysctl.items()),
            [(i.name, list(i.ipv4), list(i.ipv6)) for i in router.interfaces.values()],
            sorted((e.ifindex, e.addr) for e in router.neighbors.entries()), router.hostname)


def test_nothing_changed(router: Router, clock: Clock) -> None:
    plan = plan_reload(router, router.config, config())
    assert plan.empty
    result = apply_reload(router, plan, clock.now)
    assert result.summary() == "no changes" and result.actions == []


def test_routes_sysctl_neighbors_hostname_applied(router: Router, clock: Clock) -> None:
    routes = [r for r in ROUTER_YAML["routes"] if r["prefix"] != "192.0.2.192/26"]  # blackhole
    routes[0] = {"prefix": "192.0.2.0/25", "via": "203.0.113.2"}  # moved to the other side
    routes.append({"prefix": "192.0.2.192/27", "via": "198.51.100.3"})
    new = config(hostname="r9", routes=routes,
                 sysctl={"net.inet.ip.ttl": 33, "net.inet.ip.redirect": 0},
                 neighbors=[{"address": "203.0.113.9", "mac": "02:00:00:00:00:09",
                             "interface": "r1-b"}])
    plan = plan_reload(router, router.config, new)
    assert [str(r.prefix) for r in plan.routes_removed] == ["192.0.2.0/25", "192.0.2.192/26"]
    assert [str(r.prefix) for r in plan.routes_added] == ["192.0.2.0/25", "192.0.2.192/27"]
    assert plan.sysctl == {"net.inet.ip.redirect": 0, "net.inet.ip.ttl": 33}
    generation = router.generation
    result = apply_reload(router, plan, clock.now)

    route = router.fib.get("192.0.2.0/25")
    assert route is not None and route.gateway == ip_address("203.0.113.2") and route.ifindex == 2
    assert router.fib.get("192.0.2.192/26") is None
    assert router.fib.get("192.0.2.192/27") is not None
    assert router.sysctl.get("net.inet.ip.ttl") == 33
    assert router.sysctl.get("net.inet.ip.redirect") == 0
    entry = router.neighbors.lookup(2, ip_address("203.0.113.9").packed)
    assert entry is not None and entry.permanent
    assert router.hostname == "r9" and router.config is new
    assert router.generation > generation
    summary = result.summary()
    for item in ("route -192.0.2.0/25 via 198.51.100.2", "route +192.0.2.0/25 via 203.0.113.2",
                 "route -192.0.2.192/26 blackhole", "sysctl net.inet.ip.ttl 64 -> 33",
                 "neighbor +203.0.113.9 on r1-b", "hostname r1 -> r9"):
        assert item in summary, summary

    # Back to the first file: a knob the file no longer sets returns to its default, the
    # static neighbor goes.
    result = apply_reload(router, plan_reload(router, new, config()), clock.now)
    assert router.sysctl.get("net.inet.ip.ttl") == 64
    assert router.neighbors.lookup(2, ip_address("203.0.113.9").packed) is None
    assert router.fib.get("192.0.2.0/25").gateway == ip_address("198.51.100.2")  # type: ignore[union-attr]
    assert "neighbor -203.0.113.9 on r1-b" in result.summary()


def test_a_knob_set_by_hand_survives_a_reload_that_does_not_touch_it(router: Router,
                                                                     clock: Clock) -> None:
    router.sysctl.set("net.inet.icmp.icmplim", 5)
    apply_reload(router, plan_reload(router, router.config,
                                     config(sysctl={"net.inet.ip.ttl": 10})), clock.now)
    assert router.sysctl.get("net.inet.icmp.icmplim") == 5
    assert router.sysctl.get("net.inet.ip.ttl") == 10


def test_addresses_added_and_removed(clock: Clock) -> None:
    router = make_router(routes=[])
    old = router.config
    interfaces = copy.deepcopy(ROUTER_YAML["interfaces"])
    interfaces[0]["addresses"] = ["198.51.100.1/24", "192.0.2.1/25"]  # 2001:db8:1::1 goes
    new = config(interfaces=interfaces, routes=[{"prefix": "0.0.0.0/0", "via": "192.0.2.2"}])
    result = apply_reload(router, plan_reload(router, old, new), clock.now)
    assert {"192.0.2.0/25", "192.0.2.1/32", "0.0.0.0/0"} <= prefixes(router)
    assert not {"2001:db8:1::/64", "2001:db8:1::1/128"} & prefixes(router)
    garp = [Ether(t.frame) for t in transmits(result.actions, 1)]
    assert [f[ARP].psrc for f in garp] == ["192.0.2.1"]
    assert "address +192.0.2.1/25 on r1-a" in result.summary()
    assert "address -2001:db8:1::1/64 on r1-a" in result.summary()


def test_problems_refuse_the_whole_reload(router: Router, clock: Clock) -> None:
    before = state(router)
    interfaces = copy.deepcopy(ROUTER_YAML["interfaces"])
    interfaces[0]["addresses"] = ["2001:db8:1::1/64"]  # 198.51.100.1 goes ...
    new = config(interfaces=interfaces, sysctl={"net.inet.ip.ttl": 9},  # ... gw is stranded
                 routes=[*ROUTER_YAML["routes"], {"prefix": "203.0.113.128/25",
                                                   "via": "192.0.2.77"}])
    with pytest.raises(ReloadRefused) as info:
        plan_reload(router, router.config, new)
    assert not info.value.restart
    text = "\n".join(info.value.problems)
    assert "192.0.2.0/25: gateway 198.51.100.2 is not on a connected subnet" in text
    assert "203.0.113.128/25: gateway 192.0.2.77 is not on a connected subnet" in text
    assert state(router) == before


@pytest.mark.parametrize("change, message", [
    ("mtu", "interface r1-a: mtu default -> 1400: restart needed"),
    ("link_local", "interface r1-b: link_local EUI-64 -> fe80::1: restart needed"),
])
def test_restart_needed(router: Router, change: str, message: str) -> None:
    interfaces = copy.deepcopy(ROUTER_YAML["interfaces"])
    if change == "mtu":
        interfaces[0]["mtu"] = 1400
    else:
        interfaces[1]["link_local"] = "fe80::1"
    routes = [r for r in ROUTER_YAML["routes"] if "%" not in str(r.get("via"))]
    before = state(router)
    with pytest.raises(ReloadRefused) as info:
        plan_reload(router, router.config, config(interfaces=interfaces, routes=routes))
    assert info.value.restart and len(info.value.problems) == 1
    assert info.value.problems[0].startswith(message), info.value.problems
    assert state(router) == before


def test_reload_while_a_link_is_down(router: Router, clock: Clock) -> None:
    router.set_link(1, False, clock.now)
    routes = [*ROUTER_YAML["routes"], {"prefix": "203.0.113.128/25", "via": "198.51.100.3"}]
    apply_reload(router, plan_reload(router, router.config, config(routes=routes)), clock.now)
    assert "203.0.113.128/25" in {str(r.prefix) for r in router.linkdown_routes()}
    router.set_link(1, True, clock.now)
    assert router.fib.get("203.0.113.128/25") is not None


def test_control_reload_op(router: Router) -> None:
    answers = [{"applied": True, "summary": "reload applied (f): no changes", "problems": [],
                "restart": False},
               {"applied": False, "summary": "reload refused: 1 problem(s) in f",
                "problems": ["f:3:9: routes[0].via: bad"], "restart": False}]
    commands = ControlCommands(router, reload=lambda: answers.pop(0))
    assert commands({"op": "reload"})["summary"] == "reload applied (f): no changes"
    with pytest.raises(ControlError, match=r"refused: 1 problem\(s\) in f\n  f:3:9: routes"):
        commands({"op": "reload"})
    with pytest.raises(ControlError, match="cannot reload"):
        ControlCommands(router)({"op": "reload"})


R_MAC3 = "02:00:00:00:01:03"
LINK_C = LinkInfo(7, bytes.fromhex(R_MAC3.replace(":", "")), 1500)


def test_an_interface_added_at_run_time(router: Router, clock: Clock) -> None:
    """Issue 10: a reload naming a new interface takes it (the daemon opens its ring); its
    connected and local routes, a static route through it and its announcements follow."""
    interfaces = [*copy.deepcopy(ROUTER_YAML["interfaces"]),
                  {"name": "r1-c", "addresses": ["192.0.2.1/26", "2001:db8:c::1/64"]}]
    routes = [*ROUTER_YAML["routes"], {"prefix": "2001:db8:c:1::/64", "via": "2001:db8:c::2"}]
    new = config(interfaces=interfaces, routes=routes)
    with pytest.raises(ReloadRefused, match="interface r1-c added: no such interface"):
        plan_reload(router, router.config, new)
    plan = plan_reload(router, router.config, new, {"r1-c": LINK_C})
    assert [(ic.name, link.ifindex) for ic, link in plan.interfaces_added] == [("r1-c", 7)]
    generation = router.generation
    result = apply_reload(router, plan, clock.now)
    assert result.changes[:2] == ["interface +r1-c", "route +2001:db8:c:1::/64 via 2001:db8:c::2"]
    assert router.by_name["r1-c"].ifindex == 7 and router.generation > generation
    assert {"192.0.2.0/26", "192.0.2.1/32", "2001:db8:c::/64", "2001:db8:c:1::/64"} <= \
        prefixes(router)
    route = router.fib.get("2001:db8:c:1::/64")
    assert route is not None and route.ifindex == 7
    # announced like at start: a gratuitous ARP on the new interface
    frames = [Ether(t.frame) for t in transmits(result.actions, 7)]
    assert any(ARP in f and f[ARP].psrc == f[ARP].pdst == "192.0.2.1" for f in frames)
    assert router.config is new


def test_an_interface_removed_at_run_time(r: Router, clock: Clock) -> None:
    """Every route out of it goes (connected, local, static through its gateway), its
    neighbors are flushed, its addresses stop being the router's."""
    assert any(e.ifindex == 2 for e in r.neighbors.entries())
    interfaces = copy.deepcopy(ROUTER_YAML["interfaces"])[:1]
    routes = [rc for rc in ROUTER_YAML["routes"]
              if "%" not in str(rc.get("via")) and "203.0.113" not in str(rc.get("via"))
              and rc.get("interface") != "r1-b"]
    neighbors = [n for n in ROUTER_YAML.get("neighbors", []) if n["interface"] != "r1-b"]
    new = config(interfaces=interfaces, routes=routes, neighbors=neighbors)
    plan = plan_reload(r, r.config, new)
    assert plan.interfaces_removed == ["r1-b"]
    result = apply_reload(r, plan, clock.now)
    assert "interface -r1-b" in result.changes
    assert all(route.ifindex != 2 for route in r.fib.routes())
    assert not any(e.ifindex == 2 for e in r.neighbors.entries())
    assert 2 not in r.interfaces and "r1-b" not in r.by_name
    assert not any(p.startswith("203.0.113.") for p in prefixes(r))
