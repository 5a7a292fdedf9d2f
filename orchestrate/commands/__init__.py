"""vrlab subcommands: one module per command, each exposing ``register(subparsers)``.

What the commands share lives here, once: the exit statuses, the ``--json`` and ``--lab``
options, the topology-file argument and how an error or an invalid topology is reported.

With ``--json`` a command prints exactly one JSON document on stdout, also when it fails: then
``{"error": TEXT, "exit_status": N}`` (plus ``"problems"`` for an invalid topology file). Text
for people goes to stderr either way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterable
from enum import IntEnum
from typing import Any

import shtab


class Exit(IntEnum):
    """vrlab's exit statuses (`vrlab --help`, README). `exec` passes the remote one through."""

    OK = 0
    FAILED = 1
    """A check failed, or the command's own work did (a teardown problem, a capture error)."""
    BAD_INPUT = 2
    """An invalid topology file or argument, an unknown lab or node: nothing was started."""
    NOT_UP = 3
    """The lab could not come up (boot, image or backend failure); what was started is removed."""


EXIT_STATUS_HELP = """exit status:
  0  ok
  1  a check failed, or the command's own work did (teardown, capture, image build)
  2  bad input: invalid topology file or argument, unknown lab or node; nothing was started
  3  the lab could not come up (what was started is removed again)
  vrlab exec passes the command's exit status through (several nodes: the highest);
  255 when a node cannot be reached over SSH, as OpenSSH does
"""


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="machine-readable output: one JSON document on stdout")


LAB_NAMES = shtab.cmd('ls "${VRLAB_HOME:-$HOME/.local/share/vrlab}/labs" 2>/dev/null')
"""Shell completion of lab names: the directories under $VRLAB_HOME/labs (record.labs_dir)."""


def completes_lab_names(action: argparse.Action) -> None:
    """Let the shell complete this argument with the names of the labs (shtab)."""
    setattr(action, "complete", LAB_NAMES)  # noqa: B010 (argparse.Action has no such field)


def add_lab_option(parser: argparse.ArgumentParser) -> None:
    completes_lab_names(parser.add_argument(
        "--lab", help="lab name or topology file (default: the only lab up)"))


def add_topology_argument(parser: argparse.ArgumentParser, *, optional: bool = False,
                          default: Any = None, help_default: str = "") -> None:
    action = parser.add_argument(
        "file", nargs="?" if optional else None, default=default, metavar="FILE",
        help=f"topology YAML file{help_default}")
    setattr(action, "complete", shtab.FILE)  # noqa: B010 (argparse.Action has no such field)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def fail(args: argparse.Namespace, status: Exit, message: str, **extra: Any) -> int:
    """Report an error: `vrlab CMD: message` on stderr and, with --json, the error document."""
    print(f"vrlab {getattr(args, 'command', '')}: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print_json({"error": message, "exit_status": int(status), **extra})
    return int(status)


def problem_json(problem: Any) -> dict[str, Any]:
    """A topology problem as JSON: its fields (file, line, col, where, message, hint), text."""
    is_instance = dataclasses.is_dataclass(problem) and not isinstance(problem, type)
    fields = dataclasses.asdict(problem) if is_instance else {}
    return {**fields, "text": str(problem)}


def report_problems(args: argparse.Namespace, problems: Iterable[Any], *,
                    count_line: bool = False) -> int:
    """An invalid topology file: every problem on stderr (then, with `count_line`, how many)
    and in the JSON; exit BAD_INPUT. Each stderr line is one problem unless `count_line`."""
    problems = list(problems)
    for problem in problems:
        print(problem, file=sys.stderr)
    count = len(problems)
    summary = f"{args.file}: {count} problem{'s' * (count != 1)}"
    if count_line:
        print(summary, file=sys.stderr)
    if getattr(args, "json", False):
        print_json({"error": summary, "exit_status": int(Exit.BAD_INPUT), "file": str(args.file),
                    "problems": [problem_json(p) for p in problems]})
    return int(Exit.BAD_INPUT)
