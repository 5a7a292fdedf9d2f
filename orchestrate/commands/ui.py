"""`vrlab ui [LAB]`: the lab live in a browser (loopback only, secret token in the URL).

    vrlab ui [LAB] [--port N] [--host 127.0.0.1|::1] [--interval S] [--token-file PATH]

Prints the page's URL (with its token) and serves until Ctrl-C. See orchestrate/ui/server.py
for what the page shows and how it is protected.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from orchestrate.commands import Exit, completes_lab_names, fail


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "ui", help="show a running lab in the browser (live link rates, traces, captures)",
        description="Serve a local web page showing LAB: topology with node states, live "
                    "per-link packet and byte rates, router tables, traces and captures. "
                    "Loopback only; the URL carries a secret token.")
    completes_lab_names(parser.add_argument("lab", nargs="?",
                                            help="lab name (default: the only lab up)"))
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="loopback address to listen on: 127.0.0.1 (default) or ::1")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between link counter updates (default 1)")
    parser.add_argument("--url-file", type=Path,
                        help="also write the URL (with its token) to this file, mode 0600")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrate.lab import Lab, LabError, resolve_lab_name
    from orchestrate.ui.server import LOOPBACK, LabView, UiError, new_token, serve

    if args.host not in LOOPBACK:
        return fail(args, Exit.BAD_INPUT, f"--host {args.host}: loopback only (127.0.0.1 or "
                    "::1); reach it from elsewhere through an SSH tunnel")
    if not 0.2 <= args.interval <= 60:
        return fail(args, Exit.BAD_INPUT, "--interval wants 0.2..60 seconds")
    try:
        lab = Lab.open(resolve_lab_name(args.lab))
    except LabError as exc:
        return fail(args, Exit.BAD_INPUT, str(exc))
    view = LabView(lab, args.interval)
    token = new_token()

    def ready(url: str) -> None:
        if args.url_file is not None:
            fd = os.open(args.url_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(url + "\n")
        print(f"vrlab ui: lab {lab.name} at\n    {url}\n(Ctrl-C to stop)", file=sys.stderr,
              flush=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM ends the server as Ctrl-C does (captures stopped)

    signal.signal(signal.SIGTERM, stop)
    try:
        asyncio.run(serve(view, args.host, args.port, token, ready))
    except KeyboardInterrupt:
        pass
    except (UiError, OSError) as exc:
        return fail(args, Exit.FAILED, str(exc))
    finally:
        view.close()
    return Exit.OK
