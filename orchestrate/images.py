"""The vrlab VM image: build it from images/ with mmdebstrap, cache it by content, boot it.

An image is a directory `$VRLAB_HOME/images/<digest>/` holding

- `disk.raw`: the root file system, ext4 made with `mke2fs -d` (no root mounts), sparse;
  nodes boot copy-on-write qcow2 overlays of it (`create_overlay`),
- `vmlinuz`, `initrd.img`: the Debian cloud kernel and its tiny-initramfs, for direct kernel
  boot (`qemu_boot_args`),
- `image.json`: what was built, from what, and how long it took.

`<digest>` is a SHA-256 over every file under images/ (the recipe, the overlay files, the init)
and the appliance source (plus BUILD_FORMAT, bumped when this module changes what a build
produces), so an edit to any of them builds a new image and an unchanged tree reuses the old
one at once. A build works in `images/.build-<digest>-<pid>/` and renames it into place only
when complete: an interrupted build leaves no image, and `prune` removes its leftovers.

Building needs root (mmdebstrap in root mode, chroot); mmdebstrap runs inside a private mount
namespace (`unshare -m`), so even a killed build leaves no mount behind.

The appliance's C extension is compiled on the build host against the image's Python ABI
(CPython 3.11 on bookworm, the same as the host's python3-dev) rather than installing gcc and
python3-dev into the image and purging them: measured, that adds 60 MB of packages and
~60 s (install 44 s, compile 7 s, purge 13 s) to each cold build
for the same result. The build then imports it with the image's python3 to prove it loads.
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
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrate.record import lab_home

BUILD_FORMAT = 2
REPO_DIR = Path(__file__).resolve().parent.parent
RECIPE_DIR = REPO_DIR / "images"
APPLIANCE_DIR = REPO_DIR / "appliance"
APPLIANCE_SUFFIXES = (".py", ".pyi", ".c", ".h", ".typed")
IMAGE_PYTHON_ABI = "cpython-311-x86_64-linux-gnu"
IMAGE_PYTHON_INCLUDE = Path("/usr/include/python3.11")
APPLIANCE_PREFIX = "opt/vrlab"  # the appliance package lands in /opt/vrlab/appliance
DIGEST_LENGTH = 16  # hex digits in directory names; image.json keeps the whole digest
MANIFEST = "image.json"
BUILD_PREFIX = ".build-"
BASE_PREFIX = "base-"
BASE_MANIFEST = "base.json"
AUTO_KEEP_IMAGES = 3  # newest images kept by the prune after each build
MMDEBSTRAP_TIMEOUT = 1800.0

Progress = Callable[[str], None]


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
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ImageError(f"{path}: {exc}") from None
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


@contextlib.contextmanager
def _build_lock(root: Path, digest: str) -> Iterator[None]:
    """One build of a digest at a time; a second `vrlab up` waits and then finds it cached."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".lock-{digest[:DIGEST_LENGTH]}", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _work_dir(root: Path, name: str) -> Iterator[Path]:
    """A fresh `root/.build-<name>-<pid>/` to build in (its log is `build.log`). If the body
    fails or is interrupted, the log is kept as `root/last-failed-build.log` and the directory
    removed; on success the body has moved it into place with `_install_dir`."""
    work = root / f"{BUILD_PREFIX}{name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        yield work
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.copy(work / "build.log", root / "last-failed-build.log")
        shutil.rmtree(work, ignore_errors=True)
        raise


def _install_dir(work: Path, final: Path) -> None:
    """Replace `final` (if any) with the finished build directory `work`."""
    if final.exists():
        shutil.rmtree(final)
    work.rename(final)


def ensure_image(progress: bool | Progress = True, *, rebuild: bool = False,
                 home: Path | None = None, recipe_dir: Path = RECIPE_DIR,
                 appliance_dir: Path = APPLIANCE_DIR) -> ImageInfo:
    """The image for the current recipe and appliance, built if it is not cached.

    `progress`: True shows a rich progress display on stderr during a build, False is silent,
    a callable receives each step's description.
    """
    digest = compute_digest(recipe_dir, appliance_dir)
    cached = find_image(digest, home)
    if cached is not None and not rebuild:
        return cached
    root = images_dir(home)
    with _build_lock(root, digest):
        cached = find_image(digest, home)
        if cached is not None and not rebuild:
            return cached
        if progress is True:
            info = _build_with_display(digest, root, recipe_dir, appliance_dir)
        else:
            report: Progress = progress if callable(progress) else (lambda step: None)
            info = build_image(digest, root, recipe_dir, appliance_dir, report)
    # Every appliance edit makes a new image (~350 MB on disk): keep a few, and any in use.
    prune_images({digest, base_digest(recipe_dir)}, home, keep_latest=AUTO_KEEP_IMAGES)
    return info


def _build_with_display(digest: str, root: Path, recipe_dir: Path,
                        appliance_dir: Path) -> ImageInfo:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with RichProgress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"image {digest[:DIGEST_LENGTH]}: starting", total=None)

        def report(step: str) -> None:
            bar.update(task, description=f"image {digest[:DIGEST_LENGTH]}: {step[:90]}")

        info = build_image(digest, root, recipe_dir, appliance_dir, report)
        bar.update(task, description=f"image {info.short_digest}: built in "
                   f"{info.build_seconds:.0f} s")
    return info


# -- building ---------------------------------------------------------------------------------


def build_image(digest: str, root: Path, recipe_dir: Path, appliance_dir: Path,
                report: Progress) -> ImageInfo:
    """Build the image into `root/<digest>` (replacing one there) via a temporary directory.

    Two layers: the Debian base (mmdebstrap; cached by `base_digest`, i.e. recipe.yaml and
    setup/ only) and vrlab's own files (overlay/ and the appliance), added to a copy of the
    base. An appliance or init edit therefore rebuilds in seconds, not minutes.
    """
    if os.geteuid() != 0:
        raise ImageError("building the image needs root (mmdebstrap, chroot): "
                         "run `sudo vrlab image build` once")
    for tool in ("mmdebstrap", "mke2fs", "unshare", "chroot", "cp"):
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} not found (apt-get install mmdebstrap e2fsprogs)")
    recipe = load_recipe(recipe_dir)
    started = time.monotonic()
    base = ensure_base(recipe_dir, root, report)
    with _work_dir(root, digest[:DIGEST_LENGTH]) as work:
        log = work / "build.log"
        rootfs = work / "rootfs"
        stage = work / "stage"
        report("compiling the appliance")
        _stage_appliance(appliance_dir, stage / APPLIANCE_PREFIX, log)
        report("copying the base")
        _run_logged(["cp", "-a", "--reflink=auto", str(base / "rootfs"), str(rootfs)], log,
                    "copying the base root file system")
        report("installing vrlab files")
        _install_files(recipe_dir / "overlay", stage, rootfs)
        _check_in_chroot(rootfs, log)
        kernel_version, kernel_name = _extract_kernel(rootfs, work, log)
        report("making the ext4 disk")
        disk_bytes = _make_disk(rootfs, work / "disk.raw", int(recipe.get("free_space_mib", 512)),
                                log)
        shutil.rmtree(rootfs)
        shutil.rmtree(stage)
        manifest = {
            "digest": digest,
            "base_digest": base_digest(recipe_dir),
            "cmdline": " ".join(str(recipe["cmdline"]).split()),
            "disk_format": "raw",
            "kernel_version": kernel_version,
            "kernel": kernel_name,
            "built_at": time.time(),
            "build_seconds": round(time.monotonic() - started, 1),
            "disk_bytes": disk_bytes,
            "suite": recipe["suite"],
            "packages": list(recipe["packages"]),
            "build_format": BUILD_FORMAT,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        final = root / digest[:DIGEST_LENGTH]
        _install_dir(work, final)
    info = read_image(final)
    if info is None:
        raise ImageError(f"{final}: the build finished but the image is incomplete")
    report("done")
    return info


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


def ensure_base(recipe_dir: Path, root: Path, report: Progress) -> Path:
    """The cached Debian base `root/base-<digest>/` (its `rootfs/`), built by mmdebstrap."""
    digest = base_digest(recipe_dir)
    name = f"{BASE_PREFIX}{digest[:DIGEST_LENGTH]}"
    final = root / name
    with _build_lock(root, name):
        if (final / BASE_MANIFEST).is_file():
            return final
        recipe = load_recipe(recipe_dir)
        started = time.monotonic()
        with _work_dir(root, name) as work:
            report("mmdebstrap")
            _run_mmdebstrap(recipe, recipe_dir, work / "rootfs", work / "build.log", report)
            (work / BASE_MANIFEST).write_text(json.dumps({
                "base_digest": digest, "built_at": time.time(),
                "build_seconds": round(time.monotonic() - started, 1),
            }, indent=2) + "\n")
            _install_dir(work, final)
    return final


def _run_logged(argv: list[str], log: Path, what: str, *, timeout: float = 600.0,
                on_line: Callable[[str], None] | None = None) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace")
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        try:
            for line in proc.stdout:
                out.write(line)
                out.flush()
                if on_line is not None:
                    on_line(line.rstrip())
                if time.monotonic() > deadline:
                    raise ImageError(f"{what} took longer than {timeout:.0f} s (log: {log})")
            status = proc.wait()
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    if status != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
        raise ImageError(f"{what} failed with status {status}: {tail} (log: {log})")


def _python_include() -> Path:
    """Headers for the image's CPython ABI: Debian's python3-dev, else this interpreter's."""
    if (IMAGE_PYTHON_INCLUDE / "Python.h").is_file():
        return IMAGE_PYTHON_INCLUDE
    here = Path(sysconfig.get_paths()["include"])
    if sys.version_info[:2] == (3, 11) and (here / "Python.h").is_file():
        return here
    raise ImageError("no CPython 3.11 headers to build appliance/dataplane/_fastpath.c for the "
                     "image (apt-get install python3-dev)")


def _stage_appliance(appliance_dir: Path, target: Path, log: Path) -> None:
    """Copy the appliance source to `target/appliance` and build its C extension there."""
    package = target / "appliance"
    for path in appliance_files(appliance_dir):
        dest = package / path.relative_to(appliance_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest, follow_symlinks=True)
    source = appliance_dir / "dataplane" / "_fastpath.c"
    if not source.is_file():
        return
    if shutil.which("gcc") is None:
        raise ImageError("gcc not found: needed to build appliance/dataplane/_fastpath.c for the "
                         "image")
    _run_logged(
        ["gcc", "-shared", "-fPIC", "-O2", "-std=gnu11", "-Wall", "-Wno-unused-parameter",
         f"-I{_python_include()}", str(source), "-o",
         str(package / "dataplane" / f"_fastpath.{IMAGE_PYTHON_ABI}.so")],
        log, "compiling appliance/dataplane/_fastpath.c")


def _mmdebstrap_argv(recipe: dict[str, Any], recipe_dir: Path, rootfs: Path) -> list[str]:
    argv = [
        "unshare", "--mount", "--propagation", "private",
        "mmdebstrap", "--mode=root", f"--variant={recipe['variant']}",
        "--include=" + ",".join(str(p) for p in recipe["packages"]),
        "--aptopt=Acquire::Languages \"none\"",
    ]
    for pattern in recipe.get("dpkg_excludes", []):
        argv.append(f"--dpkgopt=path-exclude={pattern}")
    for pattern in recipe.get("dpkg_includes", []):
        argv.append(f"--dpkgopt=path-include={pattern}")
    # Files that must be in place before packages install (the initramfs configuration is
    # read by the kernel's postinst): images/setup/ is copied in first.
    setup = recipe_dir / "setup"
    if setup.is_dir():
        for path in recipe_files(setup):
            rel = path.relative_to(setup).as_posix()
            argv.append(f"--setup-hook=mkdir -p \"$1/{Path(rel).parent.as_posix()}\"")
            argv.append(f"--setup-hook=copy-in {path} /{Path(rel).parent.as_posix()}/")
    argv += [
        # No per-image host keys: each node gets its own from the config disk.
        "--customize-hook=rm -f \"$1\"/etc/ssh/ssh_host_*",
        "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*.bin"
        " \"$1\"/var/cache/apt/archives/*.deb \"$1\"/var/log/*.log",
        str(recipe["suite"]), str(rootfs),
    ]
    return argv


def _run_mmdebstrap(recipe: dict[str, Any], recipe_dir: Path, rootfs: Path, log: Path,
                    report: Progress) -> None:
    def on_line(line: str) -> None:
        if line.startswith("I: "):
            report("mmdebstrap: " + line[3:])

    _run_logged(_mmdebstrap_argv(recipe, recipe_dir, rootfs), log, "mmdebstrap",
                timeout=MMDEBSTRAP_TIMEOUT, on_line=on_line)


def _copy_tree(source: Path, dest: Path) -> None:
    """Copy `source` over `dest` as root:root, keeping modes and symlinks, through dest's
    symlinks (bookworm's /sbin -> usr/sbin)."""
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        target = dest / rel
        if path.is_symlink():
            target.unlink(missing_ok=True)
            target.symlink_to(os.readlink(path))
            os.lchown(target, 0, 0)
        elif path.is_dir():
            target.mkdir(exist_ok=True)
            os.chown(target, 0, 0)
        else:
            shutil.copy2(path, target)
            os.chown(target, 0, 0)


def _install_files(overlay: Path, stage: Path, rootfs: Path) -> None:
    _copy_tree(overlay, rootfs)
    _copy_tree(stage, rootfs)
    (rootfs / "etc/vrlab/node").mkdir(parents=True, exist_ok=True)
    ssh_dir = rootfs / "root/.ssh"
    ssh_dir.mkdir(exist_ok=True)
    ssh_dir.chmod(0o700)


def _check_in_chroot(rootfs: Path, log: Path) -> None:
    """Byte-compile the appliance with the image's python3 and prove it imports there."""
    prefix = f"/{APPLIANCE_PREFIX}"
    _run_logged(["chroot", str(rootfs), "python3", "-m", "compileall", "-q", prefix],
                log, "byte-compiling the appliance")
    check = ("import appliance; import yaml; "
             "import importlib.util as u; "
             "spec = u.find_spec('appliance.dataplane._fastpath'); "
             "spec is None or __import__('appliance.dataplane._fastpath'); "
             "print('appliance ok', 'with' if spec else 'without', 'fast path')")
    _run_logged(["chroot", str(rootfs), "env", f"PYTHONPATH={prefix}", "python3", "-c", check],
                log, "importing the appliance in the image")


def _extract_kernel(rootfs: Path, work: Path, log: Path) -> tuple[str, str]:
    """Copy the kernel and initrd out of the image; returns (kernel version, kernel file name).

    The kernel is booted as the uncompressed ELF `vmlinux` through its PVH entry point when
    that can be had (QEMU loads it directly: no bzImage decompressor, no real-mode set-up;
    measured ~2.5 s earlier to the first kernel message under load here), else as `vmlinuz`.
    """
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise ImageError(f"expected one kernel in the image, found {[k.name for k in kernels]}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    initrd = rootfs / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise ImageError(f"no initramfs for kernel {version} (is tiny-initramfs installed?)")
    shutil.copyfile(initrd, work / "initrd.img")
    kernel_name = "vmlinux" if _extract_pvh_kernel(rootfs, kernels[0], work / "vmlinux", log) \
        else "vmlinuz"
    if kernel_name == "vmlinuz":
        shutil.copyfile(kernels[0], work / "vmlinuz")
    for path in (rootfs / "boot").glob("*"):
        if path.name.startswith(("vmlinuz-", "initrd.img-")):
            path.unlink()
    return version, kernel_name


LZ4_LEGACY_MAGIC = bytes([0x02, 0x21, 0x4C, 0x18])  # the Linux bzImage payload's LZ4 frame
XEN_ELFNOTE_PHYS32_ENTRY = 18


def _extract_pvh_kernel(rootfs: Path, bzimage: Path, target: Path, log: Path) -> bool:
    """Decompress the bzImage payload with the image's own lz4 into `target`; True if the
    result is an ELF kernel with a PVH entry point."""
    data = bzimage.read_bytes()
    offset = data.find(LZ4_LEGACY_MAGIC)
    if offset < 0 or not (rootfs / "usr/bin/lz4").exists():
        return False
    payload = rootfs / "tmp" / "vrlab-kernel.lz4"
    payload.write_bytes(data[offset:])
    try:
        with open(target, "wb") as out, open(log, "a") as err:
            # lz4 exits 1 on the bytes the bzImage keeps after the frame; the ELF check below
            # is what decides whether the output is whole.
            subprocess.run(["chroot", str(rootfs), "lz4", "-dc", "/tmp/vrlab-kernel.lz4"],
                           stdout=out, stderr=err, stdin=subprocess.DEVNULL, check=False,
                           timeout=300)
    finally:
        payload.unlink(missing_ok=True)
    if is_pvh_elf(target.read_bytes()):
        return True
    target.unlink(missing_ok=True)
    return False


def is_pvh_elf(elf: bytes) -> bool:
    """An x86-64 ELF whose loadable segments are all present and which has a Xen PVH entry
    note (XEN_ELFNOTE_PHYS32_ENTRY), as QEMU's `-kernel` needs to boot it directly."""
    if len(elf) < 64 or elf[:5] != b"\x7fELF\x02" or elf[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    if phentsize < 56 or phoff + phentsize * phnum > len(elf):
        return False
    found = False
    for index in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + index * phentsize)
        if p_offset + p_filesz > len(elf):
            return False  # truncated: a segment runs past the end
        if p_type == 4:  # PT_NOTE
            found = found or _has_pvh_note(elf[p_offset:p_offset + p_filesz])
    return found


def _has_pvh_note(notes: bytes) -> bool:
    at = 0
    while at + 12 <= len(notes):
        namesz, descsz, note_type = struct.unpack_from("<III", notes, at)
        name = notes[at + 12:at + 12 + namesz].rstrip(b"\0")
        if name == b"Xen" and note_type == XEN_ELFNOTE_PHYS32_ENTRY:
            return True
        at += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _make_disk(rootfs: Path, disk: Path, free_mib: int, log: Path) -> int:
    used = _tree_bytes(rootfs)
    size_mib = (used * 12 // 10) // (1 << 20) + free_mib
    _run_logged(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "vrlabroot", "-E", "root_owner=0:0",
                 "-d", str(rootfs), str(disk), f"{size_mib}M"], log, "mke2fs")
    return size_mib << 20


# -- booting ----------------------------------------------------------------------------------


def qemu_boot_args(image: ImageInfo, extra_cmdline: str = "") -> list[str]:
    """QEMU arguments for direct kernel boot of `image` (add the disks and NICs yourself)."""
    cmdline = image.cmdline + (f" {extra_cmdline}" if extra_cmdline else "")
    return ["-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", cmdline]


def root_drive_arg(overlay: Path) -> str:
    """The value of QEMU's `-drive` for a node's root overlay: the FIRST virtio disk (vda)."""
    return f"file={overlay},if=virtio,format=qcow2,cache=unsafe"


def create_overlay(image: ImageInfo, path: Path) -> Path:
    """A qcow2 copy-on-write overlay of the image's disk at `path` (replaced if present)."""
    path = Path(path)
    path.unlink(missing_ok=True)
    result = subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk.resolve()),
         "-F", image.disk_format, str(path)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise ImageError(f"qemu-img create {path}: {result.stderr.strip()}")
    return path


# A marker starts a line, or follows the serial console's shell prompt ("root@r1:~# vrlab: ...")
# when the init prints it after the console shell started; "vrlab-router: ..." is not one.
MARKER_RE = re.compile(
    r"(?:^|(?<=[\s#$>]))vrlab: (?P<stage>\S.*?)(?: t=(?P<uptime>[0-9]+(?:\.[0-9]+)?))?\s*$")


@dataclass(frozen=True, slots=True)
class Marker:
    """A readiness line the image's init writes to the serial console."""

    stage: str  # "init start", "network up", "ssh up", "router up", "router failed ...", "ready"
    uptime: float | None  # guest seconds since the kernel started


def parse_markers(serial_text: str) -> list[Marker]:
    """The init's readiness markers in a serial log, in order."""
    found: list[Marker] = []
    for line in serial_text.splitlines():
        match = MARKER_RE.search(line.strip("\r"))
        if match:
            uptime = match.group("uptime")
            found.append(Marker(match.group("stage"), float(uptime) if uptime else None))
    return found


def image_summary(info: ImageInfo) -> dict[str, Any]:
    data = asdict(info)
    return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}


def standalone_vm_argv(image: ImageInfo, *, overlay: Path, config_disk: Path, ssh_port: int,
                       mgmt_mac: str, serial_log: Path, memory_mib: int = 256,
                       accel_args: tuple[str, ...] = ("-accel", "tcg,thread=multi",
                                                      "-cpu", "max"),
                       extra: tuple[str, ...] = (), extra_cmdline: str = "",
                       serial_socket: Path | None = None) -> list[str]:
    """A QEMU command line for one node with no lab around it (tests, `bench/boot.py`).

    Management NIC only, serial console to `serial_log` (and, with `serial_socket`, also on
    that Unix socket, as a lab's `vrlab console` uses it), no reboot (a guest reboot exits).
    """
    chardev = f"file,id=serial0,path={serial_log}"
    if serial_socket is not None:
        chardev = (f"socket,id=serial0,path={serial_socket},server=on,wait=off,"
                   f"logfile={serial_log}")
    from orchestrate.nodeconfig import config_drive_arg, mgmt_device_arg, mgmt_netdev_arg

    return [
        "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
        "-machine", "q35", *accel_args, "-m", str(memory_mib), "-no-reboot",
        *qemu_boot_args(image, extra_cmdline),
        "-drive", root_drive_arg(overlay),
        "-drive", config_drive_arg(config_disk),
        "-netdev", mgmt_netdev_arg(ssh_port),
        "-device", mgmt_device_arg(mgmt_mac),
        "-chardev", chardev,
        "-serial", "chardev:serial0",
        *extra,
    ]


@dataclass
class StandaloneVM:
    """One node of the image booted without a lab (see `boot_standalone`)."""

    process: subprocess.Popen[bytes]
    ssh_port: int
    serial_log: Path
    client_key: Path
    known_hosts: Path
    started: float  # time.monotonic() just before QEMU was started

    def serial_text(self) -> str:
        try:
            return self.serial_log.read_text(errors="replace")
        except OSError:
            return ""

    def markers(self) -> list[Marker]:
        return parse_markers(self.serial_text())

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str,
                 interval: float = 0.02) -> float:
        """Poll until `predicate()`; return seconds since QEMU started. Raises ImageError on
        timeout or if QEMU exits."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.process.poll() is not None:
                raise ImageError(f"QEMU exited ({self.process.returncode}) waiting for {what}: "
                                 f"{self.serial_text()[-600:]}")
            if time.monotonic() > deadline:
                raise ImageError(f"no {what} after {timeout:.0f} s: {self.serial_text()[-600:]}")
            time.sleep(interval)
        return time.monotonic() - self.started

    def wait_marker(self, stage: str, timeout: float = 120.0) -> float:
        return self.wait_for(lambda: any(m.stage.startswith(stage) for m in self.markers()),
                             timeout, f"'vrlab: {stage}' on the serial console")

    def connect(self, timeout: float = 120.0) -> Any:
        """A paramiko client with the pinned host key, retried until sshd answers."""
        from orchestrate import ssh

        deadline = time.monotonic() + timeout
        while True:
            try:
                return ssh.connect(self.ssh_port, self.client_key, self.known_hosts,
                                   timeout=max(5.0, min(30.0, deadline - time.monotonic())))
            except ssh.SshError as exc:
                if "does not match" in str(exc):
                    raise
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise ImageError(f"ssh to 127.0.0.1:{self.ssh_port} failed: {exc}") from exc
                time.sleep(0.2)

    def rss_bytes(self) -> int:
        """QEMU's resident memory (VmRSS), 0 once it has exited."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def free_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def boot_standalone(image: ImageInfo, spec: Any, workdir: Path, *,
                    data_nics: tuple[tuple[str, str], ...] = (),
                    memory_mib: int = 256,
                    accel_args: tuple[str, ...] = ("-accel", "tcg,thread=multi", "-cpu", "max"),
                    serial_socket: Path | None = None) -> Iterator[StandaloneVM]:
    """Boot `image` with the config disk of `spec` (a NodeBootSpec whose keys must match
    `workdir/client_ed25519` and `workdir/host_ed25519`; see `standalone_keys`). `data_nics`
    are (netdev, mac) pairs of extra NICs. The VM is always killed on exit."""
    from orchestrate import nodeconfig, ssh

    workdir.mkdir(parents=True, exist_ok=True)
    overlay = create_overlay(image, workdir / "root.qcow2")
    config = nodeconfig.write_config_disk(spec, workdir / "config.img")
    port = free_tcp_port()
    known_hosts = workdir / "known_hosts"
    ssh.write_known_hosts(known_hosts, {port: spec.host_key_public})
    serial = workdir / "serial.log"
    serial.unlink(missing_ok=True)
    extra: list[str] = []
    for index, (netdev, mac) in enumerate(data_nics):
        extra += ["-netdev", f"{netdev},id=data{index}",
                  "-device", f"virtio-net-pci,netdev=data{index},mac={mac}"]
    argv = standalone_vm_argv(image, overlay=overlay, config_disk=config, ssh_port=port,
                              mgmt_mac=spec.mgmt_mac, serial_log=serial, memory_mib=memory_mib,
                              accel_args=accel_args, extra=tuple(extra),
                              serial_socket=serial_socket)
    started = time.monotonic()
    with open(workdir / "qemu.log", "wb") as qemu_log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qemu_log,
                                   stderr=subprocess.STDOUT)
    vm = StandaloneVM(process, port, serial, workdir / "client_ed25519", known_hosts, started)
    try:
        yield vm
    finally:
        vm.stop()


def standalone_keys(workdir: Path) -> tuple[str, str, str]:
    """(client public line, host private key text, host public line) in `workdir`."""
    from orchestrate import ssh

    client = ssh.generate_key(workdir / "client_ed25519", "vrlab-standalone")
    host = ssh.generate_key(workdir / "host_ed25519", "node@vrlab-standalone")
    return client.public_line(), host.private.read_text(), host.public_line()
