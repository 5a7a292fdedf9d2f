"""`vrlab test FILE`: bring the lab up (or reuse it), run its checks, print them, tear down.

Exit status: 0 when every check passed, 1 when one failed (or the lab could not come up),
2 when the file is invalid (nothing is started then). A lab that is already up is reused
without rebooting and left up; a lab this command started is taken down afterwards unless
`--keep` is given.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from orchestrate.checks import CheckRunner, print_results
from orchestrate.topology import BACKENDS, Topology, TopologyError, load_topology


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "test", help="run a topology's checks (bringing the lab up if needed)",
        description="Bring the lab up if it is not, run the checks of its tests: section, "
                    "print a result table and tear the lab down (unless --keep or it was "
                    "already up).")
    parser.add_argument("file", help="topology YAML file")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument("--junit", type=Path, metavar="OUT.xml", help="write JUnit XML here")
    parser.add_argument("--backend", choices=BACKENDS, help="default: the file's, else qemu")
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"),
                        help="default: the file's, else auto")
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


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    try:
        topology = load_topology(args.file)
    except TopologyError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return 2
    if not topology.tests:
        console.print(f"{args.file}: no checks (add a tests: section)")
        return 0
    backend = args.backend or topology.defaults.backend
    accel = args.accel or topology.defaults.accel
    labmod = _lab_module()
    try:
        lab, started = open_or_up(topology, backend, accel, console)
    except labmod.LabError as e:
        print(f"vrlab test: {e}", file=sys.stderr)
        return 1
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
    return 0 if all(r.passed for r in results) else 1
