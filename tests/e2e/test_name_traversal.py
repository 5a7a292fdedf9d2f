"""A lab name that tries to climb out of $VRLAB_HOME, through the real `vrlab` command line.

The old `vrlab up --name ../../victim FILE` built `$VRLAB_HOME/labs/../../victim` and, when the
`up` failed, tore that directory down, so it could delete any directory on the machine. Every
way a name reaches vrlab is tried here; each must be refused as bad input (exit 2) before
anything is built, and the victim directory must survive untouched. No VM boots: a refused
name never gets that far, which is the point.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def vrlab(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VRLAB_HOME": str(home), "VRLAB_ACCEL": "tcg"}
    return subprocess.run([sys.executable, "-m", "orchestrate", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args", [
    ("up", "{duo}", "--name", "../../victim", "--no-progress"),
    ("up", "{duo}", "--name", "{victim}", "--no-progress"),
    ("up", "{evil}", "--no-progress"),
    ("demo", "--name", "../../victim", "--no-progress"),
    ("down", "../../victim"),
    ("down", "{evil}"),
    ("status", "../../victim"),
    ("exec", "h1", "--lab", "../../victim", "--", "true"),
], ids=lambda args: " ".join(args))
def test_a_traversing_lab_name_is_refused_and_the_victim_survives(
        tmp_path: Path, args: tuple[str, ...]) -> None:
    home = tmp_path / "vrlab"
    home.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    # What `up` would have made its lab directory, and `down` would have removed:
    assert (home / "labs" / ".." / ".." / "victim").resolve() == victim.resolve()
    (victim / "record.json").write_text('{"version": 1, "lab": "victim", "objects": [], '
                                        '"nodes": {}}')
    evil = tmp_path / "evil.yaml"
    evil.write_text((REPO / "configs" / "duo.yaml").read_text().replace(
        "name: duo", "name: ../../victim", 1))
    assert "../../victim" in evil.read_text()
    argv = [a.format(duo=REPO / "configs" / "duo.yaml", evil=evil, victim=victim)
            for a in args]

    result = vrlab(home, *argv)

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "victim" in result.stderr and "Traceback" not in result.stderr
    assert (victim / "precious").read_text() == "keep me"
    assert (victim / "record.json").exists()
    assert not (home / "labs").exists() or not any((home / "labs").iterdir())
