"""`vrlab ssh NODE [-- ARGS]`: OpenSSH into a node with the lab's generated ssh_config."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("ssh", help="log in to a node (OpenSSH, pinned host key)")
    parser.add_argument("node")
    parser.add_argument("--lab", help="lab name (default: the only lab)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- ARGS: passed to ssh")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrate.commands.exec import split_options
    from orchestrate.lab import Lab, LabError, resolve_lab_name

    extra = split_options(args, args.args)
    try:
        lab = Lab.open(resolve_lab_name(args.lab))
        lab.spec(args.node)
    except LabError as exc:
        print(f"vrlab ssh: {exc}", file=sys.stderr)
        return 1
    argv = ["ssh", "-F", str(lab.ssh_config), args.node, *extra]
    os.execvp("ssh", argv)
    return 127  # not reached
