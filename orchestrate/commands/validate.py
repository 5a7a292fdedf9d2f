"""`vrlab validate FILE`: check a topology file and print every problem (exit 2) or a summary."""

from __future__ import annotations

import argparse
from typing import Any

from orchestrate.commands import (
    Exit,
    add_json_option,
    add_topology_argument,
    print_json,
    report_problems,
)
from orchestrate.topology import Topology, TopologyError, load_topology


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "validate", help="check a topology file without starting anything",
        description="Check a topology file; print every problem with file:line:col.")
    add_topology_argument(parser)
    add_json_option(parser)
    parser.set_defaults(func=run)


def summary(topology: Topology) -> str:
    routers = len(topology.routers())
    hosts = len(topology.hosts())
    lans = sum(1 for link in topology.links if link.is_lan)
    return (f"lab {topology.name}: {routers} router{'s' * (routers != 1)}, "
            f"{hosts} host{'s' * (hosts != 1)}, {len(topology.links)} link"
            f"{'s' * (len(topology.links) != 1)} ({lans} LAN segment{'s' * (lans != 1)}), "
            f"{len(topology.tests)} check{'s' * (len(topology.tests) != 1)}")


def summary_json(topology: Topology) -> dict[str, Any]:
    return {"lab": topology.name,
            "routers": [n.name for n in topology.routers()],
            "hosts": [n.name for n in topology.hosts()],
            "links": len(topology.links),
            "lans": sum(1 for link in topology.links if link.is_lan),
            "checks": [check.name for check in topology.tests]}


def run(args: argparse.Namespace) -> int:
    try:
        topology = load_topology(args.file)
    except TopologyError as e:
        return report_problems(args, e.problems, count_line=True)
    if args.json:
        print_json({"file": str(args.file), "valid": True, **summary_json(topology)})
    else:
        print(f"{args.file}: OK: {summary(topology)}")
    return Exit.OK
