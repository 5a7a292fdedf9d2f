"""Building the vrlab VM image from images/ with mmdebstrap, into the cache (`ensure_image`).

A build works in `images/.build-<digest>-<pid>/` and renames it into place only when complete:
an interrupted build leaves no image, and `prune` removes its leftovers.

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
import json
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from orchestrate.images.cache import (
    APPLIANCE_DIR,
    BASE_MANIFEST,
    BASE_PREFIX,
    BUILD_FORMAT,
    BUILD_PREFIX,
    DIGEST_LENGTH,
    MANIFEST,
    RECIPE_DIR,
    ImageError,
    ImageInfo,
    appliance_files,
    base_digest,
    cache_lock,
    compute_digest,
    find_image,
    images_dir,
    load_recipe,
    prune_images,
    read_image,
    recipe_files,
)

IMAGE_PYTHON_ABI = "cpython-311-x86_64-linux-gnu"
IMAGE_PYTHON_INCLUDE = Path("/usr/include/python3.11")
APPLIANCE_PREFIX = "opt/vrlab"  # the appliance package lands in /opt/vrlab/appliance
MMDEBSTRAP_TIMEOUT = 1800.0
AUTO_KEEP_IMAGES = 3  # newest images kept by the prune after each build

Progress = Callable[[str], None]


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
    with cache_lock(root, digest):
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


def ensure_base(recipe_dir: Path, root: Path, report: Progress) -> Path:
    """The cached Debian base `root/base-<digest>/` (its `rootfs/`), built by mmdebstrap."""
    digest = base_digest(recipe_dir)
    name = f"{BASE_PREFIX}{digest[:DIGEST_LENGTH]}"
    final = root / name
    with cache_lock(root, name):
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
