"""`vrlab` command line: each subcommand lives in its own module under orchestrate.commands.

A command module exposes ``register(subparsers)``, which adds its parser (with its aliases)
and sets ``func=run`` where ``run(args) -> int`` returns the exit status (`commands.Exit`).
To add a command, write its module and add its name to COMMANDS: nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import sys
from collections.abc import Sequence

from orchestrate.commands import EXIT_STATUS_HELP

# Command modules, in the order of `vrlab --help`.
COMMANDS = (
    "up",
    "down",
    "status",
    "ssh",
    "exec",
    "console",
    "capture",
    "trace",
    "ui",
    "test",
    "graph",
    "validate",
    "expand",
    "link",
    "image",
    "demo",
    "completion",
)


def version() -> str:
    try:
        number = importlib.metadata.version("vrlab")
    except importlib.metadata.PackageNotFoundError:
        number = "unknown (not installed)"
    return f"vrlab {number} (Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vrlab", description="Virtual router lab: YAML topologies as running QEMU VMs.",
        epilog=EXIT_STATUS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"orchestrate.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        print("vrlab: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
