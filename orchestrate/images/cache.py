"""The image cache: content digests, the cached images under `$VRLAB_HOME/images/`, pruning,
and the one overlay creator (`create_overlay`).

An image is a directory `$VRLAB_HOME/images/<digest>/` holding

- `disk.raw`: the root file system, ext4 made with `mke2fs -d` (no root mounts), sparse;
  nodes boot copy-on-write qcow2 overlays of it (`create_overlay`),
- `vmlinuz`/`vmlinux`, `initrd.img`: the Debian cloud kernel and its tiny-initramfs, for
  direct kernel boot,
- `image.json`: what was built, from what, and how long it took.

`<digest>` is a SHA-256 over every file under images/ (the recipe, the overlay files, the init)
and the appliance source (plus BUILD_FORMAT, bumped when the build changes what it produces),
so an edit to any of them builds a new image (orchestrate.images.build) and an unchanged tree
reuses the old one at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.yamlsource import YamlSourceError, load_file
from orchestrate.record import lab_home

BUILD_FORMAT = 2
REPO_DIR = Path(__file__).resolve().parents[2]
RECIPE_DIR = REPO_DIR / "images"
APPLIANCE_DIR = REPO_DIR / "appliance"
APPLIANCE_SUFFIXES = (".py", ".pyi", ".c", ".h", ".typed")
DIGEST_LENGTH = 16  # hex digits in directory names; image.json keeps the whole digest
MANIFEST = "image.json"
BUILD_PREFIX = ".build-"
BASE_PREFIX = "base-"
BASE_MANIFEST = "base.json"


class ImageError(Exception):
    """The image cannot be built, found or used."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """A built image in the cache."""

    digest: str  # the full SHA-256 (the directory name is its first DIGEST_LENGTH digits)
    directory: Path
    kernel: Path
    initrd: Path
    disk: Path
    cmdline: str
    disk_format: str = "raw"
    kernel_version: str = ""
    built_at: float = 0.0
    build_seconds: float = 0.0
    disk_bytes: int = 0  # the file system's size (the file itself is sparse)

    @property
    def short_digest(self) -> str:
        return self.digest[:DIGEST_LENGTH]



# -- the content digest -----------------------------------------------------------------------


def _tree_files(root: Path, keep: Callable[[Path], bool]) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        if (path.is_file() or path.is_symlink()) and keep(path):
            yield path


def recipe_files(recipe_dir: Path = RECIPE_DIR) -> list[Path]:
    """Every file of the recipe (hidden files too: they would land in the image)."""
    return list(_tree_files(recipe_dir, lambda p: True))


def appliance_files(appliance_dir: Path = APPLIANCE_DIR) -> list[Path]:
    """The appliance source that goes into the image (no build products)."""
    return list(_tree_files(appliance_dir, lambda p: p.suffix in APPLIANCE_SUFFIXES))


def compute_digest(recipe_dir: Path = RECIPE_DIR, appliance_dir: Path = APPLIANCE_DIR) -> str:
    """SHA-256 over the recipe and the appliance: names, executable bits, link targets, bytes."""
    sha = hashlib.sha256(f"vrlab-image {BUILD_FORMAT}\0".encode())
    for tag, root, files in (("recipe", recipe_dir, recipe_files(recipe_dir)),
                             ("appliance", appliance_dir, appliance_files(appliance_dir))):
        for path in files:
            name = f"{tag}/{path.relative_to(root).as_posix()}"
            if path.is_symlink():
                kind, data = "link", os.readlink(path).encode()
            else:
                kind = "exec" if os.access(path, os.X_OK) else "file"
                data = path.read_bytes()
            sha.update(f"{name}\0{kind}\0{len(data)}\0".encode())
            sha.update(data)
    return sha.hexdigest()


# -- the cache --------------------------------------------------------------------------------


def images_dir(home: Path | None = None) -> Path:
    return (home or lab_home()) / "images"


def load_recipe(recipe_dir: Path = RECIPE_DIR) -> dict[str, Any]:
    path = recipe_dir / "recipe.yaml"
    try:
        data = load_file(path).data
    except YamlSourceError as exc:
        raise ImageError(str(exc)) from None
    if not isinstance(data, dict):
        raise ImageError(f"{path}: expected a mapping")
    for key in ("suite", "variant", "packages", "cmdline"):
        if key not in data:
            raise ImageError(f"{path}: missing {key!r}")
    return data


def read_image(directory: Path) -> ImageInfo | None:
    """The image in `directory`, or None if it is not a complete image."""
    try:
        data = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    info = ImageInfo(
        digest=str(data["digest"]), directory=directory,
        kernel=directory / str(data.get("kernel", "vmlinuz")),
        initrd=directory / "initrd.img",
        disk=directory / "disk.raw", cmdline=str(data["cmdline"]),
        disk_format=str(data.get("disk_format", "raw")),
        kernel_version=str(data.get("kernel_version", "")),
        built_at=float(data.get("built_at", 0.0)),
        build_seconds=float(data.get("build_seconds", 0.0)),
        disk_bytes=int(data.get("disk_bytes", 0)),
    )
    if not all(p.is_file() for p in (info.kernel, info.initrd, info.disk)):
        return None
    return info


def find_image(digest: str, home: Path | None = None) -> ImageInfo | None:
    return read_image(images_dir(home) / digest[:DIGEST_LENGTH])


def list_images(home: Path | None = None) -> list[ImageInfo]:
    """Complete images in the cache, newest first."""
    root = images_dir(home)
    if not root.is_dir():
        return []
    found = [read_image(p) for p in root.iterdir()
             if p.is_dir() and not p.name.startswith((".", BASE_PREFIX))]
    return sorted((i for i in found if i is not None), key=lambda i: i.built_at, reverse=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_images(keep: set[str], home: Path | None = None, *,
                 keep_latest: int = 0) -> list[Path]:
    """Remove cached images and bases whose digest is not in `keep`, and dead builds'
    leftovers. Keep `{compute_digest(), base_digest()}` to keep what the next `up` uses.

    Never removed: the `keep_latest` newest images, and images in use (backing a qcow2
    overlay under $VRLAB_HOME/labs, or open in a running process such as QEMU).
    """
    root = images_dir(home)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    keep_short = {digest[:DIGEST_LENGTH] for digest in keep} | images_in_use(home)
    keep_short |= {info.short_digest for info in list_images(home)[:keep_latest]}
    for path in sorted(root.iterdir()):
        if path.name.startswith(BUILD_PREFIX):
            match = re.search(r"-(\d+)$", path.name)
            if match and _pid_alive(int(match.group(1))):
                continue  # a build in progress
        elif path.name.startswith(".") or not path.is_dir() or path.name in keep_short \
                or path.name.removeprefix(BASE_PREFIX) in keep_short:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def qcow2_backing_file(path: Path) -> str | None:
    """The backing file named in a qcow2 header (None if none or not qcow2)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
            if len(header) < 20 or header[:4] != b"QFI\xfb":
                return None
            offset, = struct.unpack_from(">Q", header, 8)
            size, = struct.unpack_from(">I", header, 16)
            if offset == 0 or size == 0 or size > 4096:
                return None
            handle.seek(offset)
            return handle.read(size).decode(errors="replace")
    except OSError:
        return None


def images_in_use(home: Path | None = None) -> set[str]:
    """Directory names of cached images that a lab overlay or a running process uses."""
    root = images_dir(home).resolve()
    used: set[str] = set()

    def note(target: str) -> None:
        path = Path(target)
        if root in path.parents:
            used.add(path.relative_to(root).parts[0])

    labs = (home or lab_home()) / "labs"
    if labs.is_dir():
        for overlay in labs.rglob("*.qcow2"):
            backing = qcow2_backing_file(overlay)
            if backing:
                note(str((overlay.parent / backing).resolve()))
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            with contextlib.suppress(OSError):
                note(os.readlink(fd_dir / name))
    return used


BASE_RECIPE_KEYS = ("suite", "variant", "packages", "dpkg_excludes", "dpkg_includes")


def base_files(recipe_dir: Path = RECIPE_DIR) -> list[Path]:
    """Files installed before the packages (images/setup/): part of the Debian base."""
    setup = recipe_dir / "setup"
    return recipe_files(setup) if setup.is_dir() else []


def base_digest(recipe_dir: Path = RECIPE_DIR) -> str:
    """What the Debian base depends on: the recipe keys mmdebstrap uses, and setup/.
    (The kernel command line or free space change only the layer.)"""
    recipe = load_recipe(recipe_dir)
    keys = {key: recipe.get(key) for key in BASE_RECIPE_KEYS}
    sha = hashlib.sha256(f"vrlab-base {BUILD_FORMAT}\0".encode())
    sha.update(json.dumps(keys, sort_keys=True).encode() + b"\0")
    for path in base_files(recipe_dir):
        data = path.read_bytes()
        sha.update(f"{path.relative_to(recipe_dir).as_posix()}\0{len(data)}\0".encode())
        sha.update(data)
    return sha.hexdigest()



def create_overlay(backing: Path, path: Path, backing_format: str = "raw") -> Path:
    """A qcow2 copy-on-write overlay at `path` (replaced if present) of `backing`, a disk in
    `backing_format` (an image's `disk.raw`, or a snapshot's qcow2 disk state)."""
    path = Path(path)
    path.unlink(missing_ok=True)
    result = subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(Path(backing).resolve()),
         "-F", backing_format, str(path)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise ImageError(f"qemu-img create {path}: {result.stderr.strip()}")
    return path


def image_overlay(image: ImageInfo, path: Path) -> Path:
    """A qcow2 overlay of `image`'s disk at `path`."""
    return create_overlay(image.disk, path, image.disk_format)



def image_summary(info: ImageInfo) -> dict[str, Any]:
    data = asdict(info)
    return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}


@contextlib.contextmanager
def cache_lock(root: Path, key: str) -> Iterator[None]:
    """One maker of a cached thing at a time (an image build, a snapshot): an exclusive flock
    on `<root>/.lock-<key[:16]>`; a second `vrlab up` waits, then finds the thing made."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".lock-{key[:16]}", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
