"""Fixtures for the lab end-to-end tests (VMs under TCG).

Labs here get their own names (`e2e-...`) under the normal $VRLAB_HOME, so they share the
image cache with everything else and never collide with a user's labs or with the pytest
plugin's `lab` fixture (deliberately not redefined here). One duo lab is shared by the whole
session; tests that must break or kill a lab boot their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrate import memory
from orchestrate.backends.qemu import pids_with_marker, process_is_zombie, process_start_time
from orchestrate.lab import Lab, LabError
from orchestrate.links import namespace_exists
from orchestrate.ports import port_is_free
from orchestrate.topology import Topology, load_topology

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
ACCEL = os.environ.get("VRLAB_E2E_ACCEL", "tcg")
UP_TIMEOUT = float(os.environ.get("VRLAB_E2E_TIMEOUT", "600"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.path)).name.startswith("test_lab_"):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.slow)
            if shutil.which("qemu-system-x86_64") is None:
                item.add_marker(pytest.mark.skip(reason="needs qemu-system-x86_64"))


@pytest.fixture(scope="session")
def vm_image() -> Any:
    from orchestrate.images import ensure_image

    return ensure_image(progress=False)


def fresh(name: str) -> None:
    """Take down a lab of this name left by an earlier, interrupted run."""
    if name in Lab.names():
        Lab.open(name).down()


def boot(topology: Topology, name: str, image: Any, **kw: Any) -> Lab:
    fresh(name)
    options: dict[str, Any] = {"accel": ACCEL, "timeout": UP_TIMEOUT, "progress": False}
    options.update(kw)
    return Lab.up(topology, name=name, image=image, **options)


@pytest.fixture(scope="session")
def duo_lab(vm_image: Any) -> Iterator[Lab]:
    lab = boot(load_topology(CONFIGS / "duo.yaml"), "e2e-duo", vm_image)
    try:
        yield lab
    finally:
        lab.down()


@dataclass
class Footprint:
    """What a lab put on the host, taken from its journal while it was up."""

    lab: str
    directory: Path
    paths: list[Path] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    pids: list[tuple[int, int | None]] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    domains: list[tuple[str, str]] = field(default_factory=list)
    ksm_holder: str | None = None

    def leftovers(self) -> list[str]:
        """Everything of the footprint that still exists (empty after a clean down)."""
        left = [f"path {p}" for p in [self.directory, *self.paths] if p.exists()]
        left += [f"port {p}" for p in self.ports if not port_is_free(p)]
        # A zombie has exited and holds nothing; its parent (init, for orphans) reaps it.
        left += [f"pid {pid}" for pid, start in self.pids
                 if start is not None and process_start_time(pid) == start
                 and not process_is_zombie(pid)]
        for marker in self.markers:
            left += [f"process {pid} ({marker})" for pid in pids_with_marker(marker)
                     if not process_is_zombie(pid)]
        left += [f"netns {ns}" for ns in self.namespaces if namespace_exists(ns)]
        for uri, name in self.domains:
            result = subprocess.run(["virsh", "-c", uri, "dominfo", name], capture_output=True,
                                    timeout=30, check=False)
            if result.returncode == 0:
                left.append(f"libvirt domain {name}")
        if self.ksm_holder is not None:
            try:
                holders = json.loads(memory.KSM_STATE.read_text()).get("holders", [])
            except (OSError, ValueError):
                holders = []
            if self.ksm_holder in holders:
                left.append("a hold on KSM (/run/vrlab/ksm.json)")
        return left


def footprint(lab: Lab) -> Footprint:
    fp = Footprint(lab.name, lab.dir)
    for obj in lab.record.objects():
        kind = obj["kind"]
        if "path" in obj:
            fp.paths.append(Path(obj["path"]))
        if kind == "port":
            fp.ports.append(int(obj["port"]))
        if kind == "process":
            fp.pids.append((int(obj["pid"]), obj.get("start_time")))
            fp.markers.append(obj["marker"])
        if kind == "namespace":
            fp.namespaces.append(obj["name"])
        if kind == "domain":
            fp.domains.append((obj["uri"], obj["name"]))
        if kind == "ksm":
            fp.ksm_holder = str(lab.record.path)
    return fp


def wait_until(predicate: Any, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


@contextlib.contextmanager
def libvirt_daemons(workdir: Path) -> Iterator[str]:
    """libvirtd + virtlogd for the test (no systemd here); stopped afterwards if we started them.

    libvirtd runs in a private mount namespace where /etc/libvirt/qemu.conf is replaced by one
    saying user/group root: with the stock libvirt-qemu user, /dev/kvm (0600 root) makes
    libvirt's capability cache flip between "KVM usable" (the probe) and "not usable" (the
    access check) and every define waits on an endless re-probe.
    """
    started: list[Path] = []
    try:
        if subprocess.run(["pgrep", "-x", "virtlogd"], capture_output=True).returncode != 0:
            subprocess.run(["virtlogd", "-d"], check=True, timeout=30)
            started.append(Path("/run/virtlogd.pid"))
        if subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True).returncode != 0:
            conf = workdir / "qemu.conf"
            conf.write_text('user = "root"\ngroup = "root"\n')
            subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 f"mount --bind {conf} /etc/libvirt/qemu.conf && exec libvirtd -d"],
                check=True, timeout=30)
            started.append(Path("/run/libvirtd.pid"))
        uri = "qemu:///system"
        ok = wait_until(lambda: subprocess.run(["virsh", "-c", uri, "version"],
                                               capture_output=True, timeout=30).returncode == 0,
                        60, 0.5)
        if not ok:
            pytest.fail("libvirtd did not answer within 60 s")
        yield uri
    finally:
        for pidfile in reversed(started):  # libvirtd first, then virtlogd
            with contextlib.suppress(OSError, ValueError):
                pid = int(pidfile.read_text().strip())
                os.kill(pid, 15)
                if not wait_until(lambda p=pid: process_start_time(p) is None, 20):
                    os.kill(pid, 9)


@pytest.fixture(scope="session")
def e2e(vm_image: Any) -> SimpleNamespace:
    """The helpers above, for test modules (a conftest is not importable by name here)."""
    return SimpleNamespace(
        image=vm_image, configs=CONFIGS, accel=ACCEL, timeout=UP_TIMEOUT,
        boot=lambda topology, name, **kw: boot(topology, name, vm_image, **kw),
        footprint=footprint, wait_until=wait_until, libvirt_daemons=libvirt_daemons,
        LabError=LabError,
    )
