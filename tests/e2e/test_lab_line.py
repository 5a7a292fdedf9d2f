"""configs/line.yaml (h1 - r1 - h2) on the qemu backend: every node reaches its last stage
(routers: `routerctl show interfaces` answers), then one VM is killed with SIGKILL and `down`
still removes every process, port, socket, file and directory the journal lists (cold boot);
and restored from snapshots, every node has its own identity (snapshot boot, the default)."""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

from orchestrate.topology import load_topology


def test_line_boots_and_down_after_kill_9_leaves_nothing(e2e: SimpleNamespace) -> None:
    lab = e2e.boot(load_topology(e2e.configs / "line.yaml"), "e2e-line", boot="cold")
    try:
        assert {s.boot for s in lab.status()} == {"cold"}
        fp = e2e.footprint(lab)
        assert sorted(lab.nodes()) == ["h1", "h2", "r1"]
        assert lab.record.data["state"] == "up"
        assert lab.node("r1").exec("routerctl show interfaces", timeout=60).ok
        for node in ("h1", "h2"):
            assert lab.node(node).exec("hostname", timeout=30).stdout.strip() == node
        assert len(fp.pids) == 3 and len(fp.ports) >= 3 + 4  # 3 ssh + 4 UDP link ends
        victim = lab.record.find("process", "r1")
        os.kill(victim["pid"], signal.SIGKILL)
        assert e2e.wait_until(lambda: {s.name: s.state for s in lab.status()}["r1"]
                              == "stopped", 30)
    finally:
        problems = lab.down()
    assert problems == []
    assert fp.leftovers() == []


def test_line_restored_from_snapshots_has_each_nodes_identity(e2e: SimpleNamespace) -> None:
    lab = e2e.boot(load_topology(e2e.configs / "line.yaml"), "e2e-line-snap", boot="snapshot")
    try:
        status = {s.name: s for s in lab.status()}
        assert {s.boot for s in status.values()} == {"snapshot"}
        assert all(s.pss_mib is not None and s.rss_mib is not None and 0 < s.pss_mib <= s.rss_mib
                   for s in status.values())
        for node in ("h1", "h2", "r1"):
            handle = lab.node(node)
            assert "vrlab: restored" in handle.serial_log.read_text(errors="replace")
            # SSH worked against the node's own pinned host key (strict known_hosts).
            out = handle.exec("hostname; date +%s; cat /sys/class/net/mgmt0/address",
                              timeout=60).stdout.split()
            assert out[0] == node
            assert abs(int(out[1]) - time.time()) < 60  # the clock was set after the restore
            assert out[2] == lab.spec(node).mgmt_mac  # not the snapshot's MAC
            for nic in lab.spec(node).nics:
                mac = handle.exec(f"cat /sys/class/net/{nic.ifname}/address").stdout.strip()
                assert mac == nic.mac
        assert lab.node("r1").exec("routerctl show interfaces", timeout=60).ok
        ping = lab.node("h1").exec("ping -c 2 -W 3 198.51.100.66", timeout=60)
        assert ping.ok, ping.stdout + ping.stderr
    finally:
        problems = lab.down()
    assert problems == []
