"""The lab's journal of created objects (`record.json`).

Every object a lab creates on the host (a process, a port, a socket, an overlay file, a config
disk, a bridge, a network namespace, a libvirt domain) is written into the journal *before* it
is created, with enough detail for `vrlab down` to find and remove it later without the
topology file. Each write goes to a temporary file that is fsync'd and renamed over the journal,
and the directory is fsync'd, so a crash (or `kill -9` of the orchestrator) leaves either the
old or the new journal, never half of one.

An object is a plain JSON dict with `kind`, `key` (unique within its kind) and `state`:
`planned` (written before creation; it may or may not exist), `created`, or `removed`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrate.names import name_problem, path_under

RECORD_VERSION = 1
RECORD_NAME = "record.json"

# The kinds `down` knows how to remove, in the order it removes them: processes first (they
# hold sockets, taps and files open), then the lab's hold on KSM (orchestrate.memory), then
# network objects, then files and directories.
# `vxlan`, `network` and `volume` are on a libvirt host (the object's `host`).
KINDS_TEARDOWN_ORDER = (
    "capture",
    "domain",
    "process",
    "ksm",
    "vxlan",
    "network",
    "volume",
    "namespace",
    "bridge",
    "tap",
    "socket",
    "overlay",
    "config_disk",
    "file",
    "port",
    "directory",
)


class RecordError(Exception):
    """The journal is missing or unreadable."""


@dataclass
class Record:
    """An in-memory copy of `record.json`; every mutating call writes it back durably."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, path: Path, lab: str, **meta: Any) -> Record:
        path.parent.mkdir(parents=True, exist_ok=True)
        record = cls(
            path,
            {
                "version": RECORD_VERSION,
                "lab": lab,
                "state": "starting",
                "created_at": time.time(),
                "pid": os.getpid(),
                "objects": [],
                "nodes": {},
                **meta,
            },
        )
        record.save()
        return record

    @classmethod
    def load(cls, path: Path) -> Record:
        try:
            text = path.read_text()
        except FileNotFoundError as exc:
            raise RecordError(f"{path}: no such lab record") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}: unreadable lab record: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
            raise RecordError(f"{path}: unknown record version {data.get('version')!r}")
        return cls(path, data)

    @property
    def lab(self) -> str:
        return str(self.data["lab"])

    def save(self) -> None:
        """Write the journal atomically and durably (tmp file, fsync, rename, fsync dir)."""
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=".record-", dir=directory)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(self.data, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- objects ------------------------------------------------------------------------------

    def objects(self, kind: str | None = None, *, live: bool = True) -> Iterator[dict[str, Any]]:
        """Objects of `kind` (all kinds when None); `live` skips those already removed."""
        for obj in self.data["objects"]:
            if kind is not None and obj["kind"] != kind:
                continue
            if live and obj["state"] == "removed":
                continue
            yield obj

    def find(self, kind: str, key: str) -> dict[str, Any] | None:
        for obj in self.data["objects"]:
            if obj["kind"] == kind and obj["key"] == key:
                return obj
        return None

    def intend(self, kind: str, key: str, **attrs: Any) -> dict[str, Any]:
        """Journal an object before it is created. Re-planning a removed object revives it."""
        if kind not in KINDS_TEARDOWN_ORDER:
            raise ValueError(f"unknown record kind {kind!r}")
        obj = self.find(kind, key)
        if obj is None:
            obj = {"kind": kind, "key": key}
            self.data["objects"].append(obj)
        obj.update(attrs)
        obj["state"] = "planned"
        self.save()
        return obj

    def created(self, kind: str, key: str, **attrs: Any) -> dict[str, Any]:
        """Mark a planned object as existing, adding what is only known afterwards (a pid)."""
        obj = self.find(kind, key)
        if obj is None:
            raise KeyError(f"{kind} {key} was never planned")
        obj.update(attrs)
        obj["state"] = "created"
        self.save()
        return obj

    def removed(self, kind: str, key: str) -> None:
        obj = self.find(kind, key)
        if obj is not None and obj["state"] != "removed":
            obj["state"] = "removed"
            self.save()

    def set_fields(self, **fields: Any) -> None:
        """Update top-level fields (state, backend, nodes, ...) and save."""
        self.data.update(fields)
        self.save()

    def reserved_ports(self) -> set[int]:
        return {int(obj["port"]) for obj in self.objects("port")}


def lab_home() -> Path:
    """`$VRLAB_HOME`, by default ~/.local/share/vrlab."""
    env = os.environ.get("VRLAB_HOME")
    if env:
        return Path(env)
    return Path.home() / ".local" / "share" / "vrlab"


def labs_dir() -> Path:
    return lab_home() / "labs"


def lab_dir(name: str) -> Path:
    """`$VRLAB_HOME/labs/<name>`, resolved; BadName if `name` breaks the rule or escapes."""
    return path_under(labs_dir(), name)


def all_records() -> Iterator[Record]:
    """Every readable lab record under `$VRLAB_HOME/labs` (unreadable ones are skipped)."""
    root = labs_dir()
    if not root.is_dir():
        return
    for child in sorted(root.iterdir()):
        if name_problem(child.name) is not None:
            continue  # not a lab vrlab made (lab names follow orchestrate.names)
        path = child / RECORD_NAME
        if path.is_file():
            try:
                yield Record.load(path)
            except RecordError:
                continue
