"""`vrlab demo [FILE]`: the seed experiment end to end, then tear down (always).

Builds or reuses the image, brings up configs/duo.yaml (violin <-> piano), pings piano's IPv6
link-local address from violin (`ping -c 3 fe80::...%vioif0`, the address derived from
piano's MAC by modified EUI-64), prints the result, and takes the lab down even on failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from orchestrate.commands import Exit, add_topology_argument, report_problems
from orchestrate.commands.up import add_lab_options, lab_options
from orchestrate.names import name_argument

DEFAULT_FILE = Path("configs/duo.yaml")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="boot duo.yaml, ping a link-local address, tear down")
    add_topology_argument(parser, optional=True, default=DEFAULT_FILE,
                          help_default=f" (default {DEFAULT_FILE})")
    add_lab_options(parser)
    parser.add_argument("--count", type=int, default=3, help="pings to send (default 3)")
    parser.add_argument("--name", type=name_argument,
                        help="lab name (default: the topology's name)")
    parser.set_defaults(func=run)


def pick_pair(topology: Any) -> tuple[str, str, str, str]:
    """(from node, its ifname, to node, its ifname) for the first point-to-point link."""
    for link in topology.links:
        if len(link.endpoints) == 2:
            a, b = link.endpoints
            return a.node, a.ifname, b.node, b.ifname
    raise ValueError("the topology has no point-to-point link to ping across")


def run(args: argparse.Namespace) -> int:
    from orchestrate.lab import Lab, LabError
    from orchestrate.ssh import SshError
    from orchestrate.topology import TopologyError, load_topology

    try:
        topology = load_topology(args.file)
        src, src_if, dst, dst_if = pick_pair(topology)
        options = lab_options(args, topology)
    except TopologyError as exc:
        return report_problems(args, exc.problems)
    except ValueError as exc:
        print(f"vrlab demo: {exc}", file=sys.stderr)
        return Exit.BAD_INPUT
    print(f"vrlab demo: {args.file}: {src} pings {dst}'s link-local address", flush=True)
    try:
        lab = Lab.up(topology, name=args.name, **options)
    except LabError as exc:
        print(f"vrlab demo: up failed: {exc}", file=sys.stderr)
        return Exit.NOT_UP
    try:
        target = lab.node(dst).link_local(dst_if)
        command = f"ping -c {args.count} -W 2 {target}%{src_if}"
        print(f"{src}$ {command}", flush=True)
        result = lab.node(src).exec(command, timeout=30 + 3 * args.count)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        if result.ok:
            print(f"vrlab demo: OK, {dst} answered on {target}")
        else:
            print(f"vrlab demo: FAILED, ping exited {result.exit_status}", file=sys.stderr)
        return Exit.OK if result.ok else Exit.FAILED
    except (LabError, SshError) as exc:
        print(f"vrlab demo: {exc}", file=sys.stderr)
        return Exit.FAILED
    finally:
        for trouble in lab.down():
            print(f"vrlab demo: teardown: {trouble}", file=sys.stderr)
        print(f"vrlab demo: lab {lab.name} torn down", flush=True)
