"""Port allocation: unique across labs, journaled, and never a port that is in use."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrate.ports import PortError, allocate_ports, port_is_free
from orchestrate.record import Record


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VRLAB_HOME", str(tmp_path))
    monkeypatch.setenv("VRLAB_PORT_RANGE", "47000-47099")
    return tmp_path


def lab(home: Path, name: str) -> Record:
    return Record.create(home / "labs" / name / "record.json", name)


def test_ports_are_distinct_within_and_across_labs(home: Path) -> None:
    a, b = lab(home, "a"), lab(home, "b")
    purposes = [f"ssh:n{i}" for i in range(10)]
    pa = allocate_ports(a, purposes)
    pb = allocate_ports(b, purposes)
    assert len(set(pa.values())) == 10
    assert not set(pa.values()) & set(pb.values())
    assert all(47000 <= p <= 47099 for p in [*pa.values(), *pb.values()])
    # Journaled in the allocating lab before being handed out.
    assert Record.load(a.path).reserved_ports() == set(pa.values())


def test_same_purpose_keeps_its_port(home: Path) -> None:
    a = lab(home, "a")
    first = allocate_ports(a, ["ssh:r1"])
    again = allocate_ports(a, ["ssh:r1", "ssh:r2"])
    assert again["ssh:r1"] == first["ssh:r1"]
    assert again["ssh:r2"] != first["ssh:r1"]


def test_a_port_in_use_is_skipped(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        busy.listen()
        assert not port_is_free(port)
        monkeypatch.setenv("VRLAB_PORT_RANGE", f"{port}-{port + 1}")
        got = allocate_ports(lab(home, "a"), ["ssh:r1"])
        assert got["ssh:r1"] == port + 1


def test_exhausted_range_raises(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VRLAB_PORT_RANGE", "47000-47001")
    with pytest.raises(PortError, match="no free port"):
        allocate_ports(lab(home, "a"), ["a", "b", "c"])


def test_ports_of_a_downed_lab_are_reusable(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VRLAB_PORT_RANGE", "47000-47000")
    a = lab(home, "a")
    allocate_ports(a, ["ssh:r1"])
    with pytest.raises(PortError):
        allocate_ports(lab(home, "b"), ["ssh:r1"])
    a.removed("port", "ssh:r1")
    assert allocate_ports(lab(home, "c"), ["ssh:r1"]) == {"ssh:r1": 47000}
