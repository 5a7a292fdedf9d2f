"""The netns tests' helpers: the namespace toolkit and the `line` topology come from
bench/netns.py (the soak benchmark uses them too); the `lan` topology is the tests' own.

tests/netns is a package imported as `netns` (see conftest.py); test modules
`from netns import ...` everything below.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.netns import (
    HAVE_C,
    MAC,
    MODE_ARGS,
    MODES,
    PREFIX,
    REPO,
    Lab,
    Line,
    Namespace,
    RouterProcess,
    build_line,
    host_offloads_off,
    line_config,
    link_local,
    remove_stale,
    send_frames,
    wait_for,
)

__all__ = [
    "HAVE_C", "MAC", "MODES", "MODE_ARGS", "PREFIX", "REPO", "Lab", "Lan", "Line", "Namespace",
    "RouterProcess", "build_lan", "build_line", "host_offloads_off", "line_config",
    "link_local", "remove_stale", "send_frames", "wait_for",
]

# lan (h1, r1 and r2 on one bridge; h2 behind r2). h1's default routes point at r1, which
# routes h2's networks via r2 on the same LAN, so r1 owes h1 an ICMP redirect / ND redirect::
#
#     h1 [h1-lan] 192.0.2.10/24 2001:db8:1::10/64 -- br0 -- [r1-lan] 192.0.2.1/24 2001:db8:1::1/64
#                                                       \-- [r2-lan] 192.0.2.2/24 2001:db8:1::2/64
#     r2 [r2-h2] 198.51.100.1/26 2001:db8:2::1/64 -- [h2-r2] 198.51.100.2/26 2001:db8:2::2/64


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


