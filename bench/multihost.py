"""One lab over libvirt hosts: `python3 -m bench multihost [--quick]` (root, libvirtd).

Two simulated hosts (orchestrate.simhosts: each a network namespace with its own libvirtd,
on one bridge in 203.0.113.0/26) stand in for two machines. Measured:

- `up` of the same 6-node chain (h1 - ... - h6, point-to-point links, 256 MiB each, TCG) with
  every node on one host, then spread over two (placement alternates the chain, so every link
  crosses). The image is already on both hosts (copied once, by a warm-up); the first copy is
  timed separately.
- round-trip time (ping, 20 echoes) and TCP throughput (iperf3, 5 s) from one node to a node
  on the same host and to a node on the other host, in one lab (a - b on alpha, a - c across),
  in three interleaved rounds (medians).

On one machine the "network" between the hosts is a veth pair and a bridge, so a crossing link
costs the extra UDP encapsulation and namespace hops, not a real wire: read the ratios, not the
absolute figures (two cores shared with TCG guests dominate both).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

CHAIN = 6


def chain_yaml(hosts: dict[str, dict[str, str]], pins: list[str]) -> str:
    """bench.up's chain of CHAIN hosts, on libvirt hosts, node i pinned to pins[i - 1]."""
    from bench.up import chain_yaml as plain_chain

    lines = plain_chain(CHAIN).splitlines()
    out = []
    for line in lines:
        if line.startswith("defaults:"):
            out.append("defaults: {memory: 256, backend: libvirt}")
            out.append("hosts:")
            out += [f"  {name}: {json.dumps(body)}" for name, body in hosts.items()]
            continue
        match = re.match(r"  h(\d+): \{role: host, ", line)
        if match:
            line = line.replace("{role: host, ",
                                f"{{role: host, host: {pins[int(match.group(1)) - 1]}, ")
        out.append(line)
    return "\n".join(out) + "\n"


def triangle_yaml(hosts: dict[str, dict[str, str]]) -> str:
    return "\n".join([
        "name: bench-mh-paths", "defaults: {memory: 256, backend: libvirt}", "hosts:",
        *[f"  {name}: {json.dumps(body)}" for name, body in hosts.items()],
        "nodes:",
        "  a: {role: host, host: alpha, interfaces: [{name: same, addresses: [198.51.100.1/26]},"
        " {name: cross, addresses: [198.51.100.65/26]}]}",
        "  b: {role: host, host: alpha, interfaces: [{name: eth1, addresses: [198.51.100.2/26]}]}",
        "  c: {role: host, host: beta, interfaces: [{name: eth1, addresses: [198.51.100.66/26]}]}",
        "links:", "  - [a:same, b:eth1]", "  - [a:cross, c:eth1]", ""])


def timed_up(path: Path, image: Any, timeout: float) -> tuple[float, Any]:
    from orchestrate.lab import Lab
    from orchestrate.topology import load_topology

    topology = load_topology(path)
    started = time.monotonic()
    lab = Lab.up(topology, backend="libvirt", accel="tcg", image=image, timeout=timeout,
                 progress=False)
    return time.monotonic() - started, lab


def rtt_ms(lab: Any, target: str) -> float:
    out = lab.node("a").exec(f"ping -c 20 -i 0.2 -W 2 {target}", timeout=60).stdout
    match = re.search(r"= [\d.]+/([\d.]+)/", out)
    if not match:
        raise RuntimeError(f"no RTT in: {out}")
    return float(match.group(1))


def throughput_mbit(lab: Any, server: str, target: str, seconds: int) -> float:
    lab.node(server).exec("setsid iperf3 -s -1 -D", timeout=30)
    time.sleep(0.5)
    out = lab.node("a").exec(f"iperf3 -c {target} -t {seconds} -J", timeout=seconds + 60)
    data = json.loads(out.stdout)
    return float(data["end"]["sum_received"]["bits_per_second"]) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench multihost")
    parser.add_argument("--quick", action="store_true", help="skip the 6-node up comparison")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench multihost needs root (network namespaces, libvirtd)")
        return 1

    from orchestrate.backends.libvirt import LibvirtBackend
    from orchestrate.images import ensure_image
    from orchestrate.simhosts import SimHosts

    image = ensure_image(progress=False)
    with tempfile.TemporaryDirectory(prefix="vrlab-bench-mh-") as tmp, \
            SimHosts(["alpha", "beta"], Path(tmp) / "hosts") as hosts:
        inventory = hosts.inventory()
        backend = LibvirtBackend(hosts=inventory)
        for name in inventory:
            started = time.monotonic()
            backend.ensure_image(name, image)
            print(f"image copied to {name} (storage volume upload, sparse): "
                  f"{time.monotonic() - started:5.1f} s", flush=True)
        started = time.monotonic()
        LibvirtBackend(hosts=inventory).ensure_image("alpha", image)
        print(f"image already on alpha (second lab): {time.monotonic() - started:5.2f} s")

        if not args.quick:
            times: dict[str, list[float]] = {}
            for _ in range(2):  # interleaved: 1 host, 2 hosts, 1 host, 2 hosts
                for label, pins in (("6 nodes, 1 host", ["alpha"] * CHAIN),
                                    ("6 nodes, 2 hosts", ["alpha", "beta"] * (CHAIN // 2))):
                    path = Path(tmp) / "chain.yaml"
                    path.write_text(chain_yaml(inventory, pins))
                    seconds, lab = timed_up(path, image, args.timeout)
                    lab.down()
                    times.setdefault(label, []).append(seconds)
                    print(f"up, {label:18} {seconds:6.1f} s", flush=True)
            one, two = (statistics.median(v) for v in times.values())
            print(f"up, 2 hosts / 1 host: x{two / one:.2f} (medians)")

        path = Path(tmp) / "paths.yaml"
        path.write_text(triangle_yaml(inventory))
        _, lab = timed_up(path, image, args.timeout)
        try:
            paths = {"same host": ("b", "198.51.100.2"), "across hosts": ("c", "198.51.100.66")}
            rtts: dict[str, list[float]] = {label: [] for label in paths}
            rates: dict[str, list[float]] = {label: [] for label in paths}
            # Interleaved rounds, so load that comes and goes hits both paths alike.
            for _ in range(1 if args.quick else 3):
                for label, (server, target) in paths.items():
                    rtts[label].append(rtt_ms(lab, target))
                    rates[label].append(throughput_mbit(lab, server, target, 5))
            for label in paths:
                print(f"{label:13} RTT {statistics.median(rtts[label]):7.2f} ms   TCP "
                      f"{statistics.median(rates[label]):7.1f} Mbit/s   (medians of "
                      f"{len(rtts[label])} rounds: RTT {rtts[label]}, TCP "
                      f"{[round(r, 1) for r in rates[label]]})", flush=True)
            rtt = {label: statistics.median(values) for label, values in rtts.items()}
            tcp = {label: statistics.median(values) for label, values in rates.items()}
            print(f"across/same: RTT x{rtt['across hosts'] / rtt['same host']:.2f}, "
                  f"TCP x{tcp['across hosts'] / tcp['same host']:.2f}")
        finally:
            lab.down()
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
