"""Shared helpers and fixtures for the router core tests (imported as `routerkit`; conftest.py
re-exports the fixtures): a two-interface router, hosts on each side
built with scapy, and a fake clock.

Topology of the `router` fixture (documentation addresses only):

    h1 198.51.100.10 / 2001:db8:1::10      ifindex 1 "r1-a"   198.51.100.1/24, 2001:db8:1::1/64
    gw 198.51.100.2  / fe80::2 (on r1-a)                       (a second router on the LAN)
    h2 203.0.113.10  / 2001:db8:2::10      ifindex 2 "r1-b"   203.0.113.1/24, 2001:db8:2::1/64

Routes: 192.0.2.0/25 via 198.51.100.2 (back out r1-a: redirect territory),
2001:db8:9::/48 via fe80::2%r1-a, 192.0.2.128/26 and 2001:db8:66::/48 reject,
192.0.2.192/26 and 2001:db8:77::/48 blackhole. No default route.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    ARP,
    Ether,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    raw,
)

from appliance.config import parse_router_config
from appliance.core.router import Action, Deliver, Drop, Hold, LinkInfo, Router, Transmit

R_MAC1 = "02:00:00:00:01:01"
R_MAC2 = "02:00:00:00:01:02"
H1_MAC = "52:54:00:00:00:10"
GW_MAC = "52:54:00:00:00:02"
H2_MAC = "52:54:00:00:00:20"
R_LL1 = "fe80::ff:fe00:101"  # EUI-64 of 02:00:00:00:01:01 (U/L bit flipped)
R_LL2 = "fe80::ff:fe00:102"
H1_LL = "fe80::5054:ff:fe00:10"

ROUTER_YAML: dict[str, Any] = {
    "hostname": "r1",
    "interfaces": [
        {"name": "r1-a", "addresses": ["198.51.100.1/24", "2001:db8:1::1/64"]},
        {"name": "r1-b", "addresses": ["203.0.113.1/24", "2001:db8:2::1/64"]},
    ],
    "routes": [
        {"prefix": "192.0.2.0/25", "via": "198.51.100.2"},
        {"prefix": "2001:db8:9::/48", "via": "fe80::2%r1-a"},
        {"prefix": "192.0.2.128/26", "type": "reject"},
        {"prefix": "2001:db8:66::/48", "type": "reject"},
        {"prefix": "192.0.2.192/26", "type": "blackhole"},
        {"prefix": "2001:db8:77::/48", "type": "blackhole"},
    ],
    "sysctl": {},
}


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


LINKS = {
    "r1-a": LinkInfo(1, mac(R_MAC1), 1500),
    "r1-b": LinkInfo(2, mac(R_MAC2), 1500),
}


class Clock:
    """A fake monotonic clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def make_router(sysctl: dict[str, int] | None = None, routes: list[dict[str, Any]] | None = None,
                **overrides: Any) -> Router:
    data = dict(ROUTER_YAML)
    data["sysctl"] = dict(sysctl or {})
    if routes is not None:
        data["routes"] = routes
    data.update(overrides)
    return Router(parse_router_config(data, "test"), LINKS, rng=random.Random(1))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def router() -> Router:
    return make_router()


@pytest.fixture
def r(router: Router, clock: Clock) -> Router:
    """The `router` fixture once it knows h1 and h2 (learnt from their ARP and NS)."""
    learn(router, H1, clock.now)
    learn(router, H2, clock.now)
    return router


# --- looking at actions -----------------------------------------------------------------------


def transmits(actions: Iterable[Action], ifindex: int | None = None) -> list[Transmit]:
    return [a for a in actions
            if isinstance(a, Transmit) and (ifindex is None or a.ifindex == ifindex)]


def drops(actions: Iterable[Action]) -> list[str]:
    return [a.reason for a in actions if isinstance(a, Drop)]


def ends(actions: Iterable[Action]) -> list[str]:
    """Reasons of every non-Transmit action."""
    return [a.reason for a in actions if isinstance(a, Drop | Deliver | Hold)]


def only_frame(actions: Iterable[Action], ifindex: int | None = None) -> Ether:
    frames = transmits(actions, ifindex)
    assert len(frames) == 1, f"expected one frame, got {len(frames)}: {list(actions)}"
    return Ether(frames[0].frame)


# --- making the router know its neighbors (through real ARP / NS frames) ------------------


@dataclass
class Host:
    ifindex: int
    mac: str
    ip4: str
    ip6: str


H1 = Host(1, H1_MAC, "198.51.100.10", "2001:db8:1::10")
GW = Host(1, GW_MAC, "198.51.100.2", "fe80::2")
H2 = Host(2, H2_MAC, "203.0.113.10", "2001:db8:2::10")
ROUTER_IP4 = {1: "198.51.100.1", 2: "203.0.113.1"}
ROUTER_IP6 = {1: "2001:db8:1::1", 2: "2001:db8:2::1"}
ROUTER_MAC = {1: R_MAC1, 2: R_MAC2}
ROUTER_LL = {1: R_LL1, 2: R_LL2}


def learn(router: Router, host: Host, now: float) -> None:
    """The host ARPs for the router and solicits it: the router learns the host (STALE)."""
    req = Ether(dst="ff:ff:ff:ff:ff:ff", src=host.mac) / ARP(
        op=1, hwsrc=host.mac, psrc=host.ip4, pdst=ROUTER_IP4[host.ifindex])
    router.receive(host.ifindex, raw(req), now)
    target = ROUTER_IP6[host.ifindex]
    ns = (Ether(dst="33:33:ff:00:00:01", src=host.mac)
          / IPv6(src=host.ip6, dst="ff02::1:ff00:1", hlim=255)
          / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=host.mac))
    router.receive(host.ifindex, raw(ns), now)


def arp_reply(host: Host, router_ifindex: int) -> bytes:
    return raw(Ether(dst=ROUTER_MAC[router_ifindex], src=host.mac) / ARP(
        op=2, hwsrc=host.mac, psrc=host.ip4, hwdst=ROUTER_MAC[router_ifindex],
        pdst=ROUTER_IP4[router_ifindex]))


def neighbor_advert(host: Host, router_ifindex: int, solicited: bool = True) -> bytes:
    return raw(Ether(dst=ROUTER_MAC[router_ifindex], src=host.mac)
               / IPv6(src=host.ip6, dst=ROUTER_LL[router_ifindex], hlim=255)
               / ICMPv6ND_NA(tgt=host.ip6, R=0, S=int(solicited), O=1)
               / ICMPv6NDOptDstLLAddr(lladdr=host.mac))


def assert_frame(actual: bytes, expected: Any) -> None:
    """Compare a frame with a scapy-built golden one, field by field first (a readable
    failure), then byte for byte (checksums and lengths included)."""
    got = Ether(actual)
    want = Ether(raw(expected))
    layer_got: Any = got
    layer_want: Any = want
    while layer_want is not None and layer_want.name != "NoPayload":
        assert layer_got is not None and layer_got.name == layer_want.name, (
            f"layer {layer_want.name} missing: got {got.summary()}")
        for f in layer_want.fields_desc:
            a, b = layer_got.getfieldval(f.name), layer_want.getfieldval(f.name)
            if isinstance(a, bytes | str | int | list | type(None)):
                assert a == b, f"{layer_want.name}.{f.name}: got {a!r}, want {b!r}"
        layer_got, layer_want = layer_got.payload, layer_want.payload
    assert actual == raw(expected)
