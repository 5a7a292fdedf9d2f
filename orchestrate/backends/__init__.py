"""VM backends, looked up by name. Each implements the same four hooks (see `Backend`)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrate.choices import BACKENDS
from orchestrate.links import NicSpec
from orchestrate.record import Record


def snapshot_mac(index: int) -> str:
    """The MAC of NIC `index` (-1: management) in a snapshot's saved state: locally
    administered, the same in every snapshot, never a node's (links.mac_address: 52:54:00)."""
    return f"02:76:72:00:00:{index + 1:02x}"


class BackendError(Exception):
    """A backend could not create, start or stop a node."""


@dataclass
class NodeSpec:
    """Everything a backend needs to run one node; also journaled (`record.json` nodes)."""

    lab: str
    name: str
    role: str
    memory: int  # MiB
    cpus: int
    accel: str  # "kvm" or "tcg"
    kernel: Path
    initrd: Path | None
    cmdline: str
    overlay: Path
    config_disk: Path
    mgmt_mac: str
    ssh_port: int
    mgmt_netdev: str  # QEMU -netdev user,... options without the id (restrict=on, hostfwd)
    node_dir: Path
    run_dir: Path  # where the unix sockets live (short path)
    nics: list[NicSpec] = field(default_factory=list)
    host: str | None = None  # the inventory host it runs on (libvirt backend; None: here)
    # Snapshot boot (orchestrate.snapshot): the saved VM state QEMU restores with -incoming;
    # the NICs then keep the snapshot's MACs in QEMU's command line (`device_mac`).
    incoming: Path | None = None

    def device_mac(self, index: int) -> str:
        """The MAC QEMU's command line gives NIC `index` (-1: the management NIC): the node's,
        or when restoring a snapshot the one in the saved state (the guest then sets the
        node's)."""
        if self.incoming is not None:
            return snapshot_mac(index)
        return self.mgmt_mac if index < 0 else self.nics[index].mac

    @property
    def serial_log(self) -> Path:
        return self.node_dir / "serial.log"

    @property
    def serial_socket(self) -> Path:
        return self.run_dir / f"{self.name}.serial"

    @property
    def qmp_socket(self) -> Path:
        return self.run_dir / f"{self.name}.qmp"

    @property
    def pidfile(self) -> Path:
        return self.node_dir / "qemu.pid"

    @property
    def qemu_log(self) -> Path:
        return self.node_dir / "qemu.log"

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role, "memory": self.memory, "cpus": self.cpus, "accel": self.accel,
            "kernel": str(self.kernel), "initrd": str(self.initrd) if self.initrd else None,
            "cmdline": self.cmdline, "overlay": str(self.overlay),
            "config_disk": str(self.config_disk), "mgmt_mac": self.mgmt_mac,
            "ssh_port": self.ssh_port, "mgmt_netdev": self.mgmt_netdev,
            "node_dir": str(self.node_dir), "run_dir": str(self.run_dir),
            "serial_log": str(self.serial_log), "serial_socket": str(self.serial_socket),
            "qmp_socket": str(self.qmp_socket),
            "nics": [nic.to_json() for nic in self.nics], "host": self.host,
            "incoming": str(self.incoming) if self.incoming else None,
        }

    @classmethod
    def from_json(cls, lab: str, name: str, data: dict[str, Any]) -> NodeSpec:
        return cls(
            lab=lab, name=name, role=data["role"], memory=int(data["memory"]),
            cpus=int(data["cpus"]), accel=data["accel"], kernel=Path(data["kernel"]),
            initrd=Path(data["initrd"]) if data.get("initrd") else None,
            cmdline=data["cmdline"], overlay=Path(data["overlay"]),
            config_disk=Path(data["config_disk"]), mgmt_mac=data["mgmt_mac"],
            ssh_port=int(data["ssh_port"]), mgmt_netdev=data["mgmt_netdev"],
            node_dir=Path(data["node_dir"]), run_dir=Path(data["run_dir"]),
            nics=[NicSpec.from_json(name, nic) for nic in data["nics"]],
            host=data.get("host"),
            incoming=Path(data["incoming"]) if data.get("incoming") else None,
        )


class Backend(Protocol):
    name: str

    def create(self, record: Record, spec: NodeSpec) -> None:
        """Prepare the node (journal first); nothing runs yet."""

    def start(self, record: Record, spec: NodeSpec) -> None:
        """Boot the node; returns once the VM process exists."""

    def stop(self, record: Record, node: str) -> None:
        """Stop and undefine the node using only the journal. Idempotent."""

    def status(self, record: Record, node: str) -> str:
        """"running", "stopped" or "absent"."""

    def qmp(self, record: Record, node: str, command: str, **arguments: object) -> object:
        """Run one QMP command on the node's QEMU; its `return` value."""

    def netdev_name(self, spec: NodeSpec, index: int) -> str:
        """The QEMU netdev id of data NIC `index` (-1: the management NIC)."""


def get_backend(name: str, **options: Any) -> Backend:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    module = importlib.import_module(f"orchestrate.backends.{name}")
    backend: Backend = module.make_backend(**options)
    return backend
