"""`vrlab up` killed with SIGKILL while the VMs boot: the VMs outlive it, and `vrlab down`
finds and removes everything from the journal alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from orchestrate.lab import Lab
from orchestrate.record import lab_dir

REPO = Path(__file__).resolve().parents[2]


def test_down_after_the_orchestrator_is_killed_during_up(e2e: SimpleNamespace) -> None:
    name = "e2e-killed"
    if name in Lab.names():
        Lab.open(name).down()
    record = lab_dir(name) / "record.json"

    def booting() -> bool:
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            return False
        started = [o for o in data["objects"] if o["kind"] == "process"
                   and o["state"] == "created"]
        return len(started) == 2

    env = {**os.environ, "VRLAB_ACCEL": e2e.accel}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "up", str(e2e.configs / "duo.yaml"),
         "--name", name, "--no-progress", "--accel", e2e.accel],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        assert e2e.wait_until(booting, 300), "vrlab up never started both VMs"
    finally:
        proc.kill()
        proc.wait()
    lab = Lab.open(name)
    fp = e2e.footprint(lab)
    assert {s.state for s in lab.status()} == {"running"}  # orphaned, still running
    down = subprocess.run([sys.executable, "-m", "orchestrate", "down", name], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert fp.leftovers() == []
    again = subprocess.run([sys.executable, "-m", "orchestrate", "down", name], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0  # idempotent: nothing left to do is not an error
