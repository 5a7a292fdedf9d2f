"""Snapshot boot: boot a node's kind once, save the VM, restore every node of that kind from it.

Every node of a role boots the same kernel and image into the same first state. So, once per
image and *shape* (role, memory, vCPUs, accelerator, the MTU of each data NIC), one VM is
booted with `vrlab.snapshot=<role>` on its kernel command line: the image's init
(images/overlay/usr/sbin/vrlab-init) does what every such node does alike (on routers it
starts the appliance, which imports itself and then waits), flushes what the kernel read of
the config disk, and says `vrlab: snapshot point` on the serial console. The VM is stopped
and its state saved (QMP `migrate` to `exec:cat > state`), its root overlay kept as the
snapshot's disk. Nodes then start with the same command line plus `-incoming exec:cat state`
on a qcow2 overlay of that disk; once QEMU runs, vrlab writes `go SECONDS SEED` on the node's
serial console, and the init sets the clock, reseeds the kernel's random generator, and only
then reads the node's own config disk: hostname, MACs (restore-macs), addresses, host keys
and router config are never in the saved state.

A snapshot lives next to its image, `<image>/snapshots/<key>/` (`state`, `disk.qcow2`,
`snapshot.json`). The key is a SHA-256 over the QEMU command line of the shape (with the
per-node paths and ports fixed: machine type, devices and their order, memory, -cpu, kernel,
kernel command line), the QEMU version and SNAPSHOT_FORMAT: when any of them changes, the
key does, and the node boots cold until the new snapshot is made. The image's digest covers
the init and the appliance, and the image directory is per digest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from orchestrate import links, nodeconfig
from orchestrate.backends import BackendError, NodeSpec
from orchestrate.images import ImageError, ImageInfo, create_overlay, image_overlay
from orchestrate.images.cache import cache_lock
from orchestrate.readiness import Marker, parse_markers, poll_until

SNAPSHOT_FORMAT = 2  # 2: guest RAM in a file of its own (RAM), not in the state
BOOT_MODES = ("snapshot", "cold")
DEFAULT_BOOT = "snapshot"
SNAPSHOT_POINT = "snapshot point"
PREPARE_TIMEOUT = 300.0  # a cold boot to the snapshot point under TCG on a loaded machine
STATE = "state"
RAM = "ram"
RAM_BACKEND_ID = "ram0"
DISK = "disk.qcow2"
MANIFEST = "snapshot.json"


class SnapshotError(Exception):
    """A snapshot could not be made or used (the node then boots cold)."""


def default_boot() -> str:
    """`VRLAB_BOOT` (snapshot or cold), else snapshot."""
    mode = os.environ.get("VRLAB_BOOT", DEFAULT_BOOT)
    return mode if mode in BOOT_MODES else DEFAULT_BOOT


@dataclass(frozen=True, slots=True)
class Shape:
    """What must be alike for nodes to share a snapshot (besides the image)."""

    role: str
    memory: int
    cpus: int
    accel: str
    mtus: tuple[int, ...]  # one per data NIC, in command-line order

    @classmethod
    def of(cls, spec: NodeSpec) -> Shape:
        return cls(spec.role, spec.memory, spec.cpus, spec.accel,
                   tuple(nic.mtu for nic in spec.nics))

    def describe(self) -> str:
        return (f"{self.role}, {len(self.mtus)} data NIC{'s' * (len(self.mtus) != 1)}, "
                f"{self.memory} MiB")


@dataclass(frozen=True, slots=True)
class Snapshot:
    key: str
    directory: Path
    cmdline: str

    @property
    def state(self) -> Path:
        return self.directory / STATE

    @property
    def disk(self) -> Path:
        return self.directory / DISK


def snapshot_memory_args(ram: Path, memory: int, share: bool) -> list[str]:
    """Guest RAM as the file `ram`. The VM that makes a snapshot maps it shared, so the guest's
    memory is written there and the saved state leaves it out (x-ignore-shared: ~0.7 MB of
    device state instead of ~75-95 MB of RAM). Restored nodes map it private: copy-on-write
    on pages of the host's page cache, which every node of the shape shares until it writes
    to them. So a restore copies no RAM, and a node's own memory (its PSS beyond its share of
    the file) is only what it changed. The QEMU property `merge` keeps those pages open to
    KSM (orchestrate.memory)."""
    return ["-object", (f"memory-backend-file,id={RAM_BACKEND_ID},size={memory}M,"
                        f"mem-path={ram},share={'on' if share else 'off'},merge=on"),
            "-machine", f"memory-backend={RAM_BACKEND_ID}"]


def restore_qemu_args(state: Path, memory: int) -> list[str]:
    """What a restored node adds to its command line: the snapshot's RAM file, mapped
    private, and `-incoming defer` (the readiness wait then starts the load through QMP
    with `incoming_commands`: x-ignore-shared must be on before it, and QEMU 7.2 has no
    command-line switch for a migration capability)."""
    return [*snapshot_memory_args(state.parent / RAM, memory, share=False),
            "-incoming", "defer"]


IGNORE_SHARED: dict[str, object] = {
    "capabilities": [{"capability": "x-ignore-shared", "state": True}]}
"""`migrate-set-capabilities`' arguments, on both ends: the state leaves out (and the load
expects no) guest RAM, which is the snapshot's RAM file."""


def incoming_commands(state: Path) -> list[tuple[str, dict[str, object]]]:
    """The QMP commands that load a saved state into a QEMU started with
    `restore_qemu_args`."""
    return [("migrate-set-capabilities", IGNORE_SHARED),
            ("migrate-incoming", {"uri": f"exec:cat {shlex.quote(str(state))}"})]


def snapshot_cmdline(image: ImageInfo, role: str) -> str:
    return f"{image.cmdline} vrlab.snapshot={role}"


def shape_spec(image: ImageInfo, shape: Shape, directory: Path, run_dir: Path,
               ssh_port: int = 22) -> NodeSpec:
    """The NodeSpec of the VM that makes the snapshot (its NICs on empty hubs, its MACs the
    snapshot's); with the default paths, the canonical one the key is computed from."""
    from orchestrate.backends import snapshot_mac

    nics = [links.NicSpec(node="snapshot", ifname=f"eth{index + 1}", mac=snapshot_mac(index),
                          mtu=mtu, link=-1, kind="none")
            for index, mtu in enumerate(shape.mtus)]
    return NodeSpec(
        lab="snapshot", name="snapshot", role=shape.role, memory=shape.memory,
        cpus=shape.cpus, accel=shape.accel, kernel=image.kernel, initrd=image.initrd,
        cmdline=snapshot_cmdline(image, shape.role), overlay=directory / DISK,
        config_disk=directory / "config.img", mgmt_mac=snapshot_mac(-1), ssh_port=ssh_port,
        mgmt_netdev=nodeconfig.management_netdev_options(ssh_port), node_dir=directory,
        run_dir=run_dir, nics=nics)


@functools.cache
def qemu_version(binary: str) -> str:
    try:
        result = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                check=False, stdin=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else "unknown"


def snapshot_key(image: ImageInfo, shape: Shape) -> str:
    from orchestrate.backends.qemu import build_argv, qemu_binary

    canonical = build_argv(shape_spec(image, shape, Path("/snapshot"), Path("/run")),
                           extra=snapshot_memory_args(Path("/snapshot") / RAM, shape.memory,
                                                      share=True))
    sha = hashlib.sha256(f"vrlab-snapshot {SNAPSHOT_FORMAT}\0".encode())
    sha.update(f"{qemu_version(qemu_binary())}\0{image.digest}\0".encode())
    sha.update("\0".join(canonical).encode())
    return sha.hexdigest()


def snapshots_dir(image: ImageInfo) -> Path:
    return image.directory / "snapshots"


def find_snapshot(image: ImageInfo, shape: Shape) -> Snapshot | None:
    key = snapshot_key(image, shape)
    directory = snapshots_dir(image) / key[:16]
    try:
        data = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != key or not all((directory / name).is_file()
                                         for name in (STATE, DISK, RAM)):
        return None
    return Snapshot(key, directory, str(data["cmdline"]))


def ensure_snapshot(image: ImageInfo, shape: Shape,
                    report: Callable[[str], None] = lambda text: None) -> Snapshot:
    """The snapshot of `shape`, made (one cold boot, ~10-20 s under TCG) if missing."""
    found = find_snapshot(image, shape)
    if found is not None:
        return found
    key = snapshot_key(image, shape)
    root = snapshots_dir(image)
    with cache_lock(root, key):
        found = find_snapshot(image, shape)
        if found is not None:
            return found
        report(f"making the boot snapshot for {shape.describe()} (once per image)")
        return _make_snapshot(image, shape, key, root)


def _make_snapshot(image: ImageInfo, shape: Shape, key: str, root: Path) -> Snapshot:
    from orchestrate.backends.qemu import build_argv, free_tcp_port, qmp_command

    final = root / key[:16]
    work = root / f".build-{key[:16]}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    run_dir = Path(tempfile.mkdtemp(prefix="vrlab-snap-"))
    started = time.monotonic()
    process: subprocess.Popen[bytes] | None = None
    try:
        spec = shape_spec(image, shape, work, run_dir, free_tcp_port())
        image_overlay(image, spec.overlay)
        # A blank config disk of a node's size: the guest must not read one before the save.
        with open(spec.config_disk, "wb") as blank:
            blank.truncate(nodeconfig.CONFIG_DISK_MIB << 20)
        # The VM is vrlab's for these seconds only and in no lab's journal: it dies with the
        # thread that started it (setpriv --pdeathsig) and, in our process group, on Ctrl-C.
        argv = build_argv(spec, extra=snapshot_memory_args(work / RAM, shape.memory,
                                                           share=True))
        if shutil.which("setpriv"):
            argv = ["setpriv", "--pdeathsig", "KILL", "--", *argv]
        with open(spec.qemu_log, "wb") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT)

        def alive() -> None:
            assert process is not None
            if process.poll() is not None:
                raise SnapshotError(f"the snapshot VM exited ({process.returncode}): "
                                    f"{_tail(spec.serial_log)}")
            if any(m.stage.startswith("router failed") for m in _markers(spec)):
                raise SnapshotError(f"the appliance failed to load: {_tail(spec.serial_log)}")

        if not poll_until(lambda: any(m.stage == SNAPSHOT_POINT for m in _markers(spec)),
                          interval=0.1, alive=alive,
                          deadline=time.monotonic() + PREPARE_TIMEOUT):
            raise SnapshotError(f"no '{SNAPSHOT_POINT}' after {PREPARE_TIMEOUT:.0f} s: "
                                f"{_tail(spec.serial_log)}")
        time.sleep(0.2)  # let the init reach its read of the serial console
        qmp_command(spec.qmp_socket, "migrate-set-capabilities", IGNORE_SHARED)
        qmp_command(spec.qmp_socket, "stop")
        qmp_command(spec.qmp_socket, "migrate",
                    {"uri": f"exec:cat > {work / STATE}"})

        def migrated() -> bool:
            status = qmp_command(spec.qmp_socket, "query-migrate")
            state = status.get("status") if isinstance(status, dict) else None
            if state in ("failed", "cancelled"):
                raise SnapshotError(f"saving the VM state: {status}")
            return state == "completed"

        if not poll_until(migrated, interval=0.05, deadline=time.monotonic() + 120.0):
            raise SnapshotError("saving the VM state did not complete in 120 s")
        with contextlib.suppress(BackendError):
            qmp_command(spec.qmp_socket, "quit", timeout=2.0)
        process.wait(10)
        uptime = next((m.uptime for m in _markers(spec) if m.stage == SNAPSHOT_POINT), None)
        (work / MANIFEST).write_text(json.dumps({
            "key": key, "format": SNAPSHOT_FORMAT, "image": image.digest,
            "cmdline": spec.cmdline, "shape": dataclasses.asdict(shape),
            "argv": argv, "made_at": time.time(),
            "seconds": round(time.monotonic() - started, 1),
            "guest_uptime_at_save": uptime,
            "state_bytes": (work / STATE).stat().st_size,
            "ram_bytes_used": (work / RAM).stat().st_blocks * 512,
        }, indent=2) + "\n")
        (work / "config.img").unlink()
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(run_dir, ignore_errors=True)
    found = find_snapshot(image, shape)
    if found is None:
        raise SnapshotError(f"{final}: made but incomplete")
    return found


def restore_spec(spec: NodeSpec, snapshot: Snapshot) -> NodeSpec:
    """`spec` restored from `snapshot`: its command line is the snapshot's (+ -incoming)."""
    return dataclasses.replace(spec, cmdline=snapshot.cmdline, incoming=snapshot.state)


def snapshot_overlay(snapshot: Snapshot, path: Path) -> Path:
    """A node's root overlay on the snapshot's disk (the disk as the saved state knows it)."""
    return create_overlay(snapshot.disk, path, "qcow2")


def restore_macs(spec: NodeSpec) -> dict[str, str]:
    """Node MAC -> the snapshot's MAC, for the config disk (the init swaps them)."""
    if spec.incoming is None:
        return {}
    macs = {spec.mgmt_mac: spec.device_mac(-1)}
    macs.update({nic.mac: spec.device_mac(index) for index, nic in enumerate(spec.nics)})
    return macs


def go_line() -> bytes:
    """What a restored node's init waits for: the wall clock and a fresh random seed."""
    return f"go {time.time():.6f} {os.urandom(32).hex()}\n".encode()


def _markers(spec: NodeSpec) -> list[Marker]:
    try:
        return parse_markers(spec.serial_log.read_text(errors="replace"))
    except OSError:
        return []


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def node_snapshots(image: ImageInfo, specs: dict[str, NodeSpec],
                   progress: bool) -> dict[str, Snapshot]:
    """The snapshot each node restores from, made when missing (one per shape, two at a
    time); nodes whose snapshot fails are left out and boot cold, with a word on stderr."""
    shapes = {name: Shape.of(spec) for name, spec in specs.items()}

    def report(text: str) -> None:
        if progress:
            print(f"vrlab: {text}", file=sys.stderr, flush=True)

    def one(shape: Shape) -> Snapshot | None:
        try:
            return ensure_snapshot(image, shape, report)
        except (SnapshotError, BackendError, ImageError, OSError) as exc:
            print(f"vrlab: no boot snapshot for {shape.describe()} ({exc}); "
                  f"those nodes boot cold", file=sys.stderr, flush=True)
            return None

    unique = sorted(set(shapes.values()), key=repr)
    with ThreadPoolExecutor(max_workers=2) as pool:
        made = dict(zip(unique, pool.map(one, unique), strict=True))
    return {name: snap for name, shape in shapes.items()
            if (snap := made[shape]) is not None}
