"""KSM switching and per-process memory (PSS/RSS) for `vrlab up` and `vrlab status`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from orchestrate import memory


def fake_ksm(tmp_path: Path, run: str = "0", pages: str = "100") -> Path:
    directory = tmp_path / "ksm"
    directory.mkdir()
    (directory / "run").write_text(run + "\n")
    (directory / "pages_to_scan").write_text(pages + "\n")
    return directory


def test_ksm_is_held_on_and_the_last_release_restores_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    ksm, state = fake_ksm(tmp_path), tmp_path / "run" / "ksm.json"
    journals = [tmp_path / f"lab{i}.json" for i in range(3)]
    for journal in journals:
        journal.write_text("{}")
        assert memory.hold_ksm(str(journal), ksm, state) == (None, True)
    assert (ksm / "run").read_text().strip() == "1"
    assert int((ksm / "pages_to_scan").read_text()) == memory.KSM_PAGES_TO_SCAN
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    memory.release_ksm(str(journals[0]), ksm, state)
    assert (ksm / "run").read_text().strip() == "1"  # two labs still hold it
    journals[1].unlink()  # a lab whose journal went away by hand no longer holds it
    memory.release_ksm(str(journals[0]), ksm, state)  # a second release changes nothing
    assert (ksm / "run").read_text().strip() == "1"
    memory.release_ksm(str(journals[2]), ksm, state)
    assert [(ksm / k).read_text() for k in ("run", "pages_to_scan")] == ["0\n", "100\n"]
    assert not state.exists()
    assert not state.parent.exists()  # nor its lock file and directory: /run as found


def test_concurrent_holders_leave_ksm_and_run_as_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Labs coming up and going down at once: the lock file the last holder removes must not
    let two processes in together (each thread opens its own lock file description, as
    processes do). 4 threads x 25 hold/release rounds; KSM is on whenever one holds it."""
    import threading

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    ksm, state = fake_ksm(tmp_path), tmp_path / "run" / "ksm.json"
    errors: list[str] = []

    def cycle(n: int) -> None:
        journal = tmp_path / f"lab{n}.json"
        journal.write_text("{}")
        for _ in range(25):
            if memory.hold_ksm(str(journal), ksm, state) != (None, True):
                errors.append("hold refused")
            if (ksm / "run").read_text() == "0\n":  # ("" while a hold rewrites "1")
                errors.append("held but off")
            memory.release_ksm(str(journal), ksm, state)

    threads = [threading.Thread(target=cycle, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert [(ksm / k).read_text() for k in ("run", "pages_to_scan")] == ["0\n", "100\n"]
    assert not state.parent.exists()


def test_ksm_that_was_already_on_is_not_ours(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    ksm, state = fake_ksm(tmp_path, run="1", pages="64"), tmp_path / "ksm.json"
    assert memory.hold_ksm("lab", ksm, state) == (None, False)
    memory.release_ksm("lab", ksm, state)
    assert [(ksm / k).read_text() for k in ("run", "pages_to_scan")] == ["1\n", "64\n"]
    assert not state.exists()


def test_ksm_off_is_reported_without_root(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    ksm, state = fake_ksm(tmp_path), tmp_path / "ksm.json"
    reason, held = memory.hold_ksm("lab", ksm, state)
    assert reason is not None and "KSM is off" in reason and not held
    assert (ksm / "run").read_text().strip() == "0"
    (tmp_path / "on").mkdir()
    assert memory.hold_ksm("lab", fake_ksm(tmp_path / "on", run="1"), state) == (None, False)
    assert "no KSM" in str(memory.hold_ksm("lab", tmp_path / "missing", state)[0])
    assert not state.exists()


def test_pss_and_rss_of_a_process() -> None:
    found = memory.process_memory_kib(os.getpid())
    assert found is not None
    pss, rss = found
    assert 0 < pss <= rss
    assert memory.process_memory_kib(2 ** 22 + 1) is None  # no such pid (above pid_max)
