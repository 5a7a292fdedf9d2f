"""One lab over two libvirt hosts, simulated on this machine (orchestrate.simhosts: a network
namespace, an address on 203.0.113.0/26 and its own libvirtd per host).

configs/multihost.yaml puts r1 and h2 on alpha, h1 and h3 on beta: the h1-r1 link is a UDP
tunnel between the hosts and the r1/h2/h3 LAN segment spans both over VXLAN. alpha is reached
through its namespace; beta, as a real machine would be, over SSH (its own sshd, host key
pinned): the jump to its nodes' SSH forwards and its VXLAN device go that way. `vrlab test` on
it (reusing the lab) passes pings, traceroutes, a 2 MiB transfer with its checksum and a
capture on the crossing link. `down` removes everything from both hosts; when one host's
libvirtd was killed mid-lab, `down` says so, keeps that host's objects in the journal, and a
later `down` (the daemon back) removes them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrate.lab import Lab
from orchestrate.simhosts import SimHosts
from orchestrate.topology import load_topology, parse_topology

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY = REPO / "configs" / "multihost.yaml"

pytestmark = pytest.mark.skipif(
    shutil.which("libvirtd") is None or not Path("/usr/sbin/sshd").exists()
    or os.geteuid() != 0,
    reason="needs libvirtd, sshd (openssh-server) and root (simulated hosts are namespaces)")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHosts]:
    with SimHosts(["alpha", "beta"], tmp_path_factory.mktemp("simhosts"), ssh=True) as made:
        yield made


def leftovers(hosts: SimHosts, lab: str) -> list[str]:
    """Everything of `lab` on any host: domains, volumes, networks, VXLAN devices, QEMUs."""
    left = []
    for host in hosts.hosts:
        left += [f"{host.name}: domain {d}" for d in host.domains() if lab in d]
        volumes = subprocess.run(["virsh", "-c", host.uri, "vol-list", "vrlab"],
                                 capture_output=True, text=True, timeout=30, check=False)
        left += [f"{host.name}: volume {line.split()[0]}" for line in volumes.stdout.splitlines()
                 if line.strip().startswith(f"{lab}-")]
        networks = subprocess.run(["virsh", "-c", host.uri, "net-list", "--all", "--name"],
                                  capture_output=True, text=True, timeout=30, check=False)
        left += [f"{host.name}: network {n}" for n in networks.stdout.split() if lab in n]
        links = subprocess.run(["ip", "netns", "exec", host.netns, "ip", "-o", "link"],
                               capture_output=True, text=True, timeout=30, check=False)
        left += [f"{host.name}: link {line.split(':')[1].strip()}"
                 for line in links.stdout.splitlines()
                 if line.split(":")[1].strip().startswith(("vl", "vx", "vnet"))]
        left += [f"{host.name}: qemu pid {pid}" for pid in host.qemu_pids()]
    return left


@pytest.fixture(scope="module")
def lab(hosts: SimHosts, e2e: SimpleNamespace) -> Iterator[Lab]:
    topology = load_topology(TOPOLOGY)
    up = e2e.boot(topology, topology.name, backend="libvirt",
                  backend_options={"hosts": hosts.inventory(reach={"beta": "ssh"})})
    try:
        yield up
    finally:
        up.down()


def test_vrlab_test_passes_across_hosts(lab: Lab, tmp_path: Path) -> None:
    placed = {status.name: (status.host, status.state) for status in lab.status()}
    assert placed == {"r1": ("alpha", "running"), "h2": ("alpha", "running"),
                      "h1": ("beta", "running"), "h3": ("beta", "running")}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "orchestrate", "test", str(TOPOLOGY), "--json"],
        capture_output=True, text=True, timeout=900, env=env, check=False)
    report: dict[str, Any] = json.loads(result.stdout)
    failed = [(c["name"], c["reason"]) for c in report["checks"] if not c["passed"]]
    assert failed == [] and result.returncode == 0, result.stderr
    kinds = {c["kind"] for c in report["checks"]}
    assert {"ping", "traceroute", "capture", "transfer"} <= kinds
    assert lab.record.data["state"] == "up"  # `vrlab test` reused it and left it up


def test_links_cross_between_tunnel_addresses(lab: Lab, hosts: SimHosts) -> None:
    h1 = lab.spec("h1").nics[0]
    assert (h1.local_address, h1.remote_address) == (hosts["beta"].address,
                                                     hosts["alpha"].address)
    # Inside the guests the links keep MTU 1500 (the underlay carries the overhead).
    for node, ifname in (("h1", "eth1"), ("h3", "eth1")):
        shown = lab.node(node).exec(f"cat /sys/class/net/{ifname}/mtu", timeout=60)
        assert shown.stdout.strip() == "1500", (node, shown.stdout)
    # The second host's QEMU really sends to the first host's address.
    sockets = subprocess.run(["ip", "netns", "exec", hosts["beta"].netns, "ss", "-uan"],
                             capture_output=True, text=True, timeout=30, check=True)
    assert f"{hosts['beta'].address}:{h1.local_port}" in sockets.stdout
    # OpenSSH with the lab's ssh_config: through alpha's namespace, and jumping via beta's sshd.
    for node in ("h2", "h3"):
        login = subprocess.run(["ssh", "-F", str(lab.ssh_config), node, "hostname"],
                               capture_output=True, text=True, timeout=90, check=False)
        assert login.stdout.strip() == node, (node, login.stderr)


def test_console_and_serial_log_come_from_the_host(lab: Lab) -> None:
    assert "vrlab: router up" in lab.serial_text("r1")
    backend: Any = lab.backend()
    sock = backend.console_socket(lab.record, "h3")
    try:
        sock.settimeout(20)
        sock.sendall(b"\r")
        assert sock.recv(4096)  # the guest's console answered through the libvirt stream
    finally:
        sock.close()


def test_images_are_copied_once_per_host(lab: Lab, hosts: SimHosts) -> None:
    for host in hosts.hosts:
        volumes = subprocess.run(["virsh", "-c", host.uri, "vol-list", "vrlab"],
                                 capture_output=True, text=True, timeout=30, check=True)
        disks = [line for line in volumes.stdout.splitlines() if line.strip().endswith("-disk")]
        assert len(disks) == 1, volumes.stdout


def test_nothing_left_on_any_host(hosts: SimHosts, lab: Lab) -> None:
    name = lab.name
    assert lab.down() == []
    assert leftovers(hosts, name) == []
    assert not lab.dir.exists()


PAIR = """
name: e2e-mh-lost
hosts:
  alpha: {uri: "qemu+tcp://203.0.113.11/system", tunnel: 203.0.113.11, netns: vrsim-alpha}
  beta: {uri: "qemu+tcp://203.0.113.12/system", tunnel: 203.0.113.12, netns: vrsim-beta}
nodes:
  h1: {role: host, host: alpha, interfaces: [{name: eth1, addresses: [198.51.100.1/26]}]}
  h2: {role: host, host: beta, interfaces: [{name: eth1, addresses: [198.51.100.2/26]}]}
links:
  - [h1:eth1, h2:eth1]
"""


def test_down_after_a_host_was_lost(hosts: SimHosts, e2e: SimpleNamespace) -> None:
    """alpha's libvirtd dies mid-lab: down reports it, removes beta's part, keeps alpha's in
    the journal; with the daemon back, a second down removes the rest; nothing is left."""
    topology = parse_topology(PAIR)
    lab = e2e.boot(topology, topology.name, backend="libvirt")
    assert lab.node("h1").exec("ping -c 1 -W 5 198.51.100.2", timeout=60).ok
    alpha = hosts["alpha"]
    alpha.kill_libvirtd()
    problems = lab.down()
    assert problems and all("alpha" in p for p in problems), problems
    assert any("unreachable" in p for p in problems), problems
    kept = Lab.open(topology.name).record
    assert {obj.get("host") for obj in kept.objects() if obj.get("host")} == {"alpha"}
    assert [d for d in hosts["beta"].domains() if topology.name in d] == []
    assert alpha.qemu_pids(), "h1's QEMU outlives its libvirtd"
    alpha.start()  # the daemon comes back and finds its running domain again
    assert Lab.open(topology.name).down() == []
    assert topology.name not in Lab.names()
    assert leftovers(hosts, topology.name) == []


def test_a_host_lost_during_up_rolls_back_everywhere(hosts: SimHosts,
                                                      e2e: SimpleNamespace) -> None:
    """beta's libvirtd dies while h2 boots there: up fails naming beta, everything on alpha is
    gone already, beta's part stays in the journal; with beta back, down removes it."""
    topology = parse_topology(PAIR.replace("e2e-mh-lost", "e2e-mh-rollback"))
    beta = hosts["beta"]

    def on_event(node: str, stage: str, _elapsed: str) -> None:
        if node == "h2" and stage == "booted":
            beta.kill_libvirtd()

    with pytest.raises(e2e.LabError, match="beta"):
        e2e.boot(topology, topology.name, backend="libvirt", on_event=on_event)
    kept = Lab.open(topology.name).record
    assert {obj.get("host") for obj in kept.objects() if obj.get("host")} == {"beta"}
    assert [d for d in hosts["alpha"].domains() if topology.name in d] == []
    beta.start()
    assert Lab.open(topology.name).down() == []
    assert leftovers(hosts, topology.name) == []
