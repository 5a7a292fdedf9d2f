"""`vrlab demo` (what `make demo` runs): boots duo.yaml, pings piano's link-local address from
violin, prints the result, and always tears the lab down."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from orchestrate.lab import Lab

REPO = Path(__file__).resolve().parents[2]


def test_demo_pings_and_tears_down(e2e: SimpleNamespace) -> None:
    # Its own lab name: the plugin's tests may have a "duo" lab up in the same session.
    if "e2e-demo" in Lab.names():
        Lab.open("e2e-demo").down()
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrate", "demo", "configs/duo.yaml", "--accel", e2e.accel,
         "--no-progress", "--name", "e2e-demo"],
        cwd=REPO, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 packets transmitted, 3 received" in proc.stdout
    assert "vrlab demo: OK" in proc.stdout
    assert "torn down" in proc.stdout
    assert "e2e-demo" not in Lab.names()
