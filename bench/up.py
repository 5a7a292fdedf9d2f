"""Boot time and memory of labs: `python3 -m bench up [--quick] [--nodes 1,3,6] [--line]`.

For each size N, a chain of N hosts (h1 - h2 - ... - hN, point-to-point links) is brought up
with `Lab.up` and timed from the call to every node being ready (SSH answering with the pinned
host key). configs/line.yaml (h1 - r1 - h2, with the router stage) is timed too. After each
lab is ready, the resident set size of every VM process is read from /proc (VmRSS), then the
lab goes down. Targets (this 2-core machine, TCG): line.yaml under 20 s; 10 nodes each under
200 MB RSS. The figures are printed, not asserted: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def chain_yaml(count: int) -> str:
    lines = [f"name: bench-chain{count}", "defaults: {memory: 256}", "nodes:"]
    for i in range(1, count + 1):
        ifaces = []
        if i > 1:
            ifaces.append("{name: left}")
        if i < count:
            ifaces.append("{name: right}")
        lines.append(f"  h{i}: {{role: host, interfaces: [{', '.join(ifaces)}]}}")
    links = [f"  - [h{i}:right, h{i + 1}:left]" for i in range(1, count)]
    lines += ["links:", *links] if links else ["links: []"]
    return "\n".join(lines) + "\n"


def single_node() -> Any:
    """One host with only its management NIC (a file cannot say this: nodes need links)."""
    from orchestrate.topology import Defaults, Node, Topology

    return Topology(name="bench-single", path=None, defaults=Defaults(),
                    nodes={"h1": Node(name="h1", role="host", memory=256)}, links=[])


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(topology: Any, image: Any, accel: str, timeout: float) -> dict[str, Any]:
    from orchestrate.lab import Lab

    started = time.monotonic()
    lab = Lab.up(topology, name=f"bench-{topology.name}", image=image, accel=accel,
                 timeout=timeout, progress=False)
    elapsed = time.monotonic() - started
    try:
        rss = [rss_mib(int(obj["pid"])) for obj in lab.record.objects("process")]
        values = [r for r in rss if r is not None]
        return {"nodes": len(lab.nodes()), "seconds": elapsed, "accel": lab.record.data["accel"],
                "rss": values}
    finally:
        lab.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench up")
    parser.add_argument("--quick", action="store_true", help="1 and 3 nodes only")
    parser.add_argument("--nodes", default=None, help="comma-separated chain sizes (1,3,6)")
    parser.add_argument("--no-line", action="store_true", help="skip configs/line.yaml")
    parser.add_argument("--accel", default=os.environ.get("VRLAB_ACCEL", "auto"))
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.nodes.split(",")] if args.nodes else (
        [1, 3] if args.quick else [1, 3, 6])

    from orchestrate.images import ensure_image
    from orchestrate.lab import LabError
    from orchestrate.topology import load_topology

    image = ensure_image(progress=False)
    rows: list[tuple[str, dict[str, Any]]] = []
    failures = 0
    with tempfile.TemporaryDirectory(prefix="vrlab-bench-") as tmp:
        cases: list[tuple[str, Any]] = []
        for size in sizes:
            if size == 1:
                cases.append(("one host", single_node()))
                continue
            path = Path(tmp) / f"chain{size}.yaml"
            path.write_text(chain_yaml(size))
            cases.append((f"chain of {size} hosts", load_topology(path)))
        if not args.no_line:
            cases.append(("configs/line.yaml (router)",
                          load_topology(REPO / "configs" / "line.yaml")))
        for label, topology in cases:
            try:
                result = measure(topology, image, args.accel, args.timeout)
            except LabError as exc:
                print(f"{label}: FAILED: {exc}", flush=True)
                failures += 1
                continue
            rows.append((label, result))
            rss = result["rss"]
            print(f"{label:32} {result['nodes']:3d} nodes  up {result['seconds']:6.1f} s  "
                  f"({result['accel']})  RSS/VM mean {statistics.mean(rss):6.0f} MiB "
                  f"max {max(rss):6.0f} MiB", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} "
          f"(on {os.cpu_count()} CPUs; other work on the machine inflates boot times)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
