"""`vrlab expand FILE`: print the topology with every derived name, address, route and check."""

from __future__ import annotations

import argparse
from typing import Any

from orchestrate.commands import Exit, add_topology_argument, report_problems
from orchestrate.topology import TopologyError, load_topology
from orchestrate.topology.expand import dump


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "expand", help="print the topology with everything vrlab derives written out",
        description="Print the fully expanded topology as YAML: every interface name, "
        "address, route and generated check. The output is itself a topology file that "
        "boots the same lab.")
    add_topology_argument(parser)
    parser.set_defaults(func=run, json=False)


def run(args: argparse.Namespace) -> int:
    try:
        topology = load_topology(args.file)
    except TopologyError as e:
        return report_problems(args, e.problems)
    print(dump(topology, str(args.file)), end="")
    return Exit.OK
