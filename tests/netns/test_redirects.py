"""Redirects on a LAN: h1's default router r1 sends h1's packets for h2 back out of the same
interface to r2, so it tells h1 to use r2 directly (BSD ip_forward rules, RFC 1812 §5.2.7.2;
RFC 4861 §8 for IPv6, from r1's link-local address, naming r2's link-local address)."""

from __future__ import annotations

import re

from netns import Lan, wait_for


def _ping(lan: Lan, target: str) -> bool:
    proc = lan.h1.run(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", target], check=False)
    return proc.returncode == 0


def test_icmp_redirect(lan: Lan) -> None:
    before = lan.router1.stats()

    def redirected() -> bool:
        # Linux takes a redirect only once it has resolved the new gateway, so it may need
        # a few packets; each round sends two more through r1.
        assert _ping(lan, Lan.H2), "h1 lost h2"
        route = lan.h1.run(["ip", "route", "get", Lan.H2]).stdout
        return f"via {Lan.R2}" in route

    assert wait_for(redirected, timeout=15, interval=0.2), \
        lan.h1.run(["ip", "route", "get", Lan.H2]).stdout
    after = lan.router1.stats()
    assert after["ip.redirectsent"] > before["ip.redirectsent"]
    assert after["icmp.outhist.5"] > before.get("icmp.outhist.5", 0)
    # h1 reaches h2 directly through r2 now.
    assert _ping(lan, Lan.H2)


def test_nd_redirect(lan: Lan) -> None:
    before = lan.router1.stats()

    def redirected() -> bool:
        assert _ping(lan, Lan.H2_6), "h1 lost h2"
        route = lan.h1.run(["ip", "-6", "route", "get", Lan.H2_6]).stdout
        return f"via {Lan.R2_LL}" in route

    assert wait_for(redirected, timeout=15, interval=0.2), \
        lan.h1.run(["ip", "-6", "route", "get", Lan.H2_6]).stdout
    after = lan.router1.stats()
    assert after["icmp6.outhist.137"] > before.get("icmp6.outhist.137", 0)
    assert after["ip6.redirectsent"] > before["ip6.redirectsent"]
    assert _ping(lan, Lan.H2_6)


def test_redirects_off_by_sysctl(lan: Lan) -> None:
    """net.inet.ip.redirect=0: r1 forwards back out of the LAN without redirecting."""
    lan.router1.ctl("sysctl", "-w", "net.inet.ip.redirect=0")
    before = lan.router1.stats()
    for _ in range(3):
        assert _ping(lan, Lan.H2)
    after = lan.router1.stats()
    assert after["ip.redirectsent"] == before["ip.redirectsent"]
    assert after["ip.forward"] - before["ip.forward"] >= 6
    route = lan.h1.run(["ip", "route", "get", Lan.H2]).stdout
    assert re.search(rf"via {re.escape(Lan.R1)}\b", route), route
