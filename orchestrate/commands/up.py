"""`vrlab up FILE` (alias `deploy`): boot a topology as a lab and wait until every node is ready."""

from __future__ import annotations

import argparse
from typing import Any

from orchestrate.choices import ACCELS, BACKENDS
from orchestrate.commands import (
    Exit,
    add_json_option,
    add_topology_argument,
    fail,
    print_json,
    report_problems,
)
from orchestrate.commands.status import lab_json, print_status
from orchestrate.names import name_argument


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up", aliases=["deploy"], help="boot a topology as a lab",
        description="Boot every node of a topology and wait until each is ready; on failure "
                    "remove what was started (exit 3).")
    add_topology_argument(parser)
    add_lab_options(parser)
    parser.add_argument("--name", type=name_argument,
                        help="lab name (default: the topology's name)")
    add_json_option(parser)
    parser.set_defaults(func=run)


def add_lab_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS,
                        help="VM backend (default: the topology's defaults, else qemu)")
    parser.add_argument("--accel", choices=ACCELS,
                        help="acceleration (default: the topology's defaults, else auto)")
    parser.add_argument("--libvirt-uri", default=None,
                        help="libvirt connection URI (default qemu:///system)")
    parser.add_argument("--hosts", metavar="FILE", default=None,
                        help="inventory of libvirt hosts to spread the lab over (a YAML file "
                             "with hosts:; replaces the topology's hosts:; implies "
                             "--backend libvirt)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for every node to be ready (default 300)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress display")
    parser.add_argument("--boot", choices=("snapshot", "cold"), default=None,
                        help="snapshot: restore each node from its kind's saved state (made "
                             "once per image; nodes without one boot cold); cold: boot every "
                             "node from its kernel (default: $VRLAB_BOOT, else snapshot)")
    parser.add_argument("--force", action="store_true",
                        help="start even if the nodes' memory adds up to more than this "
                             "machine has available")


def lab_options(args: argparse.Namespace, topology: Any) -> dict[str, Any]:
    """Lab.up's options from the command line and the topology.

    Raises TopologyError (placed problems) when --hosts names a bad inventory file.
    """
    from orchestrate.hosts import inventory_to_json, load_inventory

    defaults = getattr(topology, "defaults", None)
    inventory = getattr(topology, "inventory", None) or {}
    if getattr(args, "hosts", None):
        inventory = load_inventory(args.hosts)
    backend = (args.backend or ("libvirt" if inventory else None)
               or getattr(defaults, "backend", None) or "qemu")
    options: dict[str, Any] = {
        "backend": backend,
        "accel": args.accel or getattr(defaults, "accel", None) or "auto",
        "timeout": args.timeout,
        "progress": not args.no_progress,
        "force": args.force,
        "boot": getattr(args, "boot", None),
    }
    if backend == "libvirt" and args.libvirt_uri:
        options["backend_options"] = {"uri": args.libvirt_uri}
    if inventory:
        options["backend_options"] = {"hosts": inventory_to_json(inventory)}
    return options


def run(args: argparse.Namespace) -> int:
    from orchestrate.lab import Lab, LabError, LabInputError
    from orchestrate.topology import TopologyError, load_topology

    try:
        topology = load_topology(args.file)
    except TopologyError as exc:
        return report_problems(args, exc.problems)
    try:
        options = lab_options(args, topology)
    except TopologyError as exc:
        return report_problems(args, exc.problems)
    try:
        lab = Lab.up(topology, name=args.name, **options)
    except LabError as exc:
        return fail(args, Exit.BAD_INPUT if isinstance(exc, LabInputError) else Exit.NOT_UP,
                    str(exc))
    if args.json:
        print_json({lab.name: lab_json(lab)})
    else:
        print_status(lab)
    return Exit.OK
