"""`vrlab validate FILE`: check a topology file and print every problem (exit 2) or a summary."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from orchestrate.topology import Topology, TopologyError, load_topology


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "validate", help="check a topology file without starting anything",
        description="Check a topology file; print every problem with file:line:col.")
    parser.add_argument("file", help="topology YAML file")
    parser.set_defaults(func=run)


def summary(topology: Topology) -> str:
    routers = len(topology.routers())
    hosts = len(topology.hosts())
    lans = sum(1 for link in topology.links if link.is_lan)
    return (f"lab {topology.name}: {routers} router{'s' * (routers != 1)}, "
            f"{hosts} host{'s' * (hosts != 1)}, {len(topology.links)} link"
            f"{'s' * (len(topology.links) != 1)} ({lans} LAN segment{'s' * (lans != 1)}), "
            f"{len(topology.tests)} check{'s' * (len(topology.tests) != 1)}")


def run(args: argparse.Namespace) -> int:
    try:
        topology = load_topology(args.file)
    except TopologyError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        count = len(e.problems)
        print(f"{args.file}: {count} problem{'s' * (count != 1)}", file=sys.stderr)
        return 2
    print(f"{args.file}: OK: {summary(topology)}")
    return 0
