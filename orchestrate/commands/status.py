"""`vrlab status [LAB]` (alias `inspect`): each node's state, management address and SSH port."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from orchestrate.commands import Exit, add_json_option, completes_lab_names, fail, print_json

if TYPE_CHECKING:
    from orchestrate.lab import Lab


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", aliases=["inspect"],
                                   help="show the nodes of running labs")
    completes_lab_names(parser.add_argument(
        "lab", nargs="?", metavar="LAB", help="lab name or topology file (default: every lab)"))
    add_json_option(parser)
    parser.set_defaults(func=run)


def print_status(lab: Lab) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"lab {lab.name} ({lab.backend_name}, "
                        f"{lab.record.data.get('accel')}, {lab.record.data.get('state')})",
                  title_justify="left")
    nodes = lab.status()
    on_hosts = any(node.host != "local" for node in nodes)
    columns = ("node", "role", "host", "state", "ssh", "interfaces", "addresses", "boot",
               "PSS MiB")
    for column in columns if on_hosts else tuple(c for c in columns if c != "host"):
        table.add_column(column)
    for node in nodes:
        interfaces = "\n".join(
            f"{i['name']} {i['mac']} {i['link_local']} ({i['link']}, mtu {i['mtu']})"
            for i in node.interfaces)
        cells = [node.name, node.role, node.host, node.state, node.mgmt, interfaces,
                 "\n".join(node.addresses), node.boot,
                 f"{node.pss_mib:.0f}" if node.pss_mib is not None else "-"]
        if not on_hosts:
            del cells[2]
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(f"ssh: vrlab ssh NODE   or   ssh -F {lab.ssh_config} NODE")
    console.print(f"serial logs: {lab.dir}/nodes/NODE/serial.log   (vrlab console NODE)")


def lab_json(lab: Lab) -> dict[str, Any]:
    """One lab as `vrlab status --json` and `vrlab up --json` show it."""
    return {"state": lab.record.data.get("state"), "backend": lab.backend_name,
            "accel": lab.record.data.get("accel"), "ssh_config": str(lab.ssh_config),
            "nodes": [asdict(n) for n in lab.status()]}


def run(args: argparse.Namespace) -> int:
    from orchestrate.lab import Lab, LabError, resolve_lab_name

    try:
        names = [resolve_lab_name(args.lab)] if args.lab else Lab.names()
        labs = [Lab.open(name) for name in names]
    except LabError as exc:
        return fail(args, Exit.BAD_INPUT, str(exc))
    if args.json:
        print_json({lab.name: lab_json(lab) for lab in labs})
        return Exit.OK
    if not labs:
        print("no lab is up")
    for lab in labs:
        print_status(lab)
    return Exit.OK
