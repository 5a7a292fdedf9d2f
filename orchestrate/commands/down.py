"""`vrlab down [LAB|FILE]`: remove everything a lab's journal lists. Idempotent."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("down", help="stop a lab and remove everything it created")
    parser.add_argument("labs", nargs="*", metavar="LAB",
                        help="lab name or topology file (default: the only lab)")
    parser.add_argument("--all", action="store_true", help="every lab under $VRLAB_HOME")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrate.lab import Lab, LabError, resolve_lab_name

    if args.all:
        names = Lab.names()
    else:
        try:
            names = [resolve_lab_name(given) for given in args.labs or [None]]
        except LabError as exc:
            if not args.labs and not Lab.names():
                print("vrlab down: no lab is up")
                return 0
            print(f"vrlab down: {exc}", file=sys.stderr)
            return 1
    status = 0
    for name in names:
        try:
            lab = Lab.open(name)
        except LabError:
            print(f"{name}: not up (nothing to do)")
            continue
        problems = lab.down()
        if problems:
            status = 1
            for problem in problems:
                print(f"{name}: {problem}", file=sys.stderr)
        else:
            print(f"{name}: down")
    return status
