"""Memory shared between a lab's VMs: KSM, and what each VM costs (PSS, RSS).

VMs booted from one image, or restored from one snapshot, hold many identical pages (kernel,
page cache, the appliance's Python). QEMU marks guest RAM mergeable (`-machine mem-merge=on`,
madvise MADV_MERGEABLE); the kernel's KSM merges such pages when it runs. `vrlab up` turns it
on when it can (root) and says when it is off. A VM's fair share of memory is its PSS
(proportional set size: shared pages divided among their users), read from
/proc/PID/smaps_rollup; RSS counts every shared page in full.
"""

from __future__ import annotations

import os
from pathlib import Path

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


def ensure_ksm(ksm_dir: Path = KSM_DIR) -> str | None:
    """Turn KSM on when root; None when it is on, else why it is off."""
    run = ksm_dir / "run"
    try:
        if run.read_text().strip() == "1":
            return None
    except OSError:
        return "KSM is off: this kernel has no KSM (CONFIG_KSM)"
    if os.geteuid() != 0:
        return f"KSM is off (VMs share no memory): as root, echo 1 > {run}"
    try:
        pages = ksm_dir / "pages_to_scan"
        if int(pages.read_text().strip()) < KSM_PAGES_TO_SCAN:
            pages.write_text(f"{KSM_PAGES_TO_SCAN}\n")
        run.write_text("1\n")
    except (OSError, ValueError) as exc:
        return f"KSM is off: turning it on failed ({exc})"
    return None


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
