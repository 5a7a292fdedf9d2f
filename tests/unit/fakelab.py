"""A lab stand-in for unit tests of checks, `vrlab test` and the pytest plugin.

Each node answers commands through a responder: a list of (regex, reply) rules, first match
wins, where a reply is (exit_status, stdout, stderr) or a callable returning one. Every
command run is recorded in `lab.log` as (node, command).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Reply = tuple[int, str, str]
Rule = tuple[str, Reply | Callable[[str], Reply]]


@dataclass(frozen=True)
class FakeExecResult:
    exit_status: int
    stdout: str
    stderr: str


class FakeNode:
    def __init__(self, lab: FakeLab, name: str) -> None:
        self.lab = lab
        self.name = name
        self.serial_log = lab.directory / f"{name}.serial.log"

    def exec(self, cmd: str, timeout: float = 60.0) -> FakeExecResult:
        self.lab.log.append((self.name, cmd))
        for pattern, reply in self.lab.rules.get(self.name, []) + self.lab.rules.get("*", []):
            if re.search(pattern, cmd):
                out = reply(cmd) if callable(reply) else reply
                return FakeExecResult(*out)
        return FakeExecResult(127, "", f"fake: no rule for {cmd!r}")


class FakeLab:
    def __init__(self, directory: Path, rules: dict[str, list[Rule]] | None = None,
                 packets: list[Any] | None = None) -> None:
        self.directory = directory
        self.rules: dict[str, list[Rule]] = rules or {}
        self.packets = packets or []
        """scapy packets every capture writes to its pcap."""
        self.log: list[tuple[str, str]] = []
        self.captures: list[tuple[str, str, Path]] = []
        self.downs = 0
        self._nodes: dict[str, FakeNode] = {}

    def node(self, name: str) -> FakeNode:
        return self._nodes.setdefault(name, FakeNode(self, name))

    @contextlib.contextmanager
    def capture(self, node: str, ifname: str, path: Path) -> Iterator[Path]:
        from scapy.utils import wrpcap

        self.captures.append((node, ifname, path))
        yield path
        wrpcap(str(path), self.packets)

    def down(self) -> list[str]:
        self.downs += 1
        return []


def ping_output(target: str, transmitted: int, received: int, errors: tuple[str, ...] = ()) -> str:
    lines = [f"PING {target} ({target}) 56(84) bytes of data."]
    lines += [f"64 bytes from {target}: icmp_seq={i + 1} ttl=63 time=0.9 ms"
              for i in range(received)]
    lines += list(errors)
    loss = 100 * (transmitted - received) // max(transmitted, 1)
    extra = f", +{len(errors)} errors" if errors else ""
    lines += ["", f"--- {target} ping statistics ---",
              f"{transmitted} packets transmitted, {received} received{extra}, {loss}% packet "
              "loss, time 0ms"]
    return "\n".join(lines) + "\n"
