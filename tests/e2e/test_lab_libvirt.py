"""The libvirt backend (libvirtd started by the test, stopped after): configs/duo.yaml — a
smaller topology than line.yaml to keep CI time down — boots to SSH, runs commands with the
pinned host keys, pings across its UDP link, and `down` undefines every domain."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrate.topology import load_topology

pytestmark = pytest.mark.skipif(shutil.which("libvirtd") is None, reason="needs libvirtd")


def test_libvirt_duo(e2e: SimpleNamespace, tmp_path: Path) -> None:
    with e2e.libvirt_daemons(tmp_path) as uri:
        lab = e2e.boot(load_topology(e2e.configs / "duo.yaml"), "e2e-libvirt",
                       backend="libvirt", backend_options={"uri": uri})
        try:
            fp = e2e.footprint(lab)
            assert [d[1] for d in fp.domains] == ["vrlab-e2e-libvirt-violin",
                                                   "vrlab-e2e-libvirt-piano"]
            assert {s.state for s in lab.status()} == {"running"}
            assert lab.node("violin").exec("hostname", timeout=30).stdout.strip() == "violin"
            piano_ll = lab.node("piano").link_local("vioif0")
            result = lab.node("violin").exec(f"ping -c 2 -W 2 {piano_ll}%vioif0", timeout=60)
            assert result.ok, result.stdout + result.stderr
            assert lab.spec("violin").serial_log.stat().st_size > 0
        finally:
            problems = lab.down()
        assert problems == []
        assert fp.leftovers() == []
