"""The image cache: content digests, cache hits, pruning, atomic builds (no mmdebstrap here)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from orchestrate import images, readiness
from orchestrate.images import ImageError, ImageInfo
from orchestrate.images import build as image_build


def make_tree(tmp_path: Path) -> tuple[Path, Path]:
    recipe = tmp_path / "images"
    (recipe / "overlay/usr/sbin").mkdir(parents=True)
    (recipe / "setup/etc").mkdir(parents=True)
    (recipe / "recipe.yaml").write_text(
        "suite: bookworm\nvariant: apt\npackages: [python3, openssh-server]\n"
        "free_space_mib: 4\ncmdline: >-\n  console=ttyS0 quiet\n  init=/sbin/vrlab-init\n")
    (recipe / "setup/etc/tiny.conf").write_text("AUTO_MODULES=no\n")
    init = recipe / "overlay/usr/sbin/vrlab-init"
    init.write_text("#!/bin/sh\n")
    init.chmod(0o755)
    appliance = tmp_path / "appliance"
    (appliance / "packet").mkdir(parents=True)
    (appliance / "__init__.py").write_text("")
    (appliance / "packet/ipv4.py").write_text("X = 1\n")
    return recipe, appliance


def test_digest_is_stable_and_follows_every_input(tmp_path: Path) -> None:
    recipe, appliance = make_tree(tmp_path)
    first = images.compute_digest(recipe, appliance)
    assert first == images.compute_digest(recipe, appliance)
    assert len(first) == 64

    # Build products and caches are not inputs.
    (appliance / "__pycache__").mkdir()
    (appliance / "__pycache__/x.cpython-311.pyc").write_bytes(b"\0")
    (appliance / "_fastpath.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    assert images.compute_digest(recipe, appliance) == first

    seen = {first}

    def changed() -> str:
        digest = images.compute_digest(recipe, appliance)
        assert digest not in seen
        seen.add(digest)
        return digest

    (appliance / "packet/ipv4.py").write_text("X = 2\n")
    changed()
    (appliance / "_fastpath.c").write_text("/* C */\n")
    changed()
    (recipe / "overlay/usr/sbin/vrlab-init").chmod(0o644)  # the executable bit matters
    changed()
    (recipe / "overlay/etc").mkdir()
    (recipe / "overlay/etc/router.yaml").symlink_to("node/router.yaml")
    changed()
    (recipe / "recipe.yaml").write_text((recipe / "recipe.yaml").read_text() + "# edit\n")
    changed()


def test_base_digest_ignores_the_overlay(tmp_path: Path) -> None:
    recipe, _ = make_tree(tmp_path)
    base = images.base_digest(recipe)
    (recipe / "overlay/usr/sbin/vrlab-init").write_text("#!/bin/sh\necho changed\n")
    assert images.base_digest(recipe) == base
    text = (recipe / "recipe.yaml").read_text()
    (recipe / "recipe.yaml").write_text(text.replace("console=ttyS0", "console=ttyS1"))
    assert images.base_digest(recipe) == base  # the command line is not part of the base
    (recipe / "setup/etc/tiny.conf").write_text("AUTO_MODULES=yes\n")
    assert images.base_digest(recipe) != base
    base = images.base_digest(recipe)
    (recipe / "recipe.yaml").write_text(text.replace("python3,", "python3, tcpdump,"))
    assert images.base_digest(recipe) != base


def fake_image(home: Path, digest: str, built_at: float = 1.0) -> Path:
    directory = images.images_dir(home) / digest[:images.DIGEST_LENGTH]
    directory.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img", "disk.raw"):
        (directory / name).write_bytes(b"x")
    (directory / images.MANIFEST).write_text(json.dumps(
        {"digest": digest, "cmdline": "console=ttyS0", "built_at": built_at}))
    return directory


def test_cached_image_is_returned_without_building(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    recipe, appliance = make_tree(tmp_path)
    digest = images.compute_digest(recipe, appliance)
    home = tmp_path / "home"
    fake_image(home, digest)

    def no_build(*args: object) -> ImageInfo:
        raise AssertionError("a cached image was rebuilt")

    monkeypatch.setattr(image_build, "build_image", no_build)
    info = images.ensure_image(progress=False, home=home, recipe_dir=recipe,
                               appliance_dir=appliance)
    assert info.digest == digest
    assert info.disk == images.images_dir(home) / digest[:16] / "disk.raw"
    assert info.cmdline == "console=ttyS0"
    assert info.kernel == images.images_dir(home) / digest[:16] / "vmlinuz"


def test_incomplete_image_is_not_an_image(tmp_path: Path) -> None:
    directory = fake_image(tmp_path, "ab" * 32)
    assert images.read_image(directory) is not None
    (directory / "initrd.img").unlink()
    assert images.read_image(directory) is None
    assert images.list_images(tmp_path) == []


def test_list_and_prune(tmp_path: Path) -> None:
    old = fake_image(tmp_path, "aa" * 32, built_at=1.0)
    new = fake_image(tmp_path, "bb" * 32, built_at=2.0)
    root = images.images_dir(tmp_path)
    base_kept = root / ("base-" + "cc" * 8)
    base_old = root / ("base-" + "dd" * 8)
    for base in (base_kept, base_old):
        (base / "rootfs").mkdir(parents=True)
    dead = root / ".build-ee-999999999"  # no such pid
    live = root / f".build-ff-{os.getpid()}"
    dead.mkdir()
    live.mkdir()
    assert [i.directory for i in images.list_images(tmp_path)] == [new, old]

    removed = images.prune_images({"bb" * 32, "cc" * 32}, tmp_path)
    assert sorted(removed) == sorted([old, base_old, dead])
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [new.name, base_kept.name, live.name])


def test_markers_are_parsed_from_a_serial_log() -> None:
    log = ("[    1.0] something\r\nvrlab: init start t=3.41\r\n"
           "vrlab: ssh up t=4.50\nvrlab-router: ready\nvrlab: router failed status=1 t=6.02\n"
           "\x1b[?2004hroot@r1:/# vrlab: router up t=7\r\n"
           "vrlab: no node configuration on /dev/vdb; starting a console only\n")
    assert readiness.parse_markers(log) == [
        readiness.Marker("init start", 3.41),
        readiness.Marker("ssh up", 4.5),
        readiness.Marker("router failed status=1", 6.02),
        readiness.Marker("router up", 7.0),
        readiness.Marker("no node configuration on /dev/vdb; starting a console only", None),
    ]


def test_mmdebstrap_runs_in_a_private_mount_namespace(tmp_path: Path) -> None:
    recipe, _ = make_tree(tmp_path)
    argv = image_build._mmdebstrap_argv(images.load_recipe(recipe), recipe, tmp_path / "rootfs")
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert "--include=python3,openssh-server" in argv
    assert argv[-2:] == ["bookworm", str(tmp_path / "rootfs")]
    assert f"--setup-hook=copy-in {recipe}/setup/etc/tiny.conf /etc/" in argv


def test_building_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe, appliance = make_tree(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ImageError, match="needs root"):
        images.ensure_image(progress=False, home=tmp_path / "home", recipe_dir=recipe,
                            appliance_dir=appliance)
    assert not (tmp_path / "home/images").exists() or not any(
        p for p in (tmp_path / "home/images").iterdir() if not p.name.startswith(".lock"))


def fake_base(home: Path, recipe: Path) -> Path:
    """A base like mmdebstrap's, without mmdebstrap: a few files, a kernel and an initrd."""
    base = images.images_dir(home) / ("base-" + images.base_digest(recipe)[:16])
    rootfs = base / "rootfs"
    for sub in ("boot", "etc/ssh", "usr/sbin", "root"):
        (rootfs / sub).mkdir(parents=True)
    (rootfs / "sbin").symlink_to("usr/sbin")
    (rootfs / "boot/vmlinuz-6.1.0-9-cloud-amd64").write_bytes(b"kernel")
    (rootfs / "boot/initrd.img-6.1.0-9-cloud-amd64").write_bytes(b"initrd")
    (rootfs / "etc/hostname").write_text("base\n")
    (base / images.BASE_MANIFEST).write_text("{}")
    return base


needs_root_and_e2fsprogs = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("debugfs") is None or shutil.which("mke2fs") is None,
    reason="the layer step chowns to root and needs e2fsprogs")


@needs_root_and_e2fsprogs
def test_layer_build_makes_a_complete_image(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    recipe, appliance = make_tree(tmp_path)
    home = tmp_path / "home"
    base = fake_base(home, recipe)
    monkeypatch.setattr(image_build, "_check_in_chroot", lambda rootfs, log: None)
    steps: list[str] = []
    info = images.ensure_image(progress=steps.append, home=home, recipe_dir=recipe,
                               appliance_dir=appliance)
    assert info.digest == images.compute_digest(recipe, appliance)
    assert info.kernel.read_bytes() == b"kernel"
    assert info.initrd.read_bytes() == b"initrd"
    assert info.kernel_version == "6.1.0-9-cloud-amd64"
    assert info.cmdline == "console=ttyS0 quiet init=/sbin/vrlab-init"
    assert steps[-1] == "done"
    # The overlay went through the /sbin symlink, the appliance under /opt/vrlab, and the
    # kernel left the disk (it boots from the cache).
    listing = subprocess.run(["debugfs", "-R", "ls -l /usr/sbin", str(info.disk)],
                             capture_output=True, text=True, check=True).stdout
    assert "vrlab-init" in listing and "100755" in listing
    appliance_ls = subprocess.run(["debugfs", "-R", "ls /opt/vrlab/appliance/packet",
                                   str(info.disk)], capture_output=True, text=True).stdout
    assert "ipv4.py" in appliance_ls
    boot = subprocess.run(["debugfs", "-R", "ls /boot", str(info.disk)],
                          capture_output=True, text=True).stdout
    assert "vmlinuz" not in boot
    assert (base / "rootfs/boot/vmlinuz-6.1.0-9-cloud-amd64").exists()  # the base is intact
    root = images.images_dir(home)
    assert not [p for p in root.iterdir() if p.name.startswith(".build-")]
    # A second call is a cache hit: same directory, nothing rebuilt.
    monkeypatch.setattr(image_build, "build_image", lambda *a: pytest.fail("rebuilt"))
    assert images.ensure_image(progress=False, home=home, recipe_dir=recipe,
                               appliance_dir=appliance) == info


@needs_root_and_e2fsprogs
def test_interrupted_build_leaves_no_image(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    recipe, appliance = make_tree(tmp_path)
    home = tmp_path / "home"
    fake_base(home, recipe)

    def interrupted(rootfs: Path, log: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(image_build, "_check_in_chroot", interrupted)
    with pytest.raises(KeyboardInterrupt):
        images.ensure_image(progress=False, home=home, recipe_dir=recipe,
                            appliance_dir=appliance)
    root = images.images_dir(home)
    left = sorted(p.name for p in root.iterdir() if not p.name.startswith(".lock"))
    assert left == ["base-" + images.base_digest(recipe)[:16], "last-failed-build.log"]
    assert images.list_images(home) == []


def synthetic_elf(note_type: int, *, truncate: int = 0) -> bytes:
    """A minimal x86-64 ELF: one PT_NOTE segment holding one "Xen" note, one PT_LOAD."""
    name = b"Xen\0"
    note = struct.pack("<III", len(name), 4, note_type) + name + b"\0\0\0\0"
    phoff, phentsize = 64, 56
    note_offset = phoff + 2 * phentsize
    load_offset = note_offset + len(note)
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, phoff)
    struct.pack_into("<HH", header, 0x36, phentsize, 2)
    phdrs = struct.pack("<IIQQQQQQ", 4, 4, note_offset, 0, 0, len(note), len(note), 4)
    phdrs += struct.pack("<IIQQQQQQ", 1, 5, load_offset, 0, 0, 16, 16, 4096)
    elf = bytes(header) + phdrs + note + bytes(16)
    return elf[:len(elf) - truncate] if truncate else elf


def test_pvh_kernel_is_recognised_only_when_whole() -> None:
    assert image_build.is_pvh_elf(synthetic_elf(image_build.XEN_ELFNOTE_PHYS32_ENTRY))
    assert not image_build.is_pvh_elf(synthetic_elf(5))  # another Xen note: no PVH entry point
    # A decompression cut short leaves a segment past the end of the file.
    assert not image_build.is_pvh_elf(
        synthetic_elf(image_build.XEN_ELFNOTE_PHYS32_ENTRY, truncate=8))
    assert not image_build.is_pvh_elf(b"MZ" + bytes(100))  # a bzImage, not an ELF


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")
def test_prune_keeps_the_newest_and_images_in_use(tmp_path: Path) -> None:
    digests = [f"{n:02x}" * 32 for n in range(1, 6)]  # built in this order
    dirs = [fake_image(tmp_path, d, built_at=float(i)) for i, d in enumerate(digests)]
    # A lab's node overlay backed by the oldest image: that image must stay.
    node_dir = tmp_path / "labs/duo/nodes/r1"
    node_dir.mkdir(parents=True)
    info = images.read_image(dirs[0])
    assert info is not None
    images.image_overlay(info, node_dir / "root.qcow2")
    assert images.qcow2_backing_file(node_dir / "root.qcow2") == str(info.disk.resolve())
    assert images.images_in_use(tmp_path) == {dirs[0].name}

    removed = images.prune_images(set(), tmp_path, keep_latest=2)
    assert sorted(removed) == sorted([dirs[1], dirs[2]])
    assert sorted(p.name for p in images.images_dir(tmp_path).iterdir()) == sorted(
        [dirs[0].name, dirs[3].name, dirs[4].name])
