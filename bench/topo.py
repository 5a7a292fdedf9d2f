"""Topology computation at scale: `python3 -m bench topo [--routers N]`.

Writes a generated topology (N routers in a ring with a chord every 10 routers, one host per
50 routers, no addresses and no routes: `addressing` IPv6 only, `routing: auto`), then times
`load_topology` (validation, addressing, shortest paths, summarization) and `vrlab expand`
(the same plus writing every route as YAML). Nothing boots. The issue's targets for 1,000
routers are 10 s to validate and 30 s to expand; the figures are reported, not asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def generate(routers: int, *, chord_every: int = 10, host_every: int = 50) -> str:
    """The YAML text of a generated lab: a ring of routers with chords, and some hosts."""
    lines = ["name: scale", "addressing: {ipv4: false}", "routing: auto", "nodes:"]
    names = [f"r{i}" for i in range(1, routers + 1)]
    hosts = [f"h{i}" for i in range(1, routers + 1, host_every)]
    lines += [f"  {n}: {{role: router}}" for n in names]
    lines += [f"  {h}: {{role: host}}" for h in hosts]
    lines.append("links:")
    lines += [f"  - [{names[i]}, {names[(i + 1) % routers]}]" for i in range(routers)]
    for i in range(0, routers, chord_every):
        j = (i + routers // 3) % routers
        if abs(i - j) > 1:
            lines.append(f"  - {{endpoints: [{names[i]}, {names[j]}], cost: 3}}")
    lines += [f"  - [{h}, r{h[1:]}]" for h in hosts]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from orchestrate.topology import load_topology
    from orchestrate.topology.expand import dump

    parser = argparse.ArgumentParser(prog="python3 -m bench topo")
    parser.add_argument("--routers", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 routers")
    args = parser.parse_args(argv)
    routers = 200 if args.quick else args.routers
    with tempfile.TemporaryDirectory(prefix="vrlab-topo-") as tmp:
        path = Path(tmp) / "scale.yaml"
        path.write_text(generate(routers))
        start, cpu = time.monotonic(), time.process_time()
        topology = load_topology(path)
        validated = (time.monotonic() - start, time.process_time() - cpu)
        start, cpu = time.monotonic(), time.process_time()
        text = dump(load_topology(path), str(path))
        expanded = (time.monotonic() - start, time.process_time() - cpu)
        # The expansion is itself a topology file: it must load again, to the same routes.
        out = Path(tmp) / "expanded.yaml"
        out.write_text(text)
        start, cpu = time.monotonic(), time.process_time()
        again = load_topology(out)
        reloaded = (time.monotonic() - start, time.process_time() - cpu)
        same = all(sorted(map(str, a.routes)) == sorted(map(str, again.nodes[a.name].routes))
                   for a in topology.routers())
    routes = [len(n.routes) for n in topology.routers()]
    print(f"{routers} routers, {len(topology.hosts())} hosts, {len(topology.links)} links")
    # CPU time beside wall time: on a shared machine the wall clock measures the neighbours
    print(f"validate (load_topology):  {validated[0]:7.2f} s wall, {validated[1]:6.2f} s CPU")
    print(f"expand (load + YAML):      {expanded[0]:7.2f} s wall, {expanded[1]:6.2f} s CPU  "
          f"({len(text) / 1e6:.1f} MB of YAML)")
    print(f"expanded file loaded:      {reloaded[0]:7.2f} s wall, {reloaded[1]:6.2f} s CPU  "
          f"(same routes on every router: {'yes' if same else 'NO'})")
    print(f"routes per router: min {min(routes)}, mean {sum(routes) / len(routes):.1f}, "
          f"max {max(routes)} (summarized; {len(topology.links)} subnets unsummarized)")
    return 0 if same else 1
