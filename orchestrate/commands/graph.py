"""`vrlab graph FILE|LAB [-o out.svg|png|pdf|dot]`: draw a topology with Graphviz `dot`.

Given the name of a lab (rather than a file), draws the running lab: its topology file as
journaled at `vrlab up`, with each node's state (running, stopped, ...).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestrate.commands import add_topology_argument, report_problems
from orchestrate.graph import to_dot
from orchestrate.topology import TopologyError, load_topology

FORMATS = ("svg", "png", "pdf", "dot")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "graph", help="draw a topology (Graphviz)",
        description="Write the topology (a file, or a lab by name: then with each node's "
                    "state) as a picture (svg, png, pdf: needs Graphviz dot) or as DOT "
                    "source; without -o, print the DOT source.")
    add_topology_argument(parser)
    parser.add_argument("-o", "--output", type=Path, help="output file; format from its suffix")
    parser.set_defaults(func=run)


def _lab_states(name: str) -> tuple[str, dict[str, str]] | None:
    """(topology file, node -> state) of the lab called `name`, or None if there is none."""
    from orchestrate.lab import Lab, LabError

    if name not in Lab.names():
        return None
    try:
        lab = Lab.open(name)
        states = {s.name: s.state for s in lab.status()}
    except LabError:
        return None
    path = lab.record.data.get("topology")
    return (str(path), states) if path else None


def run(args: argparse.Namespace) -> int:
    states: dict[str, str] | None = None
    source = args.file
    if not Path(source).exists():
        found = _lab_states(source)
        if found is not None:
            source, states = found
    try:
        topology = load_topology(source)
    except TopologyError as e:
        return report_problems(args, e.problems)
    dot = to_dot(topology, states)
    output: Path | None = args.output
    if output is None:
        sys.stdout.write(dot)
        return 0
    fmt = output.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        print(f"vrlab graph: unknown output format {fmt!r} (use {', '.join(FORMATS)})",
              file=sys.stderr)
        return 2
    if fmt == "dot":
        output.write_text(dot)
        return 0
    exe = shutil.which("dot")
    if exe is None:
        print("vrlab graph: Graphviz 'dot' not found (apt install graphviz)", file=sys.stderr)
        return 1
    result = subprocess.run([exe, f"-T{fmt}", "-o", str(output)], input=dot, text=True,
                            capture_output=True, timeout=60, check=False)
    if result.returncode != 0:
        print(f"vrlab graph: dot failed: {result.stderr.strip()}", file=sys.stderr)
        return 1
    print(f"wrote {output}")
    return 0
