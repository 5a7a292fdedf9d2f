"""`vrlab console NODE`: attach to a node's serial console (Ctrl-] detaches).

The serial port is a QEMU chardev socket that also writes `serial.log`, so attaching never
loses output and the log is complete whether or not anyone is attached. With the libvirt
backend it is the domain's console stream (on whichever host the node runs), relayed through a
local socket pair, and the log is read back from the host.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import sys
import termios
import tty
from typing import Any

from orchestrate.commands import Exit, add_lab_option, fail

DETACH = b"\x1d"  # Ctrl-]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("console", help="attach to a node's serial console")
    parser.add_argument("node", metavar="NODE", help="the node whose console to attach to")
    add_lab_option(parser)
    parser.add_argument("--log", action="store_true", help="print serial.log instead")
    parser.set_defaults(func=run)


def relay(sock: socket.socket, stdin_fd: int, stdout_fd: int) -> None:
    """Copy between the console socket and the terminal until Ctrl-] or either side closes."""
    while True:
        readable, _, _ = select.select([sock.fileno(), stdin_fd], [], [])
        if sock.fileno() in readable:
            data = sock.recv(65536)
            if not data:
                return
            os.write(stdout_fd, data)
        if stdin_fd in readable:
            data = os.read(stdin_fd, 1024)
            if not data or DETACH in data:
                before = data.split(DETACH, 1)[0]
                if before:
                    sock.sendall(before)
                return
            sock.sendall(data)


def run(args: argparse.Namespace) -> int:
    from orchestrate.lab import Lab, LabError, resolve_lab_name

    try:
        lab = Lab.open(resolve_lab_name(args.lab))
        spec = lab.spec(args.node)
    except LabError as exc:
        return fail(args, Exit.BAD_INPUT, str(exc))
    if args.log:
        sys.stdout.write(lab.serial_text(args.node))
        return 0
    backend: Any = lab.backend()
    if hasattr(backend, "console_socket"):  # libvirt: a console stream, wherever the node runs
        from orchestrate.backends import BackendError

        try:
            sock = backend.console_socket(lab.record, args.node)
        except BackendError as exc:
            return fail(args, Exit.FAILED, str(exc))
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(spec.serial_socket))
        except OSError as exc:
            return fail(args, Exit.FAILED, f"{spec.serial_socket}: {exc}")
    print(f"[console {lab.name}/{args.node}: Ctrl-] to detach; log {spec.serial_log}]",
          file=sys.stderr)
    stdin_fd = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin_fd) if os.isatty(stdin_fd) else None
    try:
        if saved is not None:
            tty.setraw(stdin_fd)
        sock.sendall(b"\r")
        relay(sock, stdin_fd, sys.stdout.fileno())
    finally:
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        with contextlib.suppress(OSError):
            sock.close()
    print("\n[detached]", file=sys.stderr)
    return 0
