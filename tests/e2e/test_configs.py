"""`vrlab test` on every example topology in configs/, and on deliberately broken copies.

- A copy of line.yaml with h2's IPv4 default route removed (h2 cannot answer h1 over IPv4) is
  run cold: `vrlab test` boots it, reports the failing check by name and why, exits 1 and
  leaves nothing behind. It runs first, before any lab of this session is up.
- A copy whose route names a gateway that is on no link is refused before anything starts
  (exit 2, the problem with its file:line:col).
- Each configs/*.yaml passes `vrlab test` (exit 0). To boot each topology once per session
  these tests take the pytest plugin's `lab` of that file: `vrlab test` finds the running lab
  of that name and reuses it (the plugin takes it down after the topology's last test). The
  plugin orders each topology's tests by first appearance, so these run on a fresh lab,
  before test_router_vm.py / test_seed_duo.py use it.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from orchestrate import memory
from orchestrate.lab import Lab
from orchestrate.pytest_plugin import LabSession

from _helpers_e2e import CONFIGS, lab_names, min_rtt, needs_vms, vrlab_cli

KSM_RUN = Path("/sys/kernel/mm/ksm/run")

pytestmark = needs_vms

# Every file in configs/ must have a test_vrlab_test_passes_* below, or (multihost, which needs
# simulated libvirt hosts) its own `vrlab test` run in test_lab_multihost.py.
COVERED = {"duo", "impaired", "line", "mixed", "multihost", "pmtu", "redirect", "ring"}


def qemu_processes_of(lab_name: str) -> list[str]:
    """Command lines of running QEMU processes whose arguments mention the lab's name."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines()
            if "qemu-system" in line.split(" ")[0] and f"/labs/{lab_name}/" in line]


def broken_line(tmp_path: Path) -> Path:
    """line.yaml without h2's IPv4 default route, renamed, with two checks of its own.

    (The original's checks are replaced, not kept: a YAML round trip would turn their `on:`
    keys into booleans.)
    """
    data = yaml.safe_load((CONFIGS / "line.yaml").read_text())
    data["name"] = "line-broken"
    data["nodes"]["h2"]["routes"] = [r for r in data["nodes"]["h2"]["routes"]
                                     if r["prefix"] != "0.0.0.0/0"]
    data["tests"] = [
        {"kind": "ping", "from": "h1", "to": "h2", "family": 6, "count": 2},
        {"kind": "ping", "from": "h1", "to": "h2", "family": 4, "count": 2, "attempts": 2},
    ]
    path = tmp_path / "line-broken.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_config_file_is_covered() -> None:
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == COVERED


def test_broken_copy_fails_naming_the_check_and_why(tmp_path: Path) -> None:
    if "line-broken" in lab_names():  # left by an interrupted earlier run
        vrlab_cli("down", "line-broken", timeout=300)
    junit = tmp_path / "results.xml"
    result = vrlab_cli("test", str(broken_line(tmp_path)), "--junit", str(junit), timeout=900)
    output = result.stdout + result.stderr
    try:
        assert result.returncode == 1, output
        # the IPv6 check still passes: the run tells the broken family from the working one
        assert "PASS ping IPv6 h1 -> h2" in output, output
        assert "FAIL ping IPv4 h1 -> h2" in output, output
        assert "1 passed, 1 failed" in output, output
        cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
        failure = cases["ping IPv4 h1 -> h2"].find("failure")
        assert failure is not None
        # h1's requests reach h2, whose replies have no route back: no reply, no ICMP error
        assert failure.get("message") == "expected every echo answered, got 0/2 replies"
        assert "2 packets transmitted, 0 received" in (failure.text or "")
        assert cases["ping IPv6 h1 -> h2"].find("failure") is None
    finally:
        # a lab `vrlab test` started is taken down, failed checks or not
        leftovers = "line-broken" in lab_names()
        if leftovers:
            vrlab_cli("down", "line-broken", timeout=300)
    assert not leftovers, "vrlab test left lab line-broken behind"
    assert not qemu_processes_of("line-broken")


def test_invalid_copy_is_refused_before_anything_starts(tmp_path: Path) -> None:
    # Edited as text: a YAML round trip would turn the checks' `on:` keys into booleans.
    text = (CONFIGS / "line.yaml").read_text()
    assert text.count("via: 198.51.100.1}") == 1 and text.count("name: line\n") == 1
    text = text.replace("name: line\n", "name: line-invalid\n")
    # h1's default gateway: on h1's subnet, but no node on that link has it
    text = text.replace("via: 198.51.100.1}", "via: 198.51.100.40}")
    path = tmp_path / "line-invalid.yaml"
    path.write_text(text)
    result = vrlab_cli("test", str(path), timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    problem_lines = [line for line in result.stderr.splitlines()
                     if line.startswith(f"{path}:")]
    assert len(problem_lines) == 1, result.stderr
    assert "nodes.h1.routes[0].via" in problem_lines[0]
    assert "198.51.100.40" in problem_lines[0]
    assert "line-invalid" not in lab_names()


def test_a_lab_that_cannot_come_up_exits_3_and_leaves_nothing(vm_image: object) -> None:
    # Two seconds are too few for any VM under TCG to boot cold (a snapshot restore can be ready
    # within them, so the boot is forced cold): `up` must give up, say why, and remove what it
    # started.
    ksm_before = KSM_RUN.read_text()
    result = vrlab_cli("up", str(CONFIGS / "duo.yaml"), "--name", "duo-late", "--timeout", "2",
                       "--boot", "cold", "--no-progress", "--json", timeout=300)
    assert result.returncode == 3, result.stdout + result.stderr
    assert KSM_RUN.read_text() == ksm_before  # KSM as the failed up found it...
    holders = memory.KSM_STATE.read_text() if memory.KSM_STATE.exists() else ""
    assert "/labs/duo-late/" not in holders  # ...and no hold of the failed lab left
    error = json.loads(result.stdout)
    assert error["exit_status"] == 3 and "within 2 s" in error["error"], error
    assert "duo-late" not in lab_names()
    assert qemu_processes_of("duo-late") == []


def vrlab_test_passes(lab: LabSession) -> None:
    path = lab.topology.path
    assert path is not None
    result = vrlab_cli("test", str(path), timeout=900)
    output = result.stdout + result.stderr
    assert f"reusing running lab {lab.topology.name}" in output, output
    assert result.returncode == 0, output
    assert f"{len(lab.topology.tests)} passed, 0 failed" in output, output
    # `vrlab test` left the lab it did not start running
    assert lab.topology.name in lab_names()
    assert lab.node(next(iter(lab.topology.nodes))).exec("true", 30).exit_status == 0


@pytest.mark.vrlab_topology("configs/duo.yaml")
def test_vrlab_test_passes_duo(lab: LabSession) -> None:
    vrlab_test_passes(lab)


@pytest.mark.vrlab_topology("configs/line.yaml")
def test_vrlab_test_passes_line(lab: LabSession) -> None:
    vrlab_test_passes(lab)


@pytest.mark.vrlab_topology("configs/pmtu.yaml")
def test_vrlab_test_passes_pmtu(lab: LabSession) -> None:
    vrlab_test_passes(lab)


@pytest.mark.vrlab_topology("configs/redirect.yaml")
def test_vrlab_test_passes_redirect(lab: LabSession) -> None:
    vrlab_test_passes(lab)


@pytest.mark.vrlab_topology("configs/ring.yaml")
def test_vrlab_test_passes_ring(lab: LabSession) -> None:
    # no addresses or routes in the file: the generated reachability checks, both families
    vrlab_test_passes(lab)


@pytest.mark.vrlab_topology("configs/mixed.yaml")
def test_vrlab_test_passes_mixed(lab: LabSession) -> None:
    # vrlab routers and a kernel-router (Linux forwarding) on one derived path, hop by hop
    vrlab_test_passes(lab)


@pytest.mark.vrlab_topology("configs/impaired.yaml")
def test_vrlab_test_passes_impaired(lab: LabSession) -> None:
    # delay, one-way loss and reordering, each proven by its check (ping-stats, transfer);
    # netem runs in the guests (orchestrate.netem), r1 (vrlab-router) sending through it
    vrlab_test_passes(lab)


def h1_to_h2(lab: LabSession) -> float:
    """h1's minimum RTT to h2's IPv4 address (ms)."""
    return min_rtt(lab, "h1", str(lab.topology.nodes["h2"].first_address(4)))


def link_set(lab: LabSession, *args: str) -> str:
    result = vrlab_cli("link", "set", lab.name, *args, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.vrlab_topology("configs/impaired.yaml")
def test_link_set_moves_a_running_labs_rtt(lab: LabSession) -> None:
    # r1 <-> h2 has delay 20ms each way; `vrlab link set` changes it in the guests
    assert h1_to_h2(lab) >= 40.0
    try:
        shown = link_set(lab, "h2:eth1", "delay", "50ms")
        assert "r1:r1-h2 sends through: delay 50ms" in shown
        assert "h2:eth1 sends through: delay 50ms" in shown
        both = h1_to_h2(lab)
        assert both >= 100.0  # 50 ms each way: r1 (vrlab-router) sends through the qdisc
        # only what h2 receives: r1's egress to h2 goes back to 20 ms, h2's stays 50 ms
        assert "r1:r1-h2 sends through: delay 20ms" in link_set(
            lab, "h2:eth1", "delay", "20ms", "--one-way")
        one_way = h1_to_h2(lab)
        assert 70.0 <= one_way < both
        record = Lab.open(lab.name)
        netem = {(n, nic.ifname): nic.netem for n in ("r1", "h2")
                 for nic in record.spec(n).nics if nic.link == 1}
        assert netem == {("r1", "r1-h2"): {"delay": "20ms"}, ("h2", "eth1"): {"delay": "50ms"}}
        refused = vrlab_cli("link", "set", lab.name, "h1:eth1", "delay", "5ms")
        assert refused.returncode == 2  # r1 keeps the qdisc bypass on the unimpaired link
        assert "r1:r1-h1 is a vrlab-router interface" in refused.stderr
    finally:
        link_set(lab, "h2:eth1", "delay", "20ms")
