"""`vrlab down [LAB|FILE]` (alias `destroy`): remove everything a lab's journal lists.

Idempotent: a lab that is not up is nothing to do (exit 0).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from orchestrate.commands import Exit, add_json_option, completes_lab_names, fail, print_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("down", aliases=["destroy"],
                                   help="stop a lab and remove everything it created")
    completes_lab_names(parser.add_argument(
        "labs", nargs="*", metavar="LAB",
        help="lab name or topology file (default: the only lab)"))
    parser.add_argument("--all", action="store_true", help="every lab under $VRLAB_HOME")
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrate.lab import Lab, LabError, resolve_lab_name

    if args.all:
        names = Lab.names()
    else:
        try:
            names = [resolve_lab_name(given) for given in args.labs or [None]]
        except LabError as exc:
            if args.labs or Lab.names():
                return fail(args, Exit.BAD_INPUT, str(exc))
            names = []
    if not names and not args.json:
        print("vrlab down: no lab is up")
    status = Exit.OK
    report: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            lab = Lab.open(name)
        except LabError:
            report[name] = {"state": "not up", "problems": []}
            if not args.json:
                print(f"{name}: not up (nothing to do)")
            continue
        problems = lab.down()
        report[name] = {"state": "down" if not problems else "failed", "problems": problems}
        if problems:
            status = Exit.FAILED
            for problem in problems:
                print(f"{name}: {problem}", file=sys.stderr)
        elif not args.json:
            print(f"{name}: down")
    if args.json:
        print_json(report)
    return status
