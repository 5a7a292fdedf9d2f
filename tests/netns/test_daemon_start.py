"""vrlab-router's start: the whole router is checked before the kernel is touched, a loopback
or a missing interface is refused, and a start after `kill -9` removes what the killed run
left (issue 9 item 4). One fast-path mode is enough: none of this reaches the data path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import yaml

from netns import REPO, Lab, Line, Namespace, build_line, line_config


@pytest.fixture
def line(lab: Lab) -> Line:
    """h1 -- r -- h2, router not started."""
    return build_line(lab, "off", start=False)


def run_router(lab: Lab, ns: Namespace, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """vrlab-router run to its exit (it is expected to refuse `config`)."""
    path = lab.workdir / "refused.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        ns.argv([sys.executable, "-m", "appliance.host.daemon", "--config", str(path),
                 "--control", str(lab.workdir / "refused.sock"), "--no-fastpath"]),
        capture_output=True, text=True, timeout=60, env=env, cwd=str(REPO))


def kernel_view(ns: Namespace) -> dict[str, Any]:
    """What the router would change on r's interfaces: addresses, MTU, master, sysctls."""
    view: dict[str, Any] = {}
    for link in json.loads(ns.run(["ip", "-j", "addr", "show"]).stdout):
        # The kernel's own link-local address and carrier come and go by themselves (DAD,
        # veth carrier): left out. disable_ipv6 below says whether the router took IPv6.
        view[link["ifname"]] = {
            "addresses": sorted(f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]
                                if not a["local"].startswith("fe80:")),
            "mtu": link["mtu"], "master": link.get("master"),
            "flags": sorted(set(link["flags"]) & {"UP", "ALLMULTI"}),
        }
        for family, key in (("ipv6", "disable_ipv6"), ("ipv4", "forwarding"),
                            ("ipv4", "arp_ignore")):
            view[link["ifname"]][key] = ns.read_sysctl(f"net/{family}/conf/{link['ifname']}/{key}")
    return view


def master_of(ns: Namespace, ifname: str) -> str | None:
    info = json.loads(ns.run(["ip", "-j", "link", "show", ifname]).stdout)[0]
    return info.get("master")


def has_link(ns: Namespace, ifname: str) -> bool:
    return ns.run(["ip", "link", "show", ifname], check=False).returncode == 0


def test_a_refused_route_leaves_the_kernel_untouched(line: Line) -> None:
    """A gateway on no connected subnet is refused (exit 2) before any interface loses an
    address, changes MTU or has a sysctl set."""
    r = line.r
    r.add_address("r-h1", "192.0.2.1/26")
    before = kernel_view(r)
    config = line_config(routes=[{"prefix": "203.0.113.128/25", "via": "203.0.113.1"}])
    config["interfaces"][0]["mtu"] = 1400
    proc = run_router(line.lab, r, config)
    assert proc.returncode == 2, proc.stderr
    assert "gateway 203.0.113.1 is not on a connected subnet" in proc.stderr
    assert "ready" not in proc.stdout
    assert kernel_view(r) == before
    assert not has_link(r, "vrlab-detach")
    assert not (line.lab.workdir / "refused.sock").exists()


def test_lo_is_refused_with_its_place(line: Line) -> None:
    """`interfaces: [{name: lo}]` is a placed error; 127.0.0.1 and ::1 stay on lo."""
    r = line.r
    r.run(["ip", "link", "set", "lo", "up"])
    before = kernel_view(r)
    assert "127.0.0.1/8" in before["lo"]["addresses"]
    config = line_config(interfaces=[{"name": "lo", "addresses": ["192.0.2.1/26"]},
                                     {"name": "r-h1", "addresses": ["198.51.100.1/26"]}])
    proc = run_router(line.lab, r, config)
    assert proc.returncode == 2, proc.stderr
    path = line.lab.workdir / "refused.yaml"
    assert f"{path}:" in proc.stderr and "interfaces[0].name: lo is the loopback" in proc.stderr
    assert kernel_view(r) == before


def test_a_missing_interface_exits_2_untouched(line: Line) -> None:
    r = line.r
    before = kernel_view(r)
    config = line_config(interfaces=[{"name": "r-h1", "addresses": ["192.0.2.1/26"]},
                                     {"name": "r-gone", "addresses": ["198.51.100.1/26"]}])
    proc = run_router(line.lab, r, config)
    assert proc.returncode == 2, proc.stderr
    assert "interfaces: r-gone: no such interface in this network namespace" in proc.stderr
    assert kernel_view(r) == before


def test_the_device_check_knows_a_loopback_by_its_flag(line: Line) -> None:
    """Behind the config's name check, the daemon's own check reads IFF_LOOPBACK."""
    out = line.r.python("from appliance.host.kernel import preflight; "
                        "print(preflight(['lo', 'r-h1']))").stdout
    assert out.strip() == "['interfaces: lo: a loopback interface, not a data interface']"


def test_start_after_kill_9_removes_what_the_killed_run_left(line: Line) -> None:
    """kill -9 leaves the detach bridge (with the interfaces as its ports) and the control
    socket. The next start says it removes both; an interface the new config no longer
    names gets its kernel receive path back; a clean stop then leaves nothing."""
    r = line.r
    first = line.start()
    assert master_of(r, "r-h2") == "vrlab-detach"
    first.proc.kill()
    first.proc.wait(10)
    assert first.socket.exists() and has_link(r, "vrlab-detach")

    # the next run takes only r-h1
    second = line.lab.start_router(
        r, line_config(interfaces=[{"name": "r-h1", "addresses": ["192.0.2.1/26"]}]),
        ["--no-fastpath"])
    log = second.log()
    assert f"removed the stale control socket {second.socket}" in log
    assert "removed vrlab-detach left by a previous run" in log
    assert "r-h2" in log.split("removed vrlab-detach", 1)[1].splitlines()[0]
    assert master_of(r, "r-h2") is None
    assert master_of(r, "r-h1") == "vrlab-detach"
    assert second.stop() == 0
    assert not has_link(r, "vrlab-detach")
    assert not second.socket.exists()
    assert master_of(r, "r-h1") is None
