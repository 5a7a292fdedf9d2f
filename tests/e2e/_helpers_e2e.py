"""Helpers shared by the end-to-end tests that boot VMs (tests/e2e/test_*.py).

Everything here is bounded: every command has a timeout, every wait a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"

needs_vms = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs QEMU"),
]


class CommandFailed(AssertionError):
    """A command in a node exited non-zero where the test needed it to work."""


def run(lab: Any, node: str, command: str, timeout: float = 30.0, *, check: bool = True) -> Any:
    """Run `command` (sh) on `node`; with `check`, fail the test on a non-zero exit."""
    result = lab.node(node).exec(command, timeout)
    if check and result.exit_status != 0:
        raise CommandFailed(f"{node}: `{command}` exited {result.exit_status}\n"
                            f"stdout: {result.stdout}\nstderr: {result.stderr}")
    return result


def routerctl_json(lab: Any, router: str, *args: str, timeout: float = 30.0) -> Any:
    """`routerctl <args> --json` on `router`, parsed."""
    result = run(lab, router, shlex.join(["routerctl", *args, "--json"]), timeout)
    return json.loads(result.stdout)


def neighbors(lab: Any, router: str) -> dict[str, dict[str, Any]]:
    """The router's neighbor cache by address (`routerctl show neighbors --json`)."""
    return {entry["address"]: entry for entry in routerctl_json(lab, router, "show", "neighbors")}


def counter_delta(before: dict[str, int], after: dict[str, int], key: str) -> int:
    """How much `key` moved between two `lab.counters()` snapshots (absent = 0)."""
    return after.get(key, 0) - before.get(key, 0)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.5,
             what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def extra_address(lab: Any, node: str, ifname: str, address: str) -> Iterator[str]:
    """Add `address` (with prefix length) to node:ifname for the block, then remove it.

    A fresh address is a destination nobody has resolved or learned a path MTU / redirect
    for yet, which makes "the first packet" tests repeatable on a lab that is already warm.
    IPv6 addresses skip DAD (`nodad`) so they are usable at once.
    """
    family = "-6" if ":" in address else "-4"
    nodad = " nodad" if family == "-6" else ""
    run(lab, node, f"ip {family} addr add {address} dev {ifname}{nodad}")
    try:
        yield address.split("/")[0]
    finally:
        run(lab, node, f"ip {family} addr del {address} dev {ifname}", check=False)


def traceroute_hops(lab: Any, node: str, target: str, family: int, max_hops: int = 6
                    ) -> tuple[list[str | None], str]:
    """(address that answered each hop, None for `*`; the raw output) of a traceroute."""
    from orchestrate.checks import parse_traceroute

    command = shlex.join(["traceroute", f"-{family}", "-n", "-q", "1", "-w", "3",
                          "-m", str(max_hops), target])
    result = run(lab, node, command, timeout=max_hops * 4 + 20)
    return parse_traceroute(result.stdout), result.stdout


UDP_PROBE = """
import socket, sys
for target in sys.argv[1:]:
    address, port = target.rsplit(",", 1)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(4)
    s.connect((address, int(port)))
    s.send(b"vrlab e2e probe")
    try:
        s.recv(100)
        print(target, "reply")
    except ConnectionRefusedError:
        print(target, "refused")
    except socket.timeout:
        print(target, "timeout")
"""


def udp_probe(lab: Any, node: str, targets: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """Send one UDP datagram from `node` to each (address, port), one after the other.

    Each answer is "refused" when an ICMP port unreachable came back (the connected socket
    gets ECONNREFUSED), "reply" or "timeout". One python3 start in the VM for all of them.
    """
    args = " ".join(shlex.quote(f"{address},{port}") for address, port in targets)
    out = run(lab, node, f"python3 -c {shlex.quote(UDP_PROBE)} {args}",
              timeout=20 + 5 * len(targets)).stdout
    answers: dict[tuple[str, int], str] = {}
    for line in out.splitlines():
        target, _, verdict = line.partition(" ")
        address, _, port = target.rpartition(",")
        answers[(address, int(port))] = verdict
    return answers


def min_rtt(lab: Any, src: str, address: str, count: int = 10) -> float:
    """The minimum RTT (ms) of `count` echoes from `src` to `address`: netem's delay is a
    floor under it, and TCG's scheduling noise is not."""
    result = lab.node(src).exec(f"ping -n -c {count} -i 0.2 -q {address}", 60)
    assert result.exit_status == 0, result.stdout + result.stderr
    found = re.search(r"rtt min/avg/max/mdev = ([\d.]+)/", result.stdout)
    assert found, result.stdout
    return float(found.group(1))


def file_sha256(lab: Any, node: str, path: str) -> str:
    out = run(lab, node, f"sha256sum {shlex.quote(path)}").stdout
    digest = out.split()[0] if out.split() else ""
    assert re.fullmatch(r"[0-9a-f]{64}", digest), f"{node}: sha256sum gave {out!r}"
    return str(digest)


def vrlab_cli(*args: str, timeout: float = 600.0, cwd: Path = REPO
              ) -> subprocess.CompletedProcess[str]:
    """Run `vrlab ARGS` (this checkout's, via `python3 -m orchestrate`) with a deadline."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.setdefault("COLUMNS", "160")  # rich wraps result tables at the terminal width
    return subprocess.run([sys.executable, "-m", "orchestrate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def lab_names() -> list[str]:
    """Labs that have a record in $VRLAB_HOME (running or not)."""
    from orchestrate.lab import Lab

    return list(Lab.names())
