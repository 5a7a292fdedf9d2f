"""`vrlab capture NODE:IF [-w FILE|-] [--follow] [-c COUNT] [--duration S]`: a pcap of any
lab link.

`-w -` streams the pcap to stdout as it is written (``vrlab capture r1:r1-h1 -w - | wireshark
-k -i -``); `--follow` prints each packet, decoded on one line, as it passes.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from orchestrate.commands import Exit, add_json_option, add_lab_option, fail, print_json

POLL = 0.05
"""Seconds between looks at the growing pcap file."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("capture", help="write a pcap of a node's interface")
    parser.add_argument("endpoint", metavar="NODE:IF",
                        help="the interface to capture on, e.g. r1:eth1")
    parser.add_argument("-w", "--write", help="pcap file (default NODE-IF.pcap); "
                        "'-' streams the pcap to stdout (e.g. into wireshark -k -i -)")
    parser.add_argument("--follow", action="store_true",
                        help="print each packet, decoded, as it passes")
    parser.add_argument("-c", "--count", type=int, help="stop after this many packets")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    add_lab_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=run)


class _Tail:
    """Copies the growing pcap to a stream byte for byte (header first) and/or prints each
    completed record decoded; counts the records."""

    def __init__(self, path: Path, raw: BinaryIO | None, follow: bool) -> None:
        from orchestrate.packets import PcapReader

        self.path = path
        self.raw = raw
        self.follow = follow
        self.reader = PcapReader(path)
        self.copied = 0
        self.packets = 0

    def pump(self) -> None:
        if self.raw is not None:
            with contextlib.suppress(FileNotFoundError), self.path.open("rb") as f:
                f.seek(self.copied)
                data = f.read()
                if data:
                    self.raw.write(data)
                    self.raw.flush()
                    self.copied += len(data)
        from orchestrate.packets import decode

        for record in self.reader.read():
            self.packets += 1
            if self.follow:
                stamp = datetime.fromtimestamp(record.time).strftime("%H:%M:%S.%f")
                print(f"{stamp} {decode(record.frame).summary()}", flush=True)


def run(args: argparse.Namespace) -> int:
    from orchestrate.capture import CaptureError
    from orchestrate.lab import Lab, LabError, resolve_lab_name

    node, sep, ifname = args.endpoint.partition(":")
    if not sep or not node or not ifname:
        return fail(args, Exit.BAD_INPUT, "want NODE:IF, e.g. r1:eth1")
    to_stdout = args.write == "-"
    if to_stdout and (args.follow or args.json):
        return fail(args, Exit.BAD_INPUT, "-w - writes the pcap to stdout; --follow and --json "
                    "would mix text into it")
    with contextlib.ExitStack() as stack:
        if to_stdout:
            path = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="vrlab-capture-"))) / f"{node}-{ifname}.pcap"
        else:
            path = Path(args.write) if args.write else Path(f"{node}-{ifname}.pcap")
        try:
            lab = Lab.open(resolve_lab_name(args.lab))
            tail: _Tail | None = None
            with lab.capture(node, ifname, path) as pcap:
                where = "stdout" if to_stdout else str(pcap)
                print(f"capturing {node}:{ifname} into {where} "
                      f"({'Ctrl-C to stop' if not (args.count or args.duration) else 'bounded'})",
                      file=sys.stderr)
                tail = _Tail(pcap, sys.stdout.buffer if to_stdout else None, args.follow)
                started = time.monotonic()
                try:
                    while True:
                        tail.pump()
                        if (args.duration is not None
                                and time.monotonic() - started >= args.duration):
                            break
                        if args.count is not None and tail.packets >= args.count:
                            break
                        time.sleep(POLL)
                except (KeyboardInterrupt, BrokenPipeError):
                    pass
            if tail is not None:
                with contextlib.suppress(BrokenPipeError):
                    tail.pump()  # what arrived while the capture stopped
        except LabError as exc:
            return fail(args, Exit.BAD_INPUT, str(exc))
        except CaptureError as exc:
            return fail(args, Exit.FAILED, str(exc))
        packets = tail.packets if tail is not None else 0
    print(f"{packets} packets written to {'stdout' if to_stdout else path}", file=sys.stderr)
    if args.json:
        print_json({"file": "-" if to_stdout else str(path), "packets": packets})
    return Exit.OK
