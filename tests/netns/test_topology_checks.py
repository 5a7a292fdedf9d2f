"""The example topologies' own `tests:` checks, run by orchestrate.checks against the real
appliance: each topology file is built as network namespaces (veth pairs for point-to-point
links, a bridge for a LAN segment), routers run `vrlab-router` with `Node.router_config()`,
hosts get the file's addresses and routes on the kernel stack. No VMs: this is the same
topology and the same checks `vrlab test` runs, with namespaces standing in for the lab.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrate.checks import CheckRunner, print_results
from orchestrate.topology import Topology, load_topology

from netns import REPO, Lab, Namespace, RouterProcess, host_offloads_off, wait_for

CONFIGS = REPO / "configs"


@dataclass(frozen=True)
class Result:
    exit_status: int
    stdout: str
    stderr: str


class NetnsNode:
    """A topology node as a namespace: commands run in it; `routerctl` reaches its daemon."""

    def __init__(self, ns: Namespace, router: RouterProcess | None) -> None:
        self.ns = ns
        self.router = router

    def exec(self, cmd: str, timeout: float = 60.0) -> Result:
        if self.router is not None and cmd.startswith("routerctl "):
            argv = [sys.executable, "-m", "appliance.control.ctl",
                    "--socket", str(self.router.socket), *shlex.split(cmd)[1:]]
            env = dict(os.environ, PYTHONPATH=str(REPO))
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env=env, cwd=str(REPO), check=False)
        else:
            proc = self.ns.run(["sh", "-c", cmd], timeout=timeout, check=False)
        return Result(proc.returncode, proc.stdout, proc.stderr)


class NetnsTopologyLab:
    """Builds a Topology in namespaces of `lab`; offers the checks' lab interface."""

    def __init__(self, lab: Lab, topology: Topology) -> None:
        self.lab = lab
        self.topology = topology
        self.spaces: dict[str, Namespace] = {}
        self.nodes: dict[str, NetnsNode] = {}
        macs = (f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}" for i in itertools.count(1))
        for name in topology.nodes:
            self.spaces[name] = lab.namespace(name[:6])
        for index, link in enumerate(topology.links):
            mtu = link.mtu or 1500
            if link.is_lan:
                sw = lab.namespace(f"sw{index}")
                ports = []
                for j, end in enumerate(link.endpoints):
                    port = f"sw{index}p{j}"
                    lab.veth(self.spaces[end.node], end.ifname, sw, port, mtu=mtu,
                             a_mac=next(macs))
                    ports.append(port)
                lab.bridge(sw, "br0", ports)
            else:
                a, b = link.endpoints
                lab.veth(self.spaces[a.node], a.ifname, self.spaces[b.node], b.ifname, mtu=mtu,
                         a_mac=next(macs), b_mac=next(macs))
        for node in topology.nodes.values():
            ns = self.spaces[node.name]
            if node.is_router:
                router = lab.start_router(ns, node.router_config())
                self.nodes[node.name] = NetnsNode(ns, router)
                continue
            for iface in node.interfaces:
                host_offloads_off(ns, iface.name)
                for addr in iface.addresses:
                    ns.add_address(iface.name, str(addr))
            for route in node.routes:
                ns.add_route(str(route.prefix), str(route.via), route.interface)
            self.nodes[node.name] = NetnsNode(ns, None)

    def node(self, name: str) -> NetnsNode:
        return self.nodes[name]

    @contextlib.contextmanager
    def capture(self, node: str, ifname: str, path: Path) -> Iterator[Path]:
        ns = self.spaces[node]
        proc = ns.popen(["tcpdump", "-i", ifname, "-U", "-n", "-w", str(path)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # tcpdump says "listening on" once the socket is open; bounded wait
            assert proc.stderr is not None
            os.set_blocking(proc.stderr.fileno(), False)
            seen = b""

            def listening() -> bool:
                nonlocal seen
                with contextlib.suppress(BlockingIOError, TypeError):
                    seen += proc.stderr.read() or b""  # type: ignore[union-attr]
                return b"listening on" in seen

            assert wait_for(listening, timeout=10), f"tcpdump did not start: {seen!r}"
            yield path
        finally:
            time.sleep(0.2)
            proc.terminate()
            proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["duo", "line", "redirect", "pmtu"])
def test_example_topology_checks_pass(name: str, tmp_path: Path) -> None:
    from rich.console import Console

    topology = load_topology(CONFIGS / f"{name}.yaml")
    lab = Lab(tmp_path)
    try:
        built = NetnsTopologyLab(lab, topology)
        runner = CheckRunner(built, topology, workdir=tmp_path)
        results = runner.run_all(topology.tests)
        console = Console(width=160, force_terminal=False)
        with console.capture() as out:
            print_results(results, console, title=name)
        failed = [r for r in results if not r.passed]
        assert not failed, out.get()
        assert len(results) == len(topology.tests)
    finally:
        lab.close()
