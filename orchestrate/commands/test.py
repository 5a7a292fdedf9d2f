"""`vrlab test FILE`: bring the lab up (or reuse it), run its checks, print them, tear down.

Exit status (`commands.Exit`): 0 when every check passed, 1 when one failed, 2 when the file
is invalid (nothing is started then), 3 when the lab could not come up. A lab that is already
up is reused without rebooting and left up; a lab this command started is taken down
afterwards unless `--keep` is given.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from orchestrate.checks import CheckResult, CheckRunner, print_results
from orchestrate.choices import ACCELS, BACKENDS
from orchestrate.commands import (
    Exit,
    add_json_option,
    add_topology_argument,
    fail,
    print_json,
    report_problems,
)
from orchestrate.topology import Topology, TopologyError, load_topology


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "test", help="run a topology's checks (bringing the lab up if needed)",
        description="Bring the lab up if it is not, run the checks of its tests: section, "
                    "print a result table and tear the lab down (unless --keep or it was "
                    "already up).")
    add_topology_argument(parser)
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument("--junit", type=Path, metavar="OUT.xml", help="write JUnit XML here")
    parser.add_argument("--backend", choices=BACKENDS, help="default: the file's, else qemu")
    parser.add_argument("--accel", choices=ACCELS, help="default: the file's, else auto")
    add_json_option(parser)
    parser.set_defaults(func=run)


def _lab_module() -> Any:
    # Imported late: validating a file or running unit tests must not need QEMU bits.
    return importlib.import_module("orchestrate.lab")


def open_or_up(topology: Topology, backend: str, accel: str, console: Any) -> tuple[Any, bool]:
    """(lab, started_here): reuse the running lab of that name, else bring one up."""
    labmod = _lab_module()
    try:
        lab = labmod.Lab.open(topology.name)
    except labmod.LabError:
        lab = None
    if lab is not None:
        states = {s.name: s.state for s in lab.status()}
        running = lab.record.data.get("state") == "up" and all(
            state == "running" for state in states.values())
        if running and set(states) == set(topology.nodes):
            console.print(f"reusing running lab [bold]{topology.name}[/bold]")
            return lab, False
        if running:
            raise labmod.LabError(
                f"lab {topology.name} is up with nodes {', '.join(sorted(states))}, not those "
                f"of the file; `vrlab down {topology.name}` first")
        console.print(f"lab {topology.name} exists but is not running; taking it down first")
        lab.down()
    console.print(f"bringing up lab [bold]{topology.name}[/bold] ({backend}, accel {accel})")
    return labmod.Lab.up(topology, backend=backend, accel=accel), True


def result_json(result: CheckResult) -> dict[str, Any]:
    spec = result.spec
    return {"name": spec.name, "kind": spec.kind, "passed": result.passed,
            "reason": result.reason, "detail": result.detail, "attempts": result.attempts,
            "duration": round(result.duration, 3), "params": spec.params,
            "file": spec.file, "line": spec.line, "col": spec.col}


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    # With --json, stdout carries the JSON document only: the running commentary goes to stderr.
    console = Console(stderr=args.json)
    try:
        topology = load_topology(args.file)
    except TopologyError as e:
        return report_problems(args, e.problems)
    if not topology.tests:
        console.print(f"{args.file}: no checks (add a tests: section)")
        if args.json:
            print_json({"lab": topology.name, "file": str(args.file), "passed": True,
                        "checks": []})
        return Exit.OK
    backend = args.backend or ("libvirt" if topology.inventory else topology.defaults.backend)
    accel = args.accel or topology.defaults.accel
    labmod = _lab_module()
    try:
        lab, started = open_or_up(topology, backend, accel, console)
    except labmod.LabError as e:
        return fail(args, Exit.NOT_UP, str(e))
    try:
        runner = CheckRunner(lab, topology)
        results = runner.run_all(
            topology.tests,
            on_result=lambda r: console.print(
                f"  {'[green]PASS' if r.passed else '[red]FAIL'}[/] {escape(r.name)}",
                highlight=False))
        print_results(results, console, title=f"{topology.name}: {args.file}")
        if args.junit is not None:
            from orchestrate.junit import write_junit

            write_junit(results, args.junit, topology.name)
            console.print(f"wrote {args.junit}")
    finally:
        if started and not args.keep:
            problems = lab.down()
            for problem in problems or []:
                print(f"vrlab test: teardown: {problem}", file=sys.stderr)
        elif started:
            console.print(f"lab {topology.name} left up (--keep); `vrlab down {topology.name}`")
    passed = all(r.passed for r in results)
    if args.json:
        print_json({"lab": topology.name, "file": str(args.file), "passed": passed,
                    "checks": [result_json(r) for r in results]})
    return Exit.OK if passed else Exit.FAILED
