"""FIB benchmark: loading big tables, lookup rate with a tiny and a huge table, memory.

    python3 -m bench fib            # 1M IPv4 + 100k IPv6 routes (~30 s)
    python3 -m bench.fib --quick    # 100k + 10k

Prefix lengths follow a rough Internet-table mix (mostly /24, some /16-/23, a few shorter
and longer); networks are random. Lookups use random addresses, so with a big table they
spread over the whole structure (the cache-missing case DATAPLANE-NOTES warns about).
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from appliance.core.fib import Fib, Route

V4_LENGTHS = [(24, 55), (23, 8), (22, 10), (21, 5), (20, 5), (19, 4), (18, 3), (17, 2),
              (16, 3), (12, 1), (8, 1), (25, 1), (28, 1), (32, 1)]
V6_LENGTHS = [(48, 50), (32, 10), (40, 8), (44, 8), (36, 6), (29, 5), (56, 5), (64, 6), (128, 2)]


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_prefixes(
    rng: random.Random, count: int, width: int, lengths: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    plens = rng.choices([p for p, _ in lengths], weights=[w for _, w in lengths], k=count)
    top = (1 << width) - 1
    return [(rng.getrandbits(width) & (top ^ (top >> plen)), plen) for plen in plens]


def make_routes(prefixes: list[tuple[int, int]], version: int) -> list[Route]:
    cls = IPv4Network if version == 4 else IPv6Network
    return [Route(cls(item), ifindex=1 + (i & 3)) for i, item in enumerate(prefixes)]


# CPU time of this process, not wall time: the machines running this are shared, and wall
# time mostly measures the neighbours.
clock = time.process_time


def timed(action: Callable[[], object]) -> float:
    started = clock()
    action()
    return clock() - started


def lookup_rate(lookup: Callable[[int], Route | None], addrs: list[int]) -> float:
    """Lookups per CPU second over `addrs`."""
    started = clock()
    for addr in addrs:
        lookup(addr)
    return len(addrs) / (clock() - started)


def object_lookup_rate(fib: Fib, addr: IPv4Address | IPv6Address, count: int) -> float:
    started = clock()
    for _ in range(count):
        fib.lookup(addr)
    return count / (clock() - started)


Row = Callable[[str, str], None]


def bench_tiny(row: Row, addrs4: list[int], addrs6: list[int]) -> None:
    tiny = Fib()
    tiny.add(Route(IPv4Network("0.0.0.0/0"), ifindex=1))
    tiny.add(Route(IPv6Network("::/0"), ifindex=1))
    row("IPv4 lookups/s, 1 route", f"{lookup_rate(tiny.lookup_v4, addrs4):,.0f}")
    row("IPv6 lookups/s, 1 route", f"{lookup_rate(tiny.lookup_v6, addrs6):,.0f}")
    rate = object_lookup_rate(tiny, IPv4Address("198.51.100.1"), len(addrs4))
    row("IPv4 lookups/s, 1 route, lookup(IPv4Address)", f"{rate:,.0f}")


def bench_v4(row: Row, rng: random.Random, count: int, addrs: list[int]) -> None:
    base = rss_mb()
    prefixes = random_prefixes(rng, count, 32, V4_LENGTHS)
    routes: list[Route] = []
    elapsed = timed(lambda: routes.extend(make_routes(prefixes, 4)))
    row(f"build {count:,} IPv4 Route objects", f"{elapsed:.2f} s")
    after_routes = rss_mb()
    fib = Fib()
    fib.add(Route(IPv4Network("0.0.0.0/0"), ifindex=1))
    row(f"Fib.add_many({count:,} IPv4 routes)", f"{timed(lambda: fib.add_many(routes)):.2f} s")
    after_fib = rss_mb()
    row("  distinct IPv4 prefixes in the table", f"{len(fib):,}")
    for what, megabytes in (("Route objects", after_routes - base),
                            ("Fib structures", after_fib - after_routes)):
        per_route = megabytes * 2**20 / count
        row(f"memory: {what} (RSS delta)", f"{megabytes:,.0f} MB ({per_route:,.0f} B/route)")
    row(f"IPv4 lookups/s, {len(fib):,} routes", f"{lookup_rate(fib.lookup_v4, addrs):,.0f}")
    # addresses inside the table's own prefixes: each lookup ends on a long match
    sample = rng.sample(prefixes, min(len(addrs), len(prefixes)))
    inside = [network | rng.getrandbits(32 - plen) for network, plen in sample]
    rate = lookup_rate(fib.lookup_v4, inside)
    row(f"IPv4 lookups/s, {len(fib):,} routes, addresses in routes", f"{rate:,.0f}")
    elapsed = timed(lambda: sum(1 for _ in fib.iter_v4()))
    row("iter_v4() over the table (snapshot export)", f"{elapsed:.2f} s")
    row("routes() sorted walk of the table", f"{timed(lambda: sum(1 for _ in fib.routes())):.2f} s")
    extra = make_routes(random_prefixes(rng, 10_000, 32, V4_LENGTHS), 4)
    first = Route(IPv4Network("203.0.113.128/25"), ifindex=1)
    # the first in-place change after a bulk load counts the prefixes per /16 once
    row("first Fib.add() after add_many (one-time count)", f"{timed(lambda: fib.add(first)):.2f} s")

    def add_each() -> None:
        for route in extra:
            fib.add(route)

    def delete_each() -> None:
        for route in extra:
            fib.delete(route.prefix)

    row("Fib.add() one at a time, big table", f"{timed(add_each) / len(extra) * 1e6:.1f} us/route")
    row("Fib.delete() one at a time", f"{timed(delete_each) / len(extra) * 1e6:.1f} us/route")


def bench_v6(row: Row, rng: random.Random, count: int, addrs: list[int]) -> None:
    prefixes = []
    for network, plen in random_prefixes(rng, count, 112, V6_LENGTHS):
        # 2001::/16 followed by the random bits, cut back to the prefix length
        full = (0x2001 << 112) | network
        prefixes.append((full & ~((1 << (128 - plen)) - 1), plen))
    routes = make_routes(prefixes, 6)
    fib = Fib()
    fib.add(Route(IPv6Network("::/0"), ifindex=1))
    row(f"Fib.add_many({count:,} IPv6 routes)", f"{timed(lambda: fib.add_many(routes)):.2f} s")
    row(f"IPv6 lookups/s, {len(fib):,} routes", f"{lookup_rate(fib.lookup_v6, addrs):,.0f}")
    sample = rng.sample(prefixes, min(len(addrs), len(prefixes)))
    inside = [network | rng.getrandbits(128 - plen) for network, plen in sample]
    rate = lookup_rate(fib.lookup_v6, inside)
    row(f"IPv6 lookups/s, {len(fib):,} routes, addresses in routes", f"{rate:,.0f}")
    rate = object_lookup_rate(fib, IPv6Address("2001:db8::1"), len(addrs))
    row("IPv6 lookups/s, lookup(IPv6Address)", f"{rate:,.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.fib", description="FIB benchmark")
    parser.add_argument("--quick", action="store_true", help="100k IPv4 / 10k IPv6 routes")
    parser.add_argument("--v4-routes", type=int, default=None, help="IPv4 routes (1000000)")
    parser.add_argument("--v6-routes", type=int, default=None, help="IPv6 routes (100000)")
    parser.add_argument("--lookups", type=int, default=100_000, help="lookups per measurement")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    n4 = args.v4_routes if args.v4_routes is not None else (100_000 if args.quick else 1_000_000)
    n6 = args.v6_routes if args.v6_routes is not None else (10_000 if args.quick else 100_000)
    rng = random.Random(args.seed)

    def row(what: str, value: str) -> None:
        print(f"  {what:<50} {value}", flush=True)

    print(f"FIB benchmark: {n4:,} IPv4 routes, {n6:,} IPv6 routes, {args.lookups:,} lookups "
          "(times are CPU seconds of this process)")
    addrs4 = [rng.getrandbits(32) for _ in range(args.lookups)]
    addrs6 = [(0x2001 << 112) | rng.getrandbits(112) for _ in range(args.lookups)]
    bench_tiny(row, addrs4, addrs6)
    bench_v4(row, rng, n4, addrs4)
    gc.collect()
    bench_v6(row, rng, n6, addrs6)
    row("peak RSS", f"{peak_rss_mb():,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
