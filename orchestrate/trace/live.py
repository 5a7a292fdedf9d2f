"""Running a trace on a live lab: arm the routers, capture every link, probe, collect.

Order (every step bounded):

1. open the lab and check every node is running (a lab that is down says which node);
2. on every router, start a filtered trace session (`routerctl trace --start --filter A,B`):
   only packets to or from the probe's two ends are recorded, by the slow path and by the
   C fast path alike, so the probe takes the path it would have taken anyway;
3. capture every link host-side (`orchestrate.capture`): one end of each point-to-point link
   (QEMU sees both directions), every port of a LAN segment;
4. send the marked probe from the source host (`orchestrate.trace.probe`), or with `--watch`
   wait for the first captured packet that matches the filter;
5. stop the captures, collect each router's records (`routerctl trace --collect S`), and
   assemble the journey (`orchestrate.trace.journey`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrate.capture import CaptureError
from orchestrate.packets import PcapReader, decode
from orchestrate.trace.journey import (
    Flow,
    Journey,
    LabMap,
    RouterRecord,
    TraceError,
    WireEvent,
    assemble,
)
from orchestrate.trace.probe import DEFAULT_DPORT, ProbeSpec
from orchestrate.trace.watch import WatchFilter, parse_watch

ROUTER_TRACE_COUNT = 64
"""Records each router keeps for one trace (filtered: only the probe's packets count)."""
SETTLE = 0.4
"""Seconds to let the last frames reach the pcap files after the answer came back."""
QUIET = 1.0
"""--watch: the journey is over when no new related frame was captured for this long."""


@dataclass
class TraceRequest:
    lab: str | None
    src: str | None
    dst: str | None
    family: int | None = None
    proto: str = "icmp"
    size: int = 56
    """Payload bytes after the ICMP/UDP/TCP header, as `ping -s`."""
    ttl: int = 64
    df: bool = False
    watch: str | None = None
    timeout: float = 5.0


def lab_map(lab: Any) -> LabMap:
    """The lab's map from its journal; link names from its topology file when it still loads."""
    names: dict[int, str] = {}
    path = lab.record.data.get("topology")
    if path:
        with contextlib.suppress(Exception):
            from orchestrate.topology import load_topology

            topology = load_topology(path)
            names = {i: str(link.name) if link.name else
                     " -- ".join(f"{e.node}:{e.ifname}" for e in link.endpoints)
                     for i, link in enumerate(topology.links)}
    return LabMap.from_record(lab.name, lab.record.data["nodes"], names)


def open_lab(name: str | None) -> Any:
    from orchestrate.lab import Lab, LabError, resolve_lab_name

    try:
        return Lab.open(resolve_lab_name(name))
    except LabError as exc:
        raise TraceError(str(exc), 2) from None


def check_running(lab: Any) -> None:
    down = [f"{s.name} is {s.state}" for s in lab.status() if s.state != "running"]
    if down:
        raise TraceError(f"lab {lab.name} is not running: {', '.join(down)} "
                         f"(`vrlab status {lab.name}`)")


def resolve_endpoints(labmap: LabMap, request: TraceRequest) -> Flow:
    """The probe's flow from --from/--to/--family/--proto; unknown names are errors."""
    if request.src is None or request.dst is None:
        raise TraceError("--from and --to are both needed (or --watch FILTER)", 2)
    if request.src not in labmap.roles:
        raise TraceError(f"lab {labmap.name} has no node {request.src!r} "
                         f"(nodes: {', '.join(labmap.roles)})", 2)
    if labmap.roles[request.src] != "host":
        raise TraceError(f"--from {request.src}: the probe is sent from a host node; "
                         f"{request.src} is a {labmap.roles[request.src]} (hosts: "
                         f"{', '.join(n for n, r in labmap.roles.items() if r == 'host')})", 2)
    family = request.family
    try:
        dst_ip = ipaddress.ip_address(request.dst)
    except ValueError:
        if request.dst not in labmap.roles:
            raise TraceError(f"--to {request.dst!r}: not an address and lab {labmap.name} "
                             f"has no such node (nodes: {', '.join(labmap.roles)})", 2) from None
        for fam in ([family] if family else [4, 6]):
            addr = labmap.address_of(request.dst, fam)
            if addr is not None:
                dst_ip, family = ipaddress.ip_address(addr), fam
                break
        else:
            raise TraceError(f"--to {request.dst}: it has no IPv{family or 4} address",
                             2) from None
    if family is not None and dst_ip.version != family:
        raise TraceError(f"--to {request.dst} is IPv{dst_ip.version} but --family {family}",
                         2)
    family = dst_ip.version
    src = labmap.address_of(request.src, family)
    if src is None:
        raise TraceError(f"--from {request.src} has no IPv{family} address", 2)
    ident = random.randint(0x4000, 0xEFFF)
    return Flow(family, request.proto, src, str(dst_ip), ident,
                None if request.proto == "icmp" else DEFAULT_DPORT[request.proto])


def capture_points(labmap: LabMap, udp_on_host: bool = True) -> list[tuple[str, str, int]]:
    """(node, ifname, link) to capture one by one: every LAN port (tcpdump on its tap), and,
    unless the point-to-point links are captured together on the host's loopback
    (`udp_on_host`), one end of each point-to-point link."""
    points = []
    for link, ports in sorted(labmap.links().items()):
        if any(p.kind == "lan" for p in ports):
            points += [(p.node, p.ifname, link) for p in ports]
        elif not udp_on_host:
            points.append((ports[0].node, ports[0].ifname, link))
    return points


def udp_ports(labmap: LabMap) -> dict[int, tuple[str, str, int]]:
    """Source port -> (node, ifname, link) of every point-to-point link end."""
    return {p.local_port: (p.node, p.ifname, p.link) for p in labmap.ports
            if p.kind == "udp" and p.local_port and p.link >= 0}


def capture_udp_links(lab: Any, ports: list[int], path: Path
                      ) -> contextlib.AbstractContextManager[Path]:
    from orchestrate.capture import capture_udp_links as on_loopback

    return on_loopback(lab, ports, path)


def _routers(labmap: LabMap) -> list[str]:
    return [n for n, role in labmap.roles.items() if role == "router"]


def _parallel(fn: Callable[[str], Any], nodes: list[str]) -> dict[str, Any]:
    if not nodes:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        return dict(zip(nodes, pool.map(fn, nodes), strict=True))


def start_router_traces(lab: Any, routers: list[str], addresses: list[str]) -> dict[str, int]:
    def start(router: str) -> int:
        cmd = (f"routerctl trace --start --filter {','.join(addresses)} "
               f"-n {ROUTER_TRACE_COUNT}")
        try:
            result = lab.node(router).exec(cmd, timeout=30)
        except Exception as exc:
            raise TraceError(f"{router}: cannot start its trace ({exc})") from None
        if result.exit_status != 0:
            raise TraceError(f"{router}: `{cmd}` failed: "
                             f"{(result.stderr or result.stdout).strip()}")
        return int(json.loads(result.stdout)["session"])

    return _parallel(start, routers)


def collect_router_traces(lab: Any, sessions: dict[str, int]) -> tuple[list[RouterRecord],
                                                                       list[str]]:
    problems: list[str] = []

    def collect(router: str) -> list[RouterRecord]:
        cmd = f"routerctl trace --collect {sessions[router]} --json"
        try:
            result = lab.node(router).exec(cmd, timeout=30)
        except Exception as exc:
            problems.append(f"{router}: trace records lost ({exc})")
            return []
        if result.exit_status != 0:
            problems.append(f"{router}: `{cmd}` failed: {result.stderr.strip()}")
            return []
        return [RouterRecord.from_json(router, json.loads(line))
                for line in result.stdout.splitlines() if line.strip()]

    found = _parallel(collect, list(sessions))
    return [r for records in found.values() for r in records], problems


UDP_LINKS = ("*", "udp", -1)
"""The reader key of the loopback capture of every point-to-point link."""


def _read_wires(readers: dict[tuple[str, str, int], PcapReader], into: list[WireEvent],
                ports: dict[int, tuple[str, str, int]] | None = None) -> int:
    from orchestrate.capture import udp_payload

    new = 0
    for key, reader in readers.items():
        for record in reader.read():
            if key == UDP_LINKS:
                found = udp_payload(record.frame)
                if found is None or ports is None or found[0] not in ports:
                    continue
                node, ifname, link = ports[found[0]]
                frame = found[1]
            else:
                node, ifname, link = key
                frame = record.frame
            into.append(WireEvent(record.time, link, f"{node}:{ifname}", decode(frame), frame))
            new += 1
    return new


def run_trace(request: TraceRequest, log: Callable[[str], None] = lambda _: None
              ) -> tuple[Journey, dict[str, Any]]:
    """Trace one packet on a running lab; returns the journey and the probe's own report."""
    if request.watch:
        parse_watch(request.watch)  # bad input is refused before anything starts
    lab = open_lab(request.lab)
    try:
        return trace_lab(lab, request, log)
    finally:
        lab.close()


def trace_lab(lab: Any, request: TraceRequest, log: Callable[[str], None] = lambda _: None
              ) -> tuple[Journey, dict[str, Any]]:
    """`run_trace` on an open lab (`Lab`, or a stand-in with the same few methods)."""
    watch: WatchFilter | None = parse_watch(request.watch) if request.watch else None
    labmap = lab_map(lab)
    check_running(lab)
    flow = None if watch else resolve_endpoints(labmap, request)
    addresses = watch.addresses() if watch else [flow.src, flow.dst]  # type: ignore[union-attr]
    routers = _routers(labmap)
    log(f"arming {len(routers)} router(s): {', '.join(routers) or 'none'}")
    sessions = start_router_traces(lab, routers, addresses)
    try:
        flow, wires, report = _observe(lab, labmap, request, flow, watch, log)
    except BaseException:
        collect_router_traces(lab, sessions)  # end the routers' sessions, records unread
        raise
    records, problems = collect_router_traces(lab, sessions)
    journey = assemble(labmap, flow, wires, records)
    report["problems"] = problems
    return journey, report


def _observe(lab: Any, labmap: LabMap, request: TraceRequest, flow: Flow | None,
             watch: WatchFilter | None, log: Callable[[str], None]
             ) -> tuple[Flow, list[WireEvent], dict[str, Any]]:
    """Capture every link while the probe goes (or until the watched packet's journey is
    over); the frames captured, the flow followed and the probe's report."""
    wires: list[WireEvent] = []
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vrlab-trace-") as tmp:
        readers: dict[tuple[str, str, int], PcapReader] = {}
        ports = udp_ports(labmap)
        with contextlib.ExitStack() as captures:
            on_host = bool(ports)
            if ports:
                path = Path(tmp) / "udp-links.pcap"
                try:
                    captures.enter_context(capture_udp_links(lab, sorted(ports), path))
                    readers[UDP_LINKS] = PcapReader(path)
                except CaptureError as exc:
                    on_host = False
                    log(f"cannot capture the point-to-point links on the host ({exc}); "
                        "capturing them in QEMU, whose timestamps come from each VM's clock")
            for node, ifname, link in capture_points(labmap, on_host):
                path = Path(tmp) / f"{node}-{ifname}.pcap"
                captures.enter_context(lab.capture(node, ifname, path))
                readers[(node, ifname, link)] = PcapReader(path)
            log(f"capturing {len(labmap.links())} link(s)")
            if watch is None:
                assert flow is not None
                report = _send_probe(lab, request, flow, log)
                time.sleep(SETTLE)
            else:
                flow = _watch(watch, readers, wires, request.timeout, log, ports)
        _read_wires(readers, wires, ports)  # the rest, written as the captures stopped
    assert flow is not None
    return flow, wires, report


def _send_probe(lab: Any, request: TraceRequest, flow: Flow, log: Callable[[str], None]
                ) -> dict[str, Any]:
    probe = ProbeSpec(flow.family, flow.proto, flow.dst, int(flow.ident or 0), request.size,
                      request.ttl, request.df, request.timeout, flow.dport or 0)
    log(f"probe from {request.src}: {flow.proto} IPv{flow.family} {flow.src} -> {flow.dst} "
        f"ttl {request.ttl} size {request.size}{' DF' if request.df else ''}")
    result = lab.node(request.src).exec(probe.command(), timeout=request.timeout + 30)
    try:
        report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise TraceError(f"{request.src}: the probe program failed: "
                         f"{(result.stderr or result.stdout).strip()}") from None
    if "error" in report:
        raise TraceError(f"{request.src} could not send the probe: {report['error']}")
    return report


def _watch(watch: WatchFilter, readers: dict[tuple[str, str, int], PcapReader],
           wires: list[WireEvent], timeout: float, log: Callable[[str], None],
           ports: dict[int, tuple[str, str, int]]) -> Flow:
    log(f"watching for {watch.text!r} (up to {timeout:g} s)")
    deadline = time.monotonic() + timeout
    flow: Flow | None = None
    while flow is None:
        if time.monotonic() > deadline:
            raise TraceError(f"no packet matching {watch.text!r} was seen on any link within "
                             f"{timeout:g} s")
        _read_wires(readers, wires, ports)
        first = next((w for w in sorted(wires, key=lambda w: w.time)
                      if watch.matches(w.frame)), None)
        if first is not None:
            flow = watch.flow_of(first.frame)
            log(f"following {first.frame.summary()} (seen at {first.point})")
        else:
            time.sleep(0.1)
    quiet_since = time.monotonic()
    hard_stop = time.monotonic() + timeout
    while time.monotonic() - quiet_since < QUIET and time.monotonic() < hard_stop:
        before = len(wires)
        _read_wires(readers, wires, ports)
        if any(flow.relation(w.frame) for w in wires[before:]):
            quiet_since = time.monotonic()
        time.sleep(0.1)
    return flow
