"""Readiness: the markers the image's init writes on the serial console, and the one poller
that every wait for a VM (a lab node, a standalone boot, a snapshot's preparation) goes through.

The init (images/overlay/usr/sbin/vrlab-init) writes one line per stage,
`vrlab: <stage> t=<guest uptime>`: "init start", "network up", "ssh up", "router up" or
"router failed ..." on routers, and "ready".
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

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
