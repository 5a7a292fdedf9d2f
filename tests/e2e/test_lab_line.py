"""configs/line.yaml (h1 - r1 - h2) on the qemu backend: every node reaches its last stage
(routers: `routerctl show interfaces` answers), then one VM is killed with SIGKILL and `down`
still removes every process, port, socket, file and directory the journal lists."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

from orchestrate.topology import load_topology


def test_line_boots_and_down_after_kill_9_leaves_nothing(e2e: SimpleNamespace) -> None:
    lab = e2e.boot(load_topology(e2e.configs / "line.yaml"), "e2e-line")
    try:
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
