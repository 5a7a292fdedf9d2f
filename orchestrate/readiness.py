"""Readiness: the markers the image's init writes on the serial console, and the one poller
that every wait for a VM (a lab node, a standalone boot, a snapshot's preparation) goes through.

The init (images/overlay/usr/sbin/vrlab-init) writes one line per stage,
`vrlab: <stage> t=<guest uptime>`: "init start", "network up", "ssh up", "router up" or
"router failed ..." on routers, and "ready".
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrate.backends import Backend
    from orchestrate.lab import Lab

BOOT_MARKERS = ("Linux version", "\n")  # the banner, or any line (a `quiet` kernel)
# The router's control socket asked for its status over SSH, the way routerctl asks, but with
# netcat: a routerctl (a Python start, ~0.6 s of the guest's one vCPU under TCG even on a quiet
# machine) per router per `up` was a third of a restored router's CPU before it was ready.
ROUTER_PROBE = """printf '{"op":"status"}\\n' | nc -NU /run/vrlab-router.sock"""
ROUTER_PROBE_OK = '"ok":true'
ROUTER_UP_MARKER = "vrlab: router up"  # written by images/overlay/usr/sbin/vrlab-init
ROUTER_FAILED_MARKER = "vrlab: router failed"
SSH_UP_MARKER = "vrlab: ssh up"
SSH_FAILED_MARKER = "vrlab: ssh failed"

def stages(role: str, restored: bool) -> tuple[str, ...]:
    """A node's stages in `vrlab up`'s table, in order ("queued": waiting for admission)."""
    return ("queued", "boot", *(("restore", "restored") if restored else ()), "booted", "ssh",
            *(("router",) if role == "router" else ()), "ready")

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


def poll_until(condition: Callable[[], bool], *, interval: float,
               alive: Callable[[], None] | None = None,
               cancel: threading.Event | None = None,
               deadline: float | None = None) -> bool:
    """Call `condition` every `interval` seconds until it returns True (then True).

    Between tries `alive()` is called: it raises when what is awaited can no longer get there
    (its VM exited). False when `cancel` is set or the `deadline` (time.monotonic()) passes.
    """
    while True:
        if condition():
            return True
        if alive is not None:
            alive()
        if deadline is not None and time.monotonic() >= deadline:
            return False
        if cancel is not None:
            if cancel.wait(interval):
                return False
        else:
            time.sleep(interval)


# -- a lab's nodes ---------------------------------------------------------------------------


def wait_ready(lab: Lab, timeout: float, progress: bool,
               on_event: Callable[[str, str, str], None] | None,
               start: Callable[[str], None] | None = None, admit: int | None = None) -> None:
    """Return when every node of `lab` is ready; LabError naming the node and the stage it is
    stuck in, or why its VM failed. `progress` shows the live table on stderr."""
    from orchestrate.lab import LabError

    names = lab.nodes()
    watch = _Watch(names, time.monotonic(), on_event, "queued" if start else "boot")
    errors: dict[str, str] = {}
    # Admission: at most `admit` nodes between their start and ready at once, so that a big
    # lab does not start every VM on a small machine together (each waits its turn, "queued").
    restored = all(lab.spec(name).incoming is not None for name in names)
    slots = threading.Semaphore(admit or admission(len(names), restored))

    def guarded(node: str) -> None:
        try:
            if start is None:
                _wait_node(lab, node, watch)
                return
            while not slots.acquire(timeout=0.2):
                if watch.cancel.is_set():
                    return
            try:
                if watch.cancel.is_set():
                    return
                start(node)
                watch.advance(node, "boot")
                _wait_node(lab, node, watch)
            finally:
                slots.release()
        except Exception as exc:
            errors[node] = str(exc)
            watch.cancel.set()

    deadline = watch.started + timeout
    display = ProgressDisplay(names, watch.stage, watch.since, watch.started,
                               enabled=progress)
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool, display:
        futures = [pool.submit(guarded, n) for n in names]
        poll_until(lambda: all(f.done() for f in futures), interval=0.2,
                   alive=display.refresh, deadline=deadline)
        watch.cancel.set()
    display.refresh()
    if errors:
        node, message = sorted(errors.items())[0]
        raise LabError(message)
    late = [n for n in names if watch.stage[n] != "ready"]
    if late:
        node = late[0]
        spec = lab.spec(node)
        wanted = _next_stage(stages(spec.role, spec.incoming is not None), watch.stage[node])
        tail = _tail(spec.serial_log, 3)
        raise LabError(
            f"{node}: did not reach stage {wanted!r} within {timeout:.0f} s "
            f"(stuck after {watch.stage[node]!r}); serial log: {spec.serial_log}"
            + (f"\n  last lines: {tail}" if tail else "")
            + (f"\n  also late: {', '.join(late[1:])}" if len(late) > 1 else "")
        )


def _wait_node(lab: Lab, node: str, watch: _Watch) -> None:
    """Walk one node through its `stages` after its start; return early when
    `watch.cancel` is set, raise LabError when its VM exits or its router fails."""
    from orchestrate import ssh
    from orchestrate.lab import LabError

    spec = lab.spec(node)
    backend = lab.backend()
    started = time.monotonic()

    def alive() -> None:
        if backend.status(lab.record, node) != "running":
            tail = _tail(spec.qemu_log, 5)
            raise LabError(f"{node}: the VM exited during stage {watch.stage[node]!r}"
                           f"{': ' + tail if tail else ''} (serial log: "
                           f"{spec.serial_log})")

    def console_says(up: str, failed: str, what: str, lines: int) -> Callable[[], bool]:
        """A probe: the init's `up` marker is on the console (its `failed` one: an error)."""
        def probe() -> bool:
            text = lab.serial_text(node)
            if failed in text:
                raise LabError(f"{node}: {what} failed to start: "
                               f"{_tail(spec.serial_log, lines)} (serial log: "
                               f"{spec.serial_log})")
            return up in text
        return probe

    router_marker = console_says(ROUTER_UP_MARKER, ROUTER_FAILED_MARKER, "vrlab-router", 8)

    def router_answers() -> bool:
        try:
            result = lab.node(node).exec(ROUTER_PROBE, timeout=30.0)
        except ssh.SshError:
            return False
        return result.ok and ROUTER_PROBE_OK in result.stdout

    ssh_marker = console_says(SSH_UP_MARKER, SSH_FAILED_MARKER, "sshd", 4)

    def ssh_session() -> bool:
        # The node's own connection, kept: the router probe and the user's first command
        # reuse it (each key exchange costs the guest's one vCPU a few tenths of a second).
        try:
            lab.node(node).connect(timeout=30.0)
        except ssh.SshError:
            return False
        return True

    restored = spec.incoming is not None
    # How often the serial log is read for a marker: cheap for a local file; on the libvirt
    # backend each read fetches the log from the node's host.
    marker_poll = 0.05 if restored else 0.25
    # (condition, poll interval, the stage reached when it holds)
    waits: list[tuple[Callable[[], bool], float, str]] = [
        (lambda: any(m in lab.serial_text(node) for m in BOOT_MARKERS), 0.25, "booted"),
    ]
    if restored:
        # The init says "ssh up" once sshd listens; probing before that finds a guest that
        # has no management address yet, where QEMU's user network holds the connection
        # until the probe's timeout (measured: ready 4 s after "ssh up" on the console).
        waits += [(lambda: ssh_marker() and ssh_session(), marker_poll, "ssh")]
    else:
        waits += [(lambda: ssh.ssh_answers(spec.ssh_port, lab.client_key, lab.known_hosts,
                                           timeout=3.0, opener=lab.management_opener(node)),
                   0.5, "ssh")]
    if spec.role == "router":
        # The init reports the appliance on the serial console ("vrlab: router up" or
        # "vrlab: router failed"). Wait for that first: every routerctl over SSH starts
        # a Python process on the guest's one vCPU, and under TCG polling with it
        # starved the daemon's own start (r1 ready at ~55 s instead of ~15 s). Then one
        # confirmation through the path users take (SSH to the control socket).
        waits += [(router_marker, marker_poll, "router"), (router_answers, 1.0, "router")]
    if restored:
        # Restored from a snapshot: once QEMU has loaded the state and runs, the init waits
        # for its go on the serial console (orchestrate.snapshot).
        watch.advance(node, "restore")
        loading: list[bool] = []
        if not poll_until(lambda: _resumed(backend, lab, node, spec.incoming, loading),
                          interval=0.02, alive=alive, cancel=watch.cancel):
            return
        from orchestrate.snapshot import go_line

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as console:
            console.connect(str(spec.serial_socket))
            console.sendall(go_line())
            # Keep the connection until the guest has the line: QEMU drops what it has not
            # yet passed to the UART when the client hangs up.
            if not poll_until(lambda: "vrlab: restored" in _read(spec.serial_log),
                              interval=0.05, alive=alive, cancel=watch.cancel):
                return
        watch.advance(node, "restored")
        watch.restore_seconds[node] = time.monotonic() - started
    for condition, interval, reached in waits:
        if not poll_until(condition, interval=interval, alive=alive, cancel=watch.cancel):
            return
        if watch.stage[node] != reached:
            watch.advance(node, reached)
        if reached == "ssh" and spec.role == "router":
            watch.advance(node, "router")
    if any(nic.netem for nic in spec.nics):
        # Link impairments live in the guest (orchestrate.netem): shaped once the node runs
        # (after a snapshot restore too), before it counts as ready and any check runs.
        from orchestrate import netem

        netem.apply(lab, node)
    watch.advance(node, "ready")


def _resumed(backend: Backend, lab: Lab, node: str, state: Path | None,
             loading: list[bool]) -> bool:
    """True once the restored VM runs. QEMU waits for its state (`-incoming defer`): the first
    answer on QMP starts the load (`orchestrate.snapshot.incoming_commands`; `loading` then
    holds True). The state was saved stopped, so QEMU stays paused after loading it
    ("inmigrate" until then) and is continued here."""
    from orchestrate.backends import BackendError
    from orchestrate.snapshot import incoming_commands

    try:
        if not loading and state is not None:
            for command, arguments in incoming_commands(state):
                backend.qmp(lab.record, node, command, **arguments)
            loading.append(True)
            return False
        reply = backend.qmp(lab.record, node, "query-status")
        status = reply.get("status") if isinstance(reply, dict) else None
        if status == "paused":
            backend.qmp(lab.record, node, "cont")
            return True
    except BackendError:
        return False  # QMP not up yet
    return status == "running"


def admission(nodes: int, restored: bool = False) -> int:
    """How many nodes may be starting at once, and always at least two: VMs under TCG are
    CPU-bound, so more at once only stretches each one's start. Two per CPU for cold boots;
    one per CPU when every node is restored from a snapshot. Measured on this 2-core machine:
    20-node chain, all-ready 20-26 s at 2, 4 and 8 at once (load 8-14 from other work) with
    each node's own start to ready 1.8-2.3, 3.7-3.9 and 6.9-7.8 s. One at a time (session 6,
    10-, 20- and 40-node chains, same code, back to back) took 1.6-1.8x as long to all-ready
    (18.7/35.4/73.1 s against 10.5/20.6/45.9 s) for nodes barely quicker (start to ready,
    median/max, 1.9/2.4, 1.7/2.2, 1.7/2.4 s against 2.1/2.5, 1.9/2.5, 2.1/2.9 s), so two it
    is. `VRLAB_ADMIT` sets it."""
    override = os.environ.get("VRLAB_ADMIT", "")
    if override.isdigit() and int(override) > 0:
        return int(override)
    return max(2, (1 if restored else 2) * (os.cpu_count() or 1))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int) -> str:
    text = _read(path).strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:])


def _next_stage(order: tuple[str, ...], current: str) -> str:
    index = order.index(current) if current in order else 0
    return order[min(index + 1, len(order) - 1)]


class _Watch:
    """The stage of every node while `up` waits for them, shared by their waiting threads."""

    def __init__(self, names: list[str], started: float,
                 on_event: Callable[[str, str, str], None] | None, first: str = "boot",
                 ) -> None:
        self.started = started
        self.stage: dict[str, str] = {n: first for n in names}
        self.restore_seconds: dict[str, float] = {}
        self.since: dict[str, float] = {n: started for n in names}
        self.cancel = threading.Event()
        self.on_event = on_event

    def advance(self, node: str, stage: str) -> None:
        self.stage[node] = stage
        self.since[node] = time.monotonic()
        if self.on_event:
            self.on_event(node, stage, f"{time.monotonic() - self.started:.1f}s")


class ProgressDisplay:
    """A live table of node, stage and time (rich), or nothing when disabled."""

    def __init__(self, names: list[str], stage: dict[str, str], since: dict[str, float],
                 started: float, enabled: bool) -> None:
        self.names, self.stage, self.since, self.started = names, stage, since, started
        self.enabled = enabled
        self.live: Any = None

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._table(), console=Console(stderr=True),
                             refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(None, None, None)
            if not self.live.console.is_terminal:
                # Off a terminal rich prints the table once, at the end, without the final
                # newline: what comes next would start on the table's bottom border.
                self.live.console.line()

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._table())

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"vrlab up ({time.monotonic() - self.started:.0f} s)",
                      title_justify="left")
        table.add_column("node")
        table.add_column("stage")
        table.add_column("since", justify="right")
        for name in self.names:
            stage = self.stage[name]
            style = "green" if stage == "ready" else "yellow"
            table.add_row(name, f"[{style}]{stage}[/{style}]",
                          f"{self.since[name] - self.started:.1f} s")
        return table
