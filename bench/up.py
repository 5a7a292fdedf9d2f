"""Bringing labs up, cold boot against snapshot boot: `python3 -m bench up [--quick]
[--nodes 1,5,10,20,40] [--cold-max N] [--plot FILE.png]`.

For each size N, a chain h1 - r1 - ... - r(N-2) - h2 (N-2 routers; N = 1 is one host) is
brought up with `Lab.up`, once with `boot="cold"` and once with `boot="snapshot"`, one after
the other in the same run. For each: seconds from the call to every node ready (the router's
control answering on routers), QEMU CPU-seconds per node at that moment, and PSS and RSS per
node (/proc/PID/smaps_rollup) at ready and again after `--settle` seconds (KSM merges pages
after the VMs start), and the median and slowest node's seconds from its QEMU's start to its
ready (admission queues nodes, so this is not all-ready divided by N). The snapshots are made
first, untimed (once per image and kind of node). Then each figure's growth with N, and with
--plot a PNG of time to all-ready against N (matplotlib, in the dev extra). The figures are
printed, not asserted: the machine is shared.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SIZES = (1, 5, 10, 20, 40)
QUICK_SIZES = (1, 5)
MODES = ("cold", "snapshot")


def chain_yaml(count: int) -> str:
    """h1 - r1 - ... - r(count-2) - h2: /30 links in 198.51.100.0/24, hosts routed to r1/rN."""
    names = ["h1", *[f"r{i}" for i in range(1, count - 1)], "h2"]
    # No memory given: each node gets its role's measured size (orchestrate.memory).
    lines = [f"name: bench-chain{count}", "nodes:"]
    for index, name in enumerate(names):
        ifaces = []
        if index > 0:
            ifaces.append(f"{{name: left, addresses: [198.51.100.{4 * (index - 1) + 2}/30]}}")
        if index < count - 1:
            ifaces.append(f"{{name: right, addresses: [198.51.100.{4 * index + 1}/30]}}")
        role = "host" if name.startswith("h") else "router"
        lines.append(f"  {name}: {{role: {role}, interfaces: [{', '.join(ifaces)}]}}")
    links = [f"  - [{a}:right, {b}:left]" for a, b in itertools.pairwise(names)]
    lines += ["links:", *links]
    return "\n".join(lines) + "\n"


def topology_of(count: int, tmp: Path) -> Any:
    from orchestrate.memory import role_memory
    from orchestrate.topology import Defaults, Node, Topology, load_topology

    if count == 1:  # one host with only its management NIC (a file cannot say this)
        return Topology(name="bench-single", path=None, defaults=Defaults(),
                        nodes={"h1": Node(name="h1", role="host",
                                          memory=role_memory("host"))}, links=[])
    path = tmp / f"chain{count}.yaml"
    path.write_text(chain_yaml(count))
    return load_topology(path)


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(lab: Any) -> tuple[float, float]:
    from orchestrate.memory import process_memory_kib

    found = [process_memory_kib(pid) for pid in map(lab.vm_pid, lab.nodes()) if pid]
    values = [m for m in found if m is not None]
    if not values:
        return 0.0, 0.0
    return (statistics.mean(p for p, _ in values) / 1024,
            statistics.mean(r for _, r in values) / 1024)


def measure(topology: Any, image: Any, boot: str, timeout: float, settle: float,
            ) -> dict[str, Any]:
    from orchestrate.lab import Lab

    started = time.monotonic()
    begun: dict[str, float] = {}
    node_seconds: list[float] = []  # each node: from its QEMU's start to ready

    def on_event(node: str, stage: str, _when: str) -> None:
        if stage == "boot":
            begun[node] = time.monotonic()
        elif stage == "ready" and node in begun:
            node_seconds.append(time.monotonic() - begun[node])

    lab = Lab.up(topology, name=f"bench-{boot}-{topology.name}", image=image, timeout=timeout,
                 progress=False, boot=boot, on_event=on_event)
    elapsed = time.monotonic() - started
    try:
        nodes = len(lab.nodes())
        pids = [pid for pid in map(lab.vm_pid, lab.nodes()) if pid]
        cpu = sum(cpu_seconds(pid) for pid in pids) / nodes
        pss, rss = memory(lab)
        time.sleep(settle)
        pss_settled, rss_settled = memory(lab)
        restored = sum(1 for name in lab.nodes() if lab.spec(name).incoming is not None)
        return {"nodes": nodes, "routers": sum(1 for n in lab.nodes()
                                               if lab.spec(n).role == "router"),
                "seconds": elapsed, "cpu_per_node": cpu, "pss": pss, "rss": rss,
                "pss_settled": pss_settled, "rss_settled": rss_settled, "restored": restored,
                "node_median": statistics.median(node_seconds) if node_seconds else 0.0,
                "node_max": max(node_seconds, default=0.0)}
    finally:
        lab.down()


def warm_snapshots(image: Any, sizes: list[int], tmp: Path, timeout: float) -> float:
    """Make the snapshots the runs restore from (untimed in the table); seconds it took."""
    from orchestrate.lab import Lab

    started = time.monotonic()
    for count in sorted({min(size, 5) for size in sizes}):
        lab = Lab.up(topology_of(count, tmp), name=f"bench-warm{count}", image=image,
                     timeout=timeout, progress=False, boot="snapshot")
        lab.down()
    return time.monotonic() - started


def growth(rows: list[dict[str, Any]], key: str) -> str:
    """How `key` grows from the smallest to the largest N: the ratio, and per added node."""
    if len(rows) < 2 or not rows[0][key]:
        return "-"
    first, last = rows[0], rows[-1]
    per_node = (last[key] - first[key]) / (last["nodes"] - first["nodes"])
    return f"x{last[key] / first[key]:.1f} from N={first['nodes']} to {last['nodes']} " \
           f"({per_node:+.2f} per added node)"


def plot(results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for mode, rows in results.items():
        if rows:
            axes.plot([r["nodes"] for r in rows], [r["seconds"] for r in rows], marker="o",
                      label=f"{mode} boot")
    axes.set_xlabel("nodes in the lab (chain; all but two are routers)")
    axes.set_ylabel("seconds to all nodes ready")
    axes.set_title("vrlab up, 2 cores, TCG")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"plot: {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench up")
    parser.add_argument("--quick", action="store_true", help=f"N = {QUICK_SIZES} only")
    parser.add_argument("--nodes", default=None, help="comma-separated chain sizes")
    parser.add_argument("--cold-max", type=int, default=None,
                        help="skip cold boot above this N (default: none skipped)")
    parser.add_argument("--settle", type=float, default=15.0,
                        help="seconds after ready before memory is read again (KSM)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.nodes.split(",")] if args.nodes else list(
        QUICK_SIZES if args.quick else SIZES)

    from orchestrate.images import ensure_image
    from orchestrate.lab import LabError

    image = ensure_image(progress=False)
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    failures = 0
    header = (f"{'N':>3} {'routers':>7} {'mode':>8} {'all ready s':>11} {'CPU s/node':>10} "
              f"{'PSS MiB':>8} {'RSS MiB':>8} {'PSS +settle':>11} {'restored':>8} "
              f"{'node s med/max':>14}")
    with tempfile.TemporaryDirectory(prefix="vrlab-bench-up-") as tmp:
        try:
            made = warm_snapshots(image, sizes, Path(tmp), args.timeout)
        except LabError as exc:
            print(f"making the snapshots failed: {exc}", flush=True)
            return 1
        print(f"snapshots ready ({made:.0f} s, untimed below; once per image)", flush=True)
        print(header, flush=True)
        for size in sizes:
            for mode in MODES:
                if mode == "cold" and args.cold_max is not None and size > args.cold_max:
                    print(f"{size:>3} {'':>7} {mode:>8} skipped (--cold-max)", flush=True)
                    continue
                try:
                    row = measure(topology_of(size, Path(tmp)), image, mode, args.timeout,
                                  args.settle)
                except LabError as exc:
                    print(f"{size:>3} {'':>7} {mode:>8} FAILED: {str(exc)[:300]}", flush=True)
                    failures += 1
                    continue
                results[mode].append(row)
                print(f"{row['nodes']:>3} {row['routers']:>7} {mode:>8} {row['seconds']:>11.1f} "
                      f"{row['cpu_per_node']:>10.1f} {row['pss']:>8.0f} {row['rss']:>8.0f} "
                      f"{row['pss_settled']:>11.0f} {row['restored']:>8} "
                      f"{row['node_median']:>6.1f}/{row['node_max']:<7.1f}", flush=True)
    print("growth with N:")
    for mode, rows in results.items():
        for key, label in (("seconds", "all ready s"), ("cpu_per_node", "CPU s/node"),
                           ("pss_settled", "PSS MiB/node"), ("rss", "RSS MiB/node")):
            print(f"  {mode:>8} {label:>13}: {growth(rows, key)}")
    for size in sizes:
        cold, snap = (next((r for r in results[m] if r["nodes"] == size), None) for m in MODES)
        if cold and snap:
            print(f"  N={size}: snapshot boot {cold['seconds'] / snap['seconds']:.1f}x faster "
                  f"to all-ready, {cold['cpu_per_node'] / max(snap['cpu_per_node'], 0.01):.1f}x "
                  f"less CPU per node")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} CPUs; "
          f"other work on the machine inflates these times)")
    if args.plot:
        try:
            plot(results, args.plot)
        except ImportError:
            print("no plot: matplotlib is not installed (pip install -e '.[dev]')",
                  file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
