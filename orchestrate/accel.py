"""Choosing the QEMU accelerator: `auto`, `kvm` or `tcg`.

`/dev/kvm` existing is not evidence that KVM works: on nested cloud machines it opens, creates
VMs, and then the guest dies mid-boot (emulation failure on cmpxchg16b/xrstor with `-cpu
host`, hangs with `kvm64`). So `auto` decides by doing what a lab does: it boots the lab's own
kernel under `-accel kvm -cpu host` with no root disk and `-no-reboot`, and accepts KVM only if
the kernel gets all the way to looking for its init (the "Run /init" line, or the VFS panic
when there is no initramfs) within a few seconds. Anything else (QEMU error, emulation failure,
no progress) falls back to TCG. The verdict is cached per (kernel, QEMU version, host kernel)
in `$VRLAB_HOME/accel-probe.json`, so the probe costs its seconds once.

`VRLAB_ACCEL=tcg|kvm` overrides `auto` (CI sets nothing; `auto` probes).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrate.record import lab_home

KVM_DEVICE = Path("/dev/kvm")
KVM_GET_API_VERSION = 0xAE00
KVM_API_VERSION = 12
PROBE_TIMEOUT = 10.0
# TCG's translated-code cache: QEMU 7.2 defaults to 1 GiB, and a booting Linux fills enough
# of it to cost 100+ MiB of RSS per VM (a 64 MiB cache is full after one boot). A smaller
# cache costs CPU instead: each time it is full it is flushed and the code running is
# translated again. TCG_TB_MIB is the size for a node of no known role; TCG_TB_MIB_BY_ROLE
# is measured per role (docs/DESIGN.md "Sizing a node"): a host runs little code after its
# boot, a router's Python start-up runs a lot. `VRLAB_TCG_TB_MIB` sets one size for every
# role (measurements).
TCG_TB_MIB = 32
TCG_TB_MIB_BY_ROLE = {"host": 32, "router": 48, "kernel-router": 32}
# Lines the kernel prints only after every initcall ran: it is about to exec init.
PROBE_SUCCESS = ("Run /init as init process", "Kernel panic - not syncing: VFS", "Freeing unused")
PROBE_FAILURE = ("emulation failure", "KVM internal error", "failed to initialize kvm")


class AccelError(Exception):
    """The requested accelerator cannot be used."""


@dataclass(frozen=True, slots=True)
class AccelChoice:
    name: str  # "kvm" or "tcg"
    reason: str

    def qemu_args(self) -> list[str]:
        return qemu_accel_args(self.name)


def tcg_tb_mib(role: str | None = None) -> int:
    """The translation-cache size (MiB) of a TCG node of `role`."""
    override = os.environ.get("VRLAB_TCG_TB_MIB", "")
    if override.isdigit() and int(override) > 0:
        return int(override)
    return TCG_TB_MIB_BY_ROLE.get(role or "", TCG_TB_MIB)


TCG_CPU = "max,-erms,-fsrm"
"""The CPU a TCG guest sees: QEMU's `max` without ERMS and FSRM. With them the guest kernel
copies and clears memory with `rep movsb`/`rep stosb`, which TCG runs one byte per step
(QEMU 7.2); without them it uses 8-byte `movsq`/`stosq` loops. Measured in a guest:
dd from /dev/zero to /dev/null 938 MB/s -> 5.9 GB/s; bench vm-forward TCP through a vrlab
router 186 -> 270 Mbit/s. A KVM guest keeps the host's CPU, where those instructions are fast.
libvirt's TCG domains get the same (`backends.libvirt_xml`)."""
TCG_CPU_DISABLED = ("erms", "fsrm")


def qemu_accel_args(name: str, role: str | None = None) -> list[str]:
    if name == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if name == "tcg":
        return ["-accel", f"tcg,thread=multi,tb-size={tcg_tb_mib(role)}", "-cpu", TCG_CPU]
    raise AccelError(f"unknown accelerator {name!r}")


def kvm_device_usable(device: Path = KVM_DEVICE) -> str | None:
    """None when /dev/kvm opens and speaks API 12, else why not."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"{device}: {exc.strerror}"
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as exc:
        return f"{device}: KVM_GET_API_VERSION failed: {exc.strerror}"
    finally:
        os.close(fd)
    if version != KVM_API_VERSION:
        return f"{device}: KVM API version {version}, want {KVM_API_VERSION}"
    return None


def _qemu_version(qemu: str) -> str:
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def _cache_key(kernel: Path, qemu: str) -> str:
    stat = kernel.stat()
    return "|".join(
        [str(kernel.resolve()), str(stat.st_size), str(int(stat.st_mtime)),
         _qemu_version(qemu), os.uname().release]
    )


def probe_kvm_boot(kernel: Path, initrd: Path | None, qemu: str = "qemu-system-x86_64",
                   timeout: float = PROBE_TIMEOUT) -> str | None:
    """Boot `kernel` under KVM until it looks for init. None on success, else the failure."""
    with tempfile.TemporaryDirectory(prefix="vrlab-kvm-probe-") as tmp:
        serial = Path(tmp) / "serial.log"
        argv = [
            qemu, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-m", "256", *qemu_accel_args("kvm"),
            "-serial", f"file:{serial}",
            "-kernel", str(kernel),
            # rdinit points nowhere so no userspace runs; panic=-1 + -no-reboot makes QEMU exit.
            "-append", "console=ttyS0 panic=-1 root=/dev/vrlab-none rdinit=/vrlab-none",
        ]
        if initrd is not None:
            argv += ["-initrd", str(initrd)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        verdict: str | None = "no progress within the probe timeout"
        try:
            while time.monotonic() < deadline:
                text = serial.read_text(errors="replace") if serial.exists() else ""
                if any(marker in text for marker in PROBE_SUCCESS):
                    verdict = None
                    break
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    verdict = f"qemu exited ({proc.returncode}) before init: {err.strip()[:200]}"
                    break
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr:
                err = proc.stderr.read().decode(errors="replace")
                if verdict is None and any(m in err for m in PROBE_FAILURE):
                    verdict = err.strip()[:200]
                proc.stderr.close()
        return verdict


def choose_accel(requested: str, kernel: Path | None = None, initrd: Path | None = None,
                 qemu: str = "qemu-system-x86_64", device: Path = KVM_DEVICE) -> AccelChoice:
    """Resolve `auto|kvm|tcg` to what the VMs will run with, and say why."""
    if requested == "auto":
        override = os.environ.get("VRLAB_ACCEL", "")
        if override in ("kvm", "tcg"):
            requested = override
    if requested == "tcg":
        return AccelChoice("tcg", "requested")
    problem = kvm_device_usable(device)
    if requested == "kvm":
        if problem:
            raise AccelError(f"accel kvm requested but {problem}")
        return AccelChoice("kvm", "requested")
    if requested != "auto":
        raise AccelError(f"unknown accelerator {requested!r} (auto, kvm or tcg)")
    if problem:
        return AccelChoice("tcg", problem)
    if kernel is None:
        return AccelChoice("tcg", "no kernel to probe KVM with")
    cache = lab_home() / "accel-probe.json"
    key = _cache_key(kernel, qemu)
    try:
        cached = json.loads(cache.read_text())
    except (OSError, ValueError):
        cached = {}
    if isinstance(cached, dict) and key in cached:
        failure = cached[key]
    else:
        failure = probe_kvm_boot(kernel, initrd, qemu)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cached = cached if isinstance(cached, dict) else {}
        cached[key] = failure
        cache.write_text(json.dumps(cached, indent=1))
    if failure is None:
        return AccelChoice("kvm", "probe boot under KVM reached init")
    return AccelChoice("tcg", f"KVM probe boot failed: {failure}")
