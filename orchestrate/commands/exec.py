"""`vrlab exec NODE[,NODE...] -- CMD...` (or `--all`): run a command on nodes over SSH.

The output streams as it arrives (a running `ping` shows each line). With one node it passes
through untouched, and so does the exit status; with several the nodes run at once, every
line is prefixed by its node (`r1 | ...`, as docker compose and pdsh do) and the exit status
is the highest of theirs. A node that cannot be reached counts as 255, as with OpenSSH.
`--json` collects instead: `{NODE: {"exit_status", "stdout", "stderr"}}`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
import time
from typing import IO, Any

from orchestrate.commands import Exit, add_json_option, add_lab_option, fail, print_json

SSH_FAILED = 255  # what OpenSSH exits with when it cannot reach the host


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "exec", help="run a command on one or more nodes over SSH",
        usage="vrlab exec [-h] [--lab LAB] [--timeout S] [--json] "
              "{NODE[,NODE...] | --all} -- COMMAND [ARGS...]",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="run on every node of the lab")
    add_lab_option(parser)
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds the command may run (default 600)")
    add_json_option(parser)
    parser.add_argument("words", nargs=argparse.REMAINDER, metavar="NODES -- COMMAND",
                        help="comma-separated node names (none with --all), then -- and the "
                             "command with its arguments")
    parser.set_defaults(func=run)


def split_options(args: argparse.Namespace, rest: list[str]) -> list[str]:
    """Options given after the positional but before `--` (argparse leaves them in the
    remainder): set them on `args`; return what follows `--` (or all of `rest`)."""
    if "--" not in rest:
        return rest
    cut = rest.index("--")
    options = argparse.ArgumentParser(add_help=False, prog=f"vrlab {args.command}")
    for name in ("lab", "timeout"):
        if hasattr(args, name):
            options.add_argument(f"--{name}", type=type(getattr(args, name) or ""))
    for name in ("all", "json"):
        if hasattr(args, name):
            options.add_argument(f"--{name}", action="store_true", default=None)
    parsed, unknown = options.parse_known_args(rest[:cut])
    if unknown:
        raise SystemExit(f"vrlab: unexpected arguments before --: {' '.join(unknown)}")
    for key, value in vars(parsed).items():
        if value is not None:
            setattr(args, key, value)
    return rest[cut + 1:]


def nodes_and_command(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(node names, command words) from `NODES [options] -- COMMAND` (or `--all -- COMMAND`);
    without `--`, what follows NODES is the command."""
    words = list(args.words)
    given = []
    if words and words[0] != "--" and not (args.all and "--" not in words):
        given = [name for name in words.pop(0).split(",") if name]
    return given, split_options(args, words)


class LineWriter:
    """One node's stdout or stderr, written to a binary stream as it arrives.

    With a prefix the output goes out in whole lines, each starting with it, so the lines of
    nodes running at once never interleave mid-line; a last unterminated line is written by
    `close()`. Without one, bytes pass through as they come.
    """

    def __init__(self, out: IO[bytes], prefix: bytes, lock: threading.Lock) -> None:
        self.out, self.prefix, self.lock = out, prefix, lock
        self.pending = b""

    def write(self, data: bytes) -> None:
        if not self.prefix:
            self._emit(data)
            return
        *lines, self.pending = (self.pending + data).split(b"\n")
        if lines:
            self._emit(b"".join(self.prefix + line + b"\n" for line in lines))

    def close(self) -> None:
        if self.pending:
            self._emit(self.prefix + self.pending + b"\n")
            self.pending = b""

    def _emit(self, data: bytes) -> None:
        with self.lock:
            self.out.write(data)
            self.out.flush()


def run_on_nodes(lab: Any, names: list[str], command: str, timeout: float, *,
                 stdout: IO[bytes], stderr: IO[bytes]) -> dict[str, int]:
    """Run `command` on every node at once, streaming; each node's exit status."""
    from orchestrate.ssh import SshError

    width = max(len(name) for name in names)
    lock = threading.Lock()
    statuses: dict[str, int] = {}

    def one(name: str) -> None:
        prefix = f"{name:<{width}} | ".encode() if len(names) > 1 else b""
        writers = {"stdout": LineWriter(stdout, prefix, lock),
                   "stderr": LineWriter(stderr, prefix, lock)}
        try:
            result = lab.node(name).exec(
                command, timeout=timeout,
                on_output=lambda stream, data: writers[stream].write(data))
            statuses[name] = result.exit_status
        except (SshError, OSError) as exc:
            statuses[name] = SSH_FAILED
            writers["stderr"].write(f"vrlab exec: {name}: {exc}\n".encode())
        finally:
            for writer in writers.values():
                writer.close()

    threads = [threading.Thread(target=one, args=(name,), daemon=True) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # short joins: Ctrl-C still reaches the main thread
            thread.join(0.2)
    return statuses


def collect_on_nodes(lab: Any, names: list[str], command: str, timeout: float
                     ) -> dict[str, dict[str, Any]]:
    """Run `command` on each node in turn, collecting: the --json document."""
    from orchestrate.ssh import SshError

    report: dict[str, dict[str, Any]] = {}
    for name in names:
        started = time.monotonic()
        try:
            result = lab.node(name).exec(command, timeout=timeout)
            report[name] = {"exit_status": result.exit_status, "stdout": result.stdout,
                            "stderr": result.stderr}
        except (SshError, OSError) as exc:
            report[name] = {"exit_status": SSH_FAILED, "stdout": "", "stderr": "",
                            "error": str(exc)}
        report[name]["seconds"] = round(time.monotonic() - started, 3)
    return report


def run(args: argparse.Namespace) -> int:
    from orchestrate.lab import Lab, LabError, resolve_lab_name

    given, words = nodes_and_command(args)
    if not words:
        return fail(args, Exit.BAD_INPUT, "no command (vrlab exec NODE[,NODE...] -- CMD ...)")
    if args.all == bool(given):
        return fail(args, Exit.BAD_INPUT, "name the nodes (r1,r2) or give --all, not both"
                    if given else "name the nodes (vrlab exec r1,r2 -- CMD) or give --all")
    # One word is taken as a shell command line; several are quoted as argv.
    command = words[0] if len(words) == 1 else shlex.join(words)
    try:
        lab = Lab.open(resolve_lab_name(args.lab))
    except LabError as exc:
        return fail(args, Exit.BAD_INPUT, str(exc))
    try:
        known = lab.nodes()
        names = known if args.all else given
        unknown = [name for name in names if name not in known]
        if unknown:
            return fail(args, Exit.BAD_INPUT, f"lab {lab.name} has no node "
                        f"{', '.join(unknown)} (nodes: {', '.join(known)})")
        if args.json:
            report = collect_on_nodes(lab, names, command, args.timeout)
            print_json(report)
            return max(entry["exit_status"] for entry in report.values())
        statuses = run_on_nodes(lab, names, command, args.timeout,
                                stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)
        return max(statuses.values())
    finally:
        lab.close()
