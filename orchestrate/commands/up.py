"""`vrlab up FILE`: boot a topology as a lab and wait until every node is ready."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from orchestrate.commands.status import print_status


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("up", help="boot a topology as a lab")
    parser.add_argument("file", type=Path, help="topology YAML file")
    add_lab_options(parser)
    parser.add_argument("--name", help="lab name (default: the topology's name)")
    parser.set_defaults(func=run)


def add_lab_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("qemu", "libvirt"),
                        help="VM backend (default: the topology's defaults, else qemu)")
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"),
                        help="acceleration (default: the topology's defaults, else auto)")
    parser.add_argument("--libvirt-uri", default=None,
                        help="libvirt connection URI (default qemu:///system)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for every node to be ready (default 300)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress display")


def lab_options(args: argparse.Namespace, topology: Any) -> dict[str, Any]:
    defaults = getattr(topology, "defaults", None)
    backend = args.backend or getattr(defaults, "backend", None) or "qemu"
    options: dict[str, Any] = {
        "backend": backend,
        "accel": args.accel or getattr(defaults, "accel", None) or "auto",
        "timeout": args.timeout,
        "progress": not args.no_progress,
    }
    if backend == "libvirt" and args.libvirt_uri:
        options["backend_options"] = {"uri": args.libvirt_uri}
    return options


def run(args: argparse.Namespace) -> int:
    from orchestrate.lab import Lab, LabError
    from orchestrate.topology import TopologyError, load_topology

    try:
        topology = load_topology(args.file)
    except TopologyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    try:
        lab = Lab.up(topology, name=args.name, **lab_options(args, topology))
    except LabError as exc:
        print(f"vrlab up: {exc}", file=sys.stderr)
        return 1
    print_status(lab)
    return 0
