"""Run the vrlab benchmarks in one go: `python3 -m bench [NAME ...] [--quick]`.

Each benchmark module exposes ``main(argv) -> int`` and prints its own table. Figures are
compared side by side within one run (ratios), never against fixed thresholds, because these
machines are noisy.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

BENCHMARKS = ("fib", "fastpath", "forward", "boot", "up", "multihost", "topo", "vm-forward")
ON_REQUEST = ("soak",)  # ten minutes of mixed load: `python3 -m bench soak` (`make soak`)


def module_name(name: str) -> str:
    """`vm-forward` is bench/vm_forward.py."""
    return f"bench.{name.replace('-', '_')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer repetitions")
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 and argv[0] in BENCHMARKS + ON_REQUEST:
        # One benchmark with its own options: `python3 -m bench up --nodes 1,5 --plot x.png`.
        return int(importlib.import_module(module_name(argv[0])).main(argv[1:]))
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    known = BENCHMARKS + ON_REQUEST
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(known)}")
    failures = 0
    for name in names:
        module = importlib.import_module(module_name(name))
        print(f"\n=== bench {name} ===", flush=True)
        started = time.monotonic()
        status = module.main(["--quick"] if args.quick else [])
        elapsed = time.monotonic() - started
        print(f"=== bench {name}: exit {status}, {elapsed:.1f} s ===", flush=True)
        failures += status != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
