"""`vrlab exec NODE -- CMD...`: run a command over SSH; its output and exit status pass through."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("exec", help="run a command on a node over SSH")
    parser.add_argument("node")
    parser.add_argument("--lab", help="lab name (default: the only lab)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    parser.set_defaults(func=run)


def split_options(args: argparse.Namespace, rest: list[str]) -> list[str]:
    """Options given after NODE but before `--` (argparse leaves them in the remainder)."""
    if "--" not in rest:
        return rest
    cut = rest.index("--")
    options = argparse.ArgumentParser(add_help=False)
    for name in ("--lab", "--timeout"):
        if hasattr(args, name[2:]):
            options.add_argument(name, type=type(getattr(args, name[2:]) or ""))
    parsed, unknown = options.parse_known_args(rest[:cut])
    if unknown:
        raise SystemExit(f"vrlab: unexpected arguments before --: {' '.join(unknown)}")
    for key, value in vars(parsed).items():
        if value is not None:
            setattr(args, key, value)
    return rest[cut + 1:]


def run(args: argparse.Namespace) -> int:
    from orchestrate.lab import Lab, LabError, resolve_lab_name
    from orchestrate.ssh import SshError

    words = split_options(args, args.command)
    if not words:
        print("vrlab exec: no command (vrlab exec NODE -- CMD ...)", file=sys.stderr)
        return 2
    # One word is taken as a shell command line; several are quoted as argv.
    command = words[0] if len(words) == 1 else shlex.join(words)
    try:
        lab = Lab.open(resolve_lab_name(args.lab))
        result = lab.node(args.node).exec(command, timeout=args.timeout)
    except (LabError, SshError) as exc:
        print(f"vrlab exec: {exc}", file=sys.stderr)
        return 255
    finally:
        if "lab" in locals():
            lab.close()
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    sys.stderr.flush()
    return result.exit_status
