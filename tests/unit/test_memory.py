"""KSM switching and per-process memory (PSS/RSS) for `vrlab up` and `vrlab status`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrate import memory


def fake_ksm(tmp_path: Path, run: str = "0", pages: str = "100") -> Path:
    directory = tmp_path / "ksm"
    directory.mkdir()
    (directory / "run").write_text(run + "\n")
    (directory / "pages_to_scan").write_text(pages + "\n")
    return directory


def test_ksm_is_turned_on_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    ksm = fake_ksm(tmp_path)
    assert memory.ensure_ksm(ksm) is None
    assert (ksm / "run").read_text().strip() == "1"
    assert int((ksm / "pages_to_scan").read_text()) == memory.KSM_PAGES_TO_SCAN


def test_ksm_off_is_reported_without_root(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    ksm = fake_ksm(tmp_path)
    reason = memory.ensure_ksm(ksm)
    assert reason is not None and "KSM is off" in reason
    assert (ksm / "run").read_text().strip() == "0"
    (tmp_path / "on").mkdir()
    assert memory.ensure_ksm(fake_ksm(tmp_path / "on", run="1")) is None  # already on
    assert "no KSM" in str(memory.ensure_ksm(tmp_path / "missing"))


def test_pss_and_rss_of_a_process() -> None:
    found = memory.process_memory_kib(os.getpid())
    assert found is not None
    pss, rss = found
    assert 0 < pss <= rss
    assert memory.process_memory_kib(2 ** 22 + 1) is None  # no such pid (above pid_max)
