"""Sysctl table: BSD names, ranges, change notification. (Effects on the router are tested in
test_router_sysctl.py.)"""

from __future__ import annotations

import pytest

from appliance.core.sysctl import KNOBS, Sysctl, SysctlError


def test_defaults_and_names() -> None:
    s = Sysctl()
    assert s.get("net.inet.ip.forwarding") == 1
    assert s.get("net.inet.ip.ttl") == 64
    assert s.get("net.inet.icmp.icmplim") == 200
    assert s.get("net.inet.icmp.bmcastecho") == 0
    names = dict(s.items())
    for name in ("net.inet.ip.redirect", "net.inet.ip.maxfragpackets",
                 "net.inet6.ip6.forwarding", "net.inet6.ip6.redirect", "net.inet6.ip6.hlim",
                 "net.inet6.icmp6.errppslimit", "net.link.ether.inet.max_age"):
        assert name in names


def test_set_validates() -> None:
    s = Sysctl()
    assert s.set("net.inet.ip.ttl", "32") == 64
    assert s.get("net.inet.ip.ttl") == 32
    with pytest.raises(SysctlError, match="unknown"):
        s.set("net.inet.ip.bogus", 1)
    with pytest.raises(SysctlError, match="out of range"):
        s.set("net.inet.ip.ttl", 0)
    with pytest.raises(SysctlError, match="not an integer"):
        s.set("net.inet.ip.forwarding", "yes")
    with pytest.raises(SysctlError):
        s.get("net.inet.ip.bogus")
    assert s.get("net.inet.ip.ttl") == 32


def test_generation_and_listeners() -> None:
    s = Sysctl({"net.inet.ip.redirect": 0})
    seen: list[tuple[str, int]] = []
    s.subscribe(lambda name, value: seen.append((name, value)))
    g = s.generation
    s.set("net.inet.ip.ttl", 10)  # not a forwarding knob
    assert s.generation == g
    s.set("net.inet.ip.forwarding", 0)
    assert s.generation == g + 1
    s.set("net.inet.ip.forwarding", 0)  # unchanged: no event
    assert seen == [("net.inet.ip.ttl", 10), ("net.inet.ip.forwarding", 0)]
    assert all(k.minimum <= k.default <= k.maximum for k in KNOBS.values())
