"""`vrlab capture NODE:IF [-w FILE] [-c COUNT] [--duration S]`: a pcap of any lab link."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from orchestrate.commands import Exit, add_json_option, add_lab_option, fail, print_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("capture", help="write a pcap of a node's interface")
    parser.add_argument("endpoint", metavar="NODE:IF",
                        help="the interface to capture on, e.g. r1:eth1")
    parser.add_argument("-w", "--write", type=Path, help="pcap file (default NODE-IF.pcap)")
    parser.add_argument("-c", "--count", type=int, help="stop after this many packets")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    add_lab_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrate.capture import CaptureError, count_pcap_packets
    from orchestrate.lab import Lab, LabError, resolve_lab_name

    node, sep, ifname = args.endpoint.partition(":")
    if not sep or not node or not ifname:
        return fail(args, Exit.BAD_INPUT, "want NODE:IF, e.g. r1:eth1")
    path = args.write or Path(f"{node}-{ifname}.pcap")
    try:
        lab = Lab.open(resolve_lab_name(args.lab))
        with lab.capture(node, ifname, path) as pcap:
            print(f"capturing {node}:{ifname} into {pcap} "
                  f"({'Ctrl-C to stop' if not (args.count or args.duration) else 'bounded'})",
                  file=sys.stderr)
            started = time.monotonic()
            try:
                while True:
                    if args.duration is not None and time.monotonic() - started >= args.duration:
                        break
                    if args.count is not None and count_pcap_packets(pcap) >= args.count:
                        break
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
    except LabError as exc:
        return fail(args, Exit.BAD_INPUT, str(exc))
    except CaptureError as exc:
        return fail(args, Exit.FAILED, str(exc))
    packets = count_pcap_packets(path)
    print(f"{packets} packets written to {path}", file=sys.stderr)
    if args.json:
        print_json({"file": str(path), "packets": packets})
    return Exit.OK
