"""Topologies for the netns tests: Linux hosts around vrlab-router daemons in namespaces.

line (h1 -- r -- h2), the r--h2 link at MTU 1280::

    h1 [h1-r] 192.0.2.2/26         [r-h1] 192.0.2.1/26        r
          2001:db8:1::2/64                2001:db8:1::1/64
    h2 [h2-r] 198.51.100.2/26      [r-h2] 198.51.100.1/26     (MTU 1280)
          2001:db8:2::2/64                2001:db8:2::1/64

lan (h1, r1 and r2 on one bridge; h2 behind r2). h1's default routes point at r1, which
routes h2's networks via r2 on the same LAN, so r1 owes h1 an ICMP redirect / ND redirect::

    h1 [h1-lan] 192.0.2.10/24 2001:db8:1::10/64 -- br0 -- [r1-lan] 192.0.2.1/24 2001:db8:1::1/64
                                                      \\-- [r2-lan] 192.0.2.2/24 2001:db8:1::2/64
    r2 [r2-h2] 198.51.100.1/26 2001:db8:2::1/64 -- [h2-r2] 198.51.100.2/26 2001:db8:2::2/64

Hosts use the kernel stack (segmentation offloads off, see `host_offloads_off`); routers run
`vrlab-router` in their namespace. Each topology is built per module and per fast-path mode
(`MODES`): the C fast path when the extension is built (else the Python twin), and
`--no-fastpath` (every frame through the slow path).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netns import Lab, Namespace, RouterProcess, host_offloads_off, link_local, remove_stale

HAVE_C = importlib.util.find_spec("appliance._fastpath") is not None
MODES = ["c" if HAVE_C else "python", "off"]
MODE_ARGS = {"c": ["--fastpath", "c"], "python": ["--fastpath", "python"],
             "off": ["--no-fastpath"]}

MAC = {
    "h1-r": "02:00:00:00:01:02", "r-h1": "02:00:00:00:01:01",
    "r-h2": "02:00:00:00:02:01", "h2-r": "02:00:00:00:02:02",
    "h1-lan": "02:00:00:00:0a:0a", "r1-lan": "02:00:00:00:0a:01", "r2-lan": "02:00:00:00:0a:02",
    "r2-h2": "02:00:00:00:0b:01", "h2-r2": "02:00:00:00:0b:02",
}


def _usable() -> str | None:
    if os.geteuid() != 0:
        return "netns tests need root"
    for tool in ("ip", "ping", "ethtool"):
        if shutil.which(tool) is None:
            return f"netns tests need {tool}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _usable()
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.netns)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _no_stale_namespaces() -> None:
    if _usable() is None:
        remove_stale()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A Lab for one test; everything it made is removed afterwards, pass or fail."""
    the_lab = Lab(tmp_path)
    try:
        yield the_lab
    finally:
        the_lab.close()


# ---------------------------------------------------------------------------- line


@dataclass
class Line:
    lab: Lab
    mode: str
    h1: Namespace
    r: Namespace
    h2: Namespace
    router: RouterProcess | None = None

    H1 = "192.0.2.2"
    H1_6 = "2001:db8:1::2"
    R_H1 = "192.0.2.1"
    R_H1_6 = "2001:db8:1::1"
    R_H2 = "198.51.100.1"
    R_H2_6 = "2001:db8:2::1"
    H2 = "198.51.100.2"
    H2_6 = "2001:db8:2::2"
    R_H1_LL = str(link_local(MAC["r-h1"]))
    R_H2_LL = str(link_local(MAC["r-h2"]))

    def start(self, **overrides: Any) -> RouterProcess:
        self.router = self.lab.start_router(self.r, line_config(**overrides),
                                            MODE_ARGS[self.mode])
        return self.router


def line_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "hostname": "r",
        "interfaces": [
            {"name": "r-h1", "addresses": ["192.0.2.1/26", "2001:db8:1::1/64"]},
            {"name": "r-h2", "addresses": ["198.51.100.1/26", "2001:db8:2::1/64"], "mtu": 1280},
        ],
        "routes": [{"prefix": "203.0.113.0/25", "type": "reject"}],
    }
    config.update(overrides)
    return config


def build_line(lab: Lab, mode: str, *, start: bool = True) -> Line:
    h1, r, h2 = lab.namespace("h1"), lab.namespace("r"), lab.namespace("h2")
    lab.veth(h1, "h1-r", r, "r-h1", a_mac=MAC["h1-r"], b_mac=MAC["r-h1"])
    lab.veth(r, "r-h2", h2, "h2-r", mtu=1280, a_mac=MAC["r-h2"], b_mac=MAC["h2-r"])
    for ns, ifname, v4, v6, gw4, gw6 in (
        (h1, "h1-r", "192.0.2.2/26", "2001:db8:1::2/64", "192.0.2.1", "2001:db8:1::1"),
        (h2, "h2-r", "198.51.100.2/26", "2001:db8:2::2/64", "198.51.100.1", "2001:db8:2::1"),
    ):
        host_offloads_off(ns, ifname)
        ns.add_address(ifname, v4)
        ns.add_address(ifname, v6)
        ns.add_route("0.0.0.0/0", gw4)
        ns.add_route("::/0", gw6)
    line = Line(lab, mode, h1, r, h2)
    if start:
        line.start()
    return line


@pytest.fixture(scope="module", params=MODES)
def line(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Line]:
    """h1 -- r -- h2 with the router running; shared by the tests of a module."""
    the_lab = Lab(tmp_path_factory.mktemp(f"line-{request.param}"))
    try:
        yield build_line(the_lab, request.param)
    finally:
        the_lab.close()


@pytest.fixture(params=MODES)
def fresh_line(request: pytest.FixtureRequest, lab: Lab) -> Line:
    """h1 -- r -- h2 built for one test, router not started (the test starts it)."""
    return build_line(lab, request.param, start=False)


# ---------------------------------------------------------------------------- lan


@dataclass
class Lan:
    lab: Lab
    mode: str
    h1: Namespace
    sw: Namespace
    r1: Namespace
    r2: Namespace
    h2: Namespace
    router1: RouterProcess
    router2: RouterProcess

    H1 = "192.0.2.10"
    R1 = "192.0.2.1"
    R2 = "192.0.2.2"
    H2 = "198.51.100.2"
    H1_6 = "2001:db8:1::10"
    R1_6 = "2001:db8:1::1"
    R2_6 = "2001:db8:1::2"
    H2_6 = "2001:db8:2::2"
    R1_LL = str(link_local(MAC["r1-lan"]))
    R2_LL = str(link_local(MAC["r2-lan"]))


def build_lan(lab: Lab, mode: str) -> Lan:
    h1, sw = lab.namespace("h1"), lab.namespace("sw")
    r1, r2, h2 = lab.namespace("r1"), lab.namespace("r2"), lab.namespace("h2")
    lab.veth(h1, "h1-lan", sw, "sw-h1", a_mac=MAC["h1-lan"])
    lab.veth(r1, "r1-lan", sw, "sw-r1", a_mac=MAC["r1-lan"])
    lab.veth(r2, "r2-lan", sw, "sw-r2", a_mac=MAC["r2-lan"])
    lab.bridge(sw, "br0", ["sw-h1", "sw-r1", "sw-r2"])
    lab.veth(r2, "r2-h2", h2, "h2-r2", a_mac=MAC["r2-h2"], b_mac=MAC["h2-r2"])
    host_offloads_off(h1, "h1-lan")
    host_offloads_off(h2, "h2-r2")
    h1.add_address("h1-lan", "192.0.2.10/24")
    h1.add_address("h1-lan", "2001:db8:1::10/64")
    h1.add_route("0.0.0.0/0", "192.0.2.1")
    # An ND Redirect is only accepted from the current first hop's link-local address
    # (RFC 4861 §8.1), so h1's IPv6 default route names r1's link-local address.
    h1.add_route("::/0", str(link_local(MAC["r1-lan"])), "h1-lan")
    h2.add_address("h2-r2", "198.51.100.2/26")
    h2.add_address("h2-r2", "2001:db8:2::2/64")
    h2.add_route("0.0.0.0/0", "198.51.100.1")
    h2.add_route("::/0", "2001:db8:2::1")
    r2_ll = link_local(MAC["r2-lan"])
    config1 = {
        "hostname": "r1",
        "interfaces": [{"name": "r1-lan", "addresses": ["192.0.2.1/24", "2001:db8:1::1/64"]}],
        "routes": [
            {"prefix": "198.51.100.0/26", "via": "192.0.2.2"},
            {"prefix": "2001:db8:2::/64", "via": f"{r2_ll}%r1-lan"},
        ],
    }
    config2 = {
        "hostname": "r2",
        "interfaces": [
            {"name": "r2-lan", "addresses": ["192.0.2.2/24", "2001:db8:1::2/64"]},
            {"name": "r2-h2", "addresses": ["198.51.100.1/26", "2001:db8:2::1/64"]},
        ],
    }
    router1 = lab.start_router(r1, config1, MODE_ARGS[mode])
    router2 = lab.start_router(r2, config2, MODE_ARGS[mode])
    return Lan(lab, mode, h1, sw, r1, r2, h2, router1, router2)


@pytest.fixture(params=MODES)
def lan(request: pytest.FixtureRequest, lab: Lab) -> Lan:
    """The two-router LAN, built for one test (redirect state on h1 must start clean)."""
    return build_lan(lab, request.param)
