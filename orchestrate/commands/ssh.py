"""`vrlab ssh NODE [-- ARGS]` (alias `connect`): OpenSSH into a node with the lab's ssh_config."""

from __future__ import annotations

import argparse
import os
from typing import Any

from orchestrate.commands import Exit, add_lab_option, fail


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("ssh", aliases=["connect"],
                                   help="log in to a node (OpenSSH, pinned host key)")
    parser.add_argument("node", metavar="NODE", help="the node to log in to")
    add_lab_option(parser)
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
        return fail(args, Exit.BAD_INPUT, str(exc))
    argv = ["ssh", "-F", str(lab.ssh_config), args.node, *extra]
    os.execvp("ssh", argv)
    return 127  # not reached
