"""The lab journal: written before objects exist, durable, and readable by down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrate.record import Record, RecordError, all_records


def test_create_writes_a_readable_journal(tmp_path: Path) -> None:
    record = Record.create(tmp_path / "lab" / "record.json", "lab1", backend="qemu")
    data = json.loads((tmp_path / "lab" / "record.json").read_text())
    assert data["lab"] == "lab1"
    assert data["backend"] == "qemu"
    assert data["objects"] == []
    assert Record.load(record.path).lab == "lab1"


def test_intend_is_on_disk_before_the_object_exists(tmp_path: Path) -> None:
    record = Record.create(tmp_path / "record.json", "lab1")
    record.intend("overlay", "/x/root.qcow2", path="/x/root.qcow2")
    on_disk = Record.load(record.path)
    obj = on_disk.find("overlay", "/x/root.qcow2")
    assert obj is not None and obj["state"] == "planned" and obj["path"] == "/x/root.qcow2"


def test_created_adds_late_facts_and_removed_hides_the_object(tmp_path: Path) -> None:
    record = Record.create(tmp_path / "record.json", "lab1")
    record.intend("process", "r1", marker="/run/r1.qmp")
    record.created("process", "r1", pid=1234, start_time=99)
    loaded = Record.load(record.path)
    assert loaded.find("process", "r1") == {
        "kind": "process", "key": "r1", "marker": "/run/r1.qmp", "pid": 1234,
        "start_time": 99, "state": "created"}
    loaded.removed("process", "r1")
    assert list(Record.load(record.path).objects("process")) == []
    assert len(list(Record.load(record.path).objects("process", live=False))) == 1


def test_created_without_intend_is_a_bug(tmp_path: Path) -> None:
    record = Record.create(tmp_path / "record.json", "lab1")
    with pytest.raises(KeyError):
        record.created("process", "never")


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    record = Record.create(tmp_path / "record.json", "lab1")
    with pytest.raises(ValueError):
        record.intend("spaceship", "x")


def test_no_temporary_files_are_left(tmp_path: Path) -> None:
    record = Record.create(tmp_path / "record.json", "lab1")
    for i in range(5):
        record.intend("file", f"f{i}", path=f"/f{i}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no such lab record"):
        Record.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RecordError, match="unreadable"):
        Record.load(bad)
    bad.write_text('{"version": 99}')
    with pytest.raises(RecordError, match="version"):
        Record.load(bad)


def test_reserved_ports_and_all_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VRLAB_HOME", str(tmp_path))
    a = Record.create(tmp_path / "labs" / "a" / "record.json", "a")
    a.intend("port", "ssh:r1", port=40001)
    a.intend("port", "ssh:r2", port=40002)
    a.removed("port", "ssh:r2")
    Record.create(tmp_path / "labs" / "b" / "record.json", "b")
    (tmp_path / "labs" / "junk").mkdir()
    (tmp_path / "labs" / "junk" / "record.json").write_text("garbage")
    assert a.reserved_ports() == {40001}
    assert [r.lab for r in all_records()] == ["a", "b"]
