"""The libvirt backend (libvirtd started by the test, stopped after): configs/line.yaml boots
to SSH and a running router appliance, runs commands with the pinned host keys, forwards
h1's pings to h2 through r1 over its UDP links, and `down` undefines every domain."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrate.topology import load_topology

pytestmark = pytest.mark.skipif(shutil.which("libvirtd") is None, reason="needs libvirtd")


def test_libvirt_line(e2e: SimpleNamespace, tmp_path: Path) -> None:
    with e2e.libvirt_daemons(tmp_path) as uri:
        lab = e2e.boot(load_topology(e2e.configs / "line.yaml"), "e2e-libvirt",
                       backend="libvirt", backend_options={"uri": uri})
        try:
            fp = e2e.footprint(lab)
            assert sorted(d[1] for d in fp.domains) == ["vrlab-e2e-libvirt-h1",
                                                         "vrlab-e2e-libvirt-h2",
                                                         "vrlab-e2e-libvirt-r1"]
            assert {s.state for s in lab.status()} == {"running"}
            assert lab.node("h1").exec("hostname", timeout=30).stdout.strip() == "h1"
            for target in ("198.51.100.66", "2001:db8:2::2"):
                result = lab.node("h1").exec(f"ping -c 2 -W 3 {target}", timeout=60)
                assert result.ok, result.stdout + result.stderr
                assert "ttl=63" in result.stdout, result.stdout  # one router hop
            stats = lab.node("r1").exec("routerctl show stats --json", timeout=60)
            assert stats.ok, stats.stderr
            assert lab.spec("r1").serial_log.stat().st_size > 0
        finally:
            problems = lab.down()
        assert problems == []
        assert fp.leftovers() == []
