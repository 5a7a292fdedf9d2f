"""Memory shared between a lab's VMs: KSM, and what each VM costs (PSS, RSS).

VMs booted from one image, or restored from one snapshot, hold many identical pages (kernel,
page cache, the appliance's Python). QEMU marks guest RAM mergeable (`-machine mem-merge=on`,
madvise MADV_MERGEABLE); the kernel's KSM merges such pages when it runs. `vrlab up` turns it
on when it can (root) and says when it is off; the `down` of the last lab holding it puts
KSM's knobs back as they were (`hold_ksm`/`release_ksm`). A VM's fair share of memory is its PSS
(proportional set size: shared pages divided among their users), read from
/proc/PID/smaps_rollup; RSS counts every shared page in full.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

KSM_DIR = Path("/sys/kernel/mm/ksm")
# Guest memory (MiB) of a node whose topology gives none, per role: the measured floor (the
# smallest -m at which the role boots and passes configs/line.yaml's checks) with a margin
# (docs/DESIGN.md "Sizing a node"). Restored from a snapshot, a node's RAM is a private map
# of the snapshot's RAM file, so what it costs is what it touches, not this size; the size
# bounds how far its page cache and the appliance can grow.
ROLE_MEMORY = {"host": 128, "router": 160, "kernel-router": 128}
ROLE_MEMORY_FALLBACK = 256


def role_memory(role: str) -> int:
    """The default guest memory (MiB) of a node of `role`."""
    return ROLE_MEMORY.get(role, ROLE_MEMORY_FALLBACK)


# Pages ksmd looks at per wake-up (every sleep_millisecs = 20 ms by default): 1000 is ~200 MB/s,
# enough to go over 40 VMs in well under a minute, for a few percent of one core.
KSM_PAGES_TO_SCAN = 1000


KSM_STATE = Path("/run/vrlab/ksm.json")
"""Machine-wide (KSM is): what KSM's knobs were before vrlab turned it on, and the journals
of the labs holding it on. /run is emptied at boot, as KSM's knobs are reset."""
_LOCK_ATTEMPTS = 100
"""Tries at KSM_STATE's lock: each retry means another process removed or re-made it."""


def hold_ksm(holder: str, ksm_dir: Path | None = None, state: Path | None = None
             ) -> tuple[str | None, bool]:
    """Have KSM on for `holder` (a lab's journal path) when root.

    Returns (why it is off or None, whether `holder` now holds it: then `release_ksm` must
    follow). KSM that was on before vrlab touched it is left to whoever turned it on.
    """
    ksm_dir, state = ksm_dir or KSM_DIR, state or KSM_STATE
    run = ksm_dir / "run"
    try:
        run.read_text()
    except OSError:
        return "KSM is off: this kernel has no KSM (CONFIG_KSM)", False
    if os.geteuid() != 0:
        if run.read_text().strip() == "1":
            return None, False
        return f"KSM is off (VMs share no memory): as root, echo 1 > {run}", False
    with _locked(state) as data:
        if data.get("saved") is None:
            if run.read_text().strip() == "1":
                return None, False  # on already, and not by vrlab: not ours to hold
            data["saved"] = {name: (ksm_dir / name).read_text().strip()
                             for name in ("run", "pages_to_scan")}
            data["holders"] = []
        try:
            pages = ksm_dir / "pages_to_scan"
            if int(pages.read_text().strip()) < KSM_PAGES_TO_SCAN:
                pages.write_text(f"{KSM_PAGES_TO_SCAN}\n")
            run.write_text("1\n")
        except (OSError, ValueError) as exc:
            if not data["holders"]:
                _restore(ksm_dir, data)
            return f"KSM is off: turning it on failed ({exc})", False
        if holder not in data["holders"]:
            data["holders"].append(holder)
    return None, True


def release_ksm(holder: str, ksm_dir: Path | None = None, state: Path | None = None) -> None:
    """`holder` no longer needs KSM; the last holder puts KSM's knobs back as they were.
    Holders whose journal is gone (a lab removed by hand) no longer count."""
    ksm_dir, state = ksm_dir or KSM_DIR, state or KSM_STATE
    with _locked(state) as data:
        if data.get("saved") is None:
            return
        data["holders"] = [h for h in data.get("holders", [])
                           if h != holder and Path(h).exists()]
        if not data["holders"]:
            _restore(ksm_dir, data)


def _restore(ksm_dir: Path, data: dict[str, Any]) -> None:
    saved = data.pop("saved")
    data.pop("holders", None)
    # pages_to_scan first: with run back at 0 nothing reads it, but in this order a failure
    # leaves KSM running rather than half-restored
    (ksm_dir / "pages_to_scan").write_text(f"{saved['pages_to_scan']}\n")
    (ksm_dir / "run").write_text(f"{saved['run']}\n")


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[dict[str, Any]]:
    """The state file's data, under an exclusive lock, written back on the way out. When
    nothing is held any more the state file, its lock file and their directory are removed,
    so that the last `down` leaves /run as the first `up` found it. A process that waited on
    a lock file removed meanwhile finds it unlinked once it has the lock, and locks the path
    again."""
    lock = state.parent / (state.name + ".lock")
    for _ in range(_LOCK_ATTEMPTS):
        state.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            continue  # the directory was removed between mkdir and open: again
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:
                continue  # the last holder removed it while we waited (by link count: a
                # new lock file may get the removed one's inode number)
            try:
                data: dict[str, Any] = json.loads(state.read_text())
            except (OSError, ValueError):
                data = {}
            yield data
            if data:
                tmp = state.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=2) + "\n")
                os.chmod(tmp, 0o600)
                tmp.replace(state)
            else:
                state.unlink(missing_ok=True)
                lock.unlink(missing_ok=True)  # still locked by us: a waiter tries again
                with contextlib.suppress(OSError):
                    state.parent.rmdir()  # only if empty
            return
        finally:
            os.close(fd)
    raise OSError(f"{lock}: could not lock it in {_LOCK_ATTEMPTS} attempts")


def ksm_shared_mib(ksm_dir: Path = KSM_DIR) -> float:
    """Memory KSM saves right now (pages_sharing: references to a shared page, each a page
    not stored again), in MiB."""
    try:
        sharing = int((ksm_dir / "pages_sharing").read_text().strip())
    except (OSError, ValueError):
        return 0.0
    return sharing * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def process_memory_kib(pid: int) -> tuple[int, int] | None:
    """(PSS, RSS) of a process in KiB from /proc/PID/smaps_rollup; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Pss", "Rss") and rest.split():
            values[name] = int(rest.split()[0])
    if "Pss" not in values or "Rss" not in values:
        return None
    return values["Pss"], values["Rss"]
