"""`vrlab trace LAB --from NODE --to NODE|ADDR`: follow one packet across the whole lab.

    vrlab trace LAB --from h1 --to h2 [--family 4|6] [--proto icmp|udp|tcp] [--size N]
                    [--ttl N] [--df] [--timeout S] [--json] [-o trace.svg]
    vrlab trace LAB --watch 'icmp and host 198.51.100.66'

Prints the journey as a timeline: every wire it crossed (host-side capture times), every
router's stages (its own trace records: verify, route, neighbor, fast or slow path, TTL,
ICMP error, drop, transmit), the reply or the ICMP error on the way back, per-hop latency and
the end-to-end time. Exit status: 0 when an answer (reply or ICMP error) came back, 1 when the
probe was lost (the message says where it was last seen), 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from orchestrate.commands import Exit, add_json_option, completes_lab_names, fail


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "trace", help="follow one packet through the lab (wires and routers)",
        description="Send one marked probe (or follow the next packet matching --watch) and "
                    "show its journey: every link it crossed and every router's stages.")
    completes_lab_names(parser.add_argument("lab", nargs="?",
                                            help="lab name (default: the only lab)"))
    parser.add_argument("--from", dest="src", metavar="NODE", help="host that sends the probe")
    parser.add_argument("--to", dest="dst", metavar="NODE|ADDR", help="destination")
    parser.add_argument("--family", type=int, choices=(4, 6), help="IPv4 or IPv6")
    parser.add_argument("--proto", choices=("icmp", "udp", "tcp"), default="icmp",
                        help="probe protocol (default icmp echo; udp to port 33434, tcp to 22)")
    parser.add_argument("--size", type=int, default=56,
                        help="payload bytes after the ICMP/UDP/TCP header (as ping -s)")
    parser.add_argument("--ttl", type=int, default=64, help="TTL / hop limit of the probe")
    parser.add_argument("--df", action="store_true", help="set Don't Fragment (IPv4)")
    parser.add_argument("--watch", metavar="FILTER",
                        help="send nothing; follow the next packet matching FILTER "
                             "(e.g. 'icmp and host 198.51.100.66')")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for the answer (or, with --watch, the packet)")
    add_json_option(parser)
    parser.add_argument("-o", "--output", type=Path, help="write an SVG sequence picture")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrate.trace.journey import TraceError
    from orchestrate.trace.live import TraceRequest, run_trace
    from orchestrate.trace.render import to_json, to_svg, to_text

    if args.watch is None and (args.src is None or args.dst is None):
        return fail(args, Exit.BAD_INPUT,
                    "--from NODE and --to NODE|ADDR are needed (or --watch FILTER)")
    if not 0 <= args.size <= 65000 or not 1 <= args.ttl <= 255 or not 0 < args.timeout <= 120:
        return fail(args, Exit.BAD_INPUT, "--size 0..65000, --ttl 1..255, --timeout 0..120 s")
    if args.output is not None and args.output.suffix.lower() != ".svg":
        return fail(args, Exit.BAD_INPUT, f"-o wants an .svg file, got {args.output}")
    request = TraceRequest(args.lab, args.src, args.dst, args.family, args.proto, args.size,
                           args.ttl, args.df, args.watch, args.timeout)
    quiet = args.json
    try:
        journey, report = run_trace(
            request, log=(lambda _: None) if quiet else
            (lambda msg: print(f"vrlab trace: {msg}", file=sys.stderr)))
    except TraceError as exc:
        return fail(args, Exit(exc.status), str(exc))
    for problem in report.get("problems", []):
        print(f"vrlab trace: warning: {problem}", file=sys.stderr)
    sys.stdout.write(to_json(journey) if args.json else to_text(journey))
    if args.output is not None:
        args.output.write_text(to_svg(journey))
        print(f"vrlab trace: wrote {args.output}", file=sys.stderr)
    if journey.outcome == "lost":
        print(f"vrlab trace: the probe never got an answer; last seen "
              f"{journey.last_seen or 'nowhere (not on any link)'}", file=sys.stderr)
        return Exit.FAILED
    return Exit.OK
