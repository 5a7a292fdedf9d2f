"""Snapshot boot's host side: the restored command line matches the saved one, the key changes
with what invalidates a snapshot, and a restored node's identity reaches its config disk."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from orchestrate import links, nodeconfig, snapshot
from orchestrate.backends import NodeSpec, snapshot_mac
from orchestrate.backends.qemu import build_argv
from orchestrate.choices import ROLES
from orchestrate.images import ImageInfo

REPO = Path(__file__).resolve().parents[2]

# What may differ between the VM that made a snapshot and a node restored from it: where its
# files, sockets and ports are (QEMU backends), its name, and the -incoming.
BACKEND_OPTIONS = ("-name", "-drive", "-netdev", "-chardev", "-qmp", "-pidfile")


def image(tmp_path: Path, digest: str = "ab" * 32, cmdline: str = "console=ttyS0 quiet",
          ) -> ImageInfo:
    return ImageInfo(digest=digest, directory=tmp_path / "image", kernel=tmp_path / "vmlinux",
                     initrd=tmp_path / "initrd.img", disk=tmp_path / "disk.raw", cmdline=cmdline)


def node_spec(tmp_path: Path, img: ImageInfo, mtus: tuple[int, ...] = (1500, 9000)) -> NodeSpec:
    nics = [links.NicSpec(node="r7", ifname=f"r7-p{i}", mac=f"52:54:00:00:07:{i:02x}", mtu=mtu,
                          link=i, kind="udp", local_port=40000 + i, remote_port=41000 + i)
            for i, mtu in enumerate(mtus)]
    return NodeSpec(
        lab="big", name="r7", role="router", memory=256, cpus=1, accel="tcg",
        kernel=img.kernel, initrd=img.initrd, cmdline=img.cmdline,
        overlay=tmp_path / "r7/root.qcow2", config_disk=tmp_path / "r7/config.img",
        mgmt_mac="52:54:00:00:07:ff", ssh_port=43000,
        mgmt_netdev=nodeconfig.management_netdev_options(43000), node_dir=tmp_path / "r7",
        run_dir=tmp_path / "run", nics=nics)


def device_config(argv: list[str]) -> list[tuple[str, str]]:
    """The argv as (option, value) pairs without what may differ on restore."""
    pairs: list[tuple[str, str]] = []
    index = 1
    while index < len(argv):
        option = argv[index]
        value = argv[index + 1] if index + 1 < len(argv) and not argv[index + 1].startswith(
            "-") else ""
        index += 2 if value else 1
        if option == "-object" and value.startswith("memory-backend-file,"):
            # The RAM file: mapped shared by the VM that saves, private by restored nodes.
            value = ",".join(part for part in value.split(",")
                             if not part.startswith(("mem-path=", "share=")))
        if option not in BACKEND_OPTIONS and option != "-incoming":
            pairs.append((option, value))
    return pairs


def test_a_restored_node_has_the_snapshot_vms_devices(tmp_path: Path) -> None:
    img = image(tmp_path)
    spec = node_spec(tmp_path, img)
    shape = snapshot.Shape.of(spec)
    saved = build_argv(snapshot.shape_spec(img, shape, tmp_path / "snap", tmp_path / "srun",
                                           ssh_port=2222),
                       extra=snapshot.snapshot_memory_args(tmp_path / "snap" / "ram", 256,
                                                           share=True))
    snap = snapshot.Snapshot("cd" * 32, tmp_path / "snap", snapshot.snapshot_cmdline(img,
                                                                                    "router"))
    restored = build_argv(snapshot.restore_spec(spec, snap))
    assert device_config(restored) == device_config(saved)
    # The state is loaded through QMP (x-ignore-shared first); the RAM is the snapshot's
    # file, mapped private.
    assert restored[-2:] == ["-incoming", "defer"]
    assert any(f"mem-path={tmp_path / 'snap' / 'ram'},share=off" in arg for arg in restored)
    assert [command for command, _ in snapshot.incoming_commands(snap.state)] == [
        "migrate-set-capabilities", "migrate-incoming"]
    assert "-incoming" not in saved
    # The NICs keep the snapshot's MACs on QEMU's command line: the guest sets the node's.
    assert f"virtio-net-pci,netdev=data1,mac={snapshot_mac(1)},host_mtu=9000" in restored
    assert not any("52:54:00:00:07" in arg for arg in restored)
    # A cold node's command line has its own MACs and no -incoming.
    cold = build_argv(spec)
    assert "-incoming" not in cold and any("mac=52:54:00:00:07:01" in arg for arg in cold)


def test_the_key_changes_with_what_invalidates_a_snapshot(tmp_path: Path) -> None:
    img = image(tmp_path)
    shape = snapshot.Shape.of(node_spec(tmp_path, img))
    key = snapshot.snapshot_key(img, shape)
    assert snapshot.snapshot_key(img, shape) == key
    assert snapshot.snapshot_key(image(tmp_path, digest="ef" * 32), shape) != key
    assert snapshot.snapshot_key(image(tmp_path, cmdline="console=ttyS0"), shape) != key
    assert snapshot.snapshot_key(img, dataclasses.replace(shape, memory=320)) != key
    assert snapshot.snapshot_key(img, dataclasses.replace(shape, mtus=(1500,))) != key
    assert snapshot.snapshot_key(img, dataclasses.replace(shape, role="host")) != key


def test_the_key_covers_the_machine_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         ) -> None:
    from orchestrate.backends import qemu

    img = image(tmp_path)
    shape = snapshot.Shape.of(node_spec(tmp_path, img))
    key = snapshot.snapshot_key(img, shape)
    monkeypatch.setattr(qemu, "MACHINE", "pc")
    assert snapshot.snapshot_key(img, shape) != key


def test_a_missing_or_foreign_snapshot_is_not_found(tmp_path: Path) -> None:
    img = image(tmp_path)
    shape = snapshot.Shape.of(node_spec(tmp_path, img))
    assert snapshot.find_snapshot(img, shape) is None
    key = snapshot.snapshot_key(img, shape)
    directory = snapshot.snapshots_dir(img) / key[:16]
    directory.mkdir(parents=True)
    (directory / snapshot.STATE).write_bytes(b"state")
    (directory / snapshot.DISK).write_bytes(b"disk")
    (directory / snapshot.RAM).write_bytes(b"ram")
    (directory / snapshot.MANIFEST).write_text(json.dumps({"key": "0" * 64, "cmdline": "x"}))
    assert snapshot.find_snapshot(img, shape) is None  # a manifest for another key
    (directory / snapshot.MANIFEST).write_text(json.dumps({"key": key, "cmdline": "x"}))
    found = snapshot.find_snapshot(img, shape)
    assert found is not None and found.state == directory / "state"
    (directory / snapshot.RAM).unlink()
    assert snapshot.find_snapshot(img, shape) is None  # incomplete: no RAM file
    (directory / snapshot.RAM).write_bytes(b"ram")
    (directory / snapshot.STATE).unlink()
    assert snapshot.find_snapshot(img, shape) is None  # incomplete


def test_restored_identity_reaches_the_config_disk(tmp_path: Path) -> None:
    img = image(tmp_path)
    snap = snapshot.Snapshot("cd" * 32, tmp_path / "snap", "x")
    spec = snapshot.restore_spec(node_spec(tmp_path, img), snap)
    macs = snapshot.restore_macs(spec)
    assert macs == {"52:54:00:00:07:ff": snapshot_mac(-1), "52:54:00:00:07:00": snapshot_mac(0),
                    "52:54:00:00:07:01": snapshot_mac(1)}
    assert snapshot.restore_macs(node_spec(tmp_path, img)) == {}  # cold: nothing to swap
    boot = nodeconfig.NodeBootSpec(
        hostname="r7", role="host", mgmt_mac="52:54:00:00:07:ff", authorized_keys=("k",),
        host_key_private="-----BEGIN OPENSSH PRIVATE KEY-----\n",
        host_key_public="ssh-ed25519 AAAA r7", restore_macs=macs)
    files = nodeconfig.render_files(boot)
    assert files["restore-macs"].splitlines() == [
        f"{snapshot_mac(-1)} 52:54:00:00:07:ff", f"{snapshot_mac(0)} 52:54:00:00:07:00",
        f"{snapshot_mac(1)} 52:54:00:00:07:01"]
    assert "restore-macs" not in nodeconfig.render_files(
        dataclasses.replace(boot, restore_macs={}))
    # The journal keeps the restore (down and status read specs back from it).
    assert NodeSpec.from_json("big", "r7", spec.to_json()) == spec


def test_the_go_line_carries_the_clock_and_a_fresh_seed() -> None:
    first, second = snapshot.go_line().split(), snapshot.go_line().split()
    assert first[0] == b"go" and len(first) == 3
    assert abs(float(first[1]) - float(second[1])) < 5
    assert len(first[2]) == 64 and first[2] != second[2]


def test_the_image_init_has_a_snapshot_point_for_every_role() -> None:
    # A role the init does not know would never say "snapshot point": making its snapshot
    # would wait out PREPARE_TIMEOUT before the node booted cold.
    init = (REPO / "images" / "overlay" / "usr" / "sbin" / "vrlab-init").read_text()
    for role in ROLES:
        assert f'*" vrlab.snapshot={role} "*' in init, role


@pytest.mark.parametrize(("cpus", "restored", "expected"), [
    (2, True, 2), (8, True, 8), (1, True, 2), (2, False, 4), (1, False, 2), (8, False, 16)])
def test_admission_starts_one_restore_and_two_cold_boots_per_cpu_at_least_two(
        monkeypatch: pytest.MonkeyPatch, cpus: int, restored: bool, expected: int) -> None:
    from orchestrate import readiness

    monkeypatch.delenv("VRLAB_ADMIT", raising=False)
    monkeypatch.setattr(readiness.os, "cpu_count", lambda: cpus)
    assert readiness.admission(40, restored) == expected
    monkeypatch.setenv("VRLAB_ADMIT", "3")
    assert readiness.admission(40, restored) == 3
    monkeypatch.setenv("VRLAB_ADMIT", "0")  # not a count: the default
    assert readiness.admission(40, restored) == expected
