"""Packet capture on any lab link, written as a pcap file on the host.

- A NIC on a UDP link (or the management NIC) is captured inside QEMU: a `filter-dump`
  object is attached to the NIC's netdev over QMP (both directions) and deleted afterwards.
  QEMU writes the pcap itself; the VM sees nothing.
- A NIC on a LAN segment is captured with tcpdump on its tap in the lab's namespace (the
  bridge port), which sees exactly what the NIC sends and receives.

Every capture is journaled (kind `capture`) before it starts, so `vrlab down` stops a capture
that a killed `vrlab capture` left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrate.backends import BackendError, NodeSpec
from orchestrate.links import MGMT_IFNAME
from orchestrate.record import Record

if TYPE_CHECKING:
    from orchestrate.lab import Lab

PCAP_HEADER = 24
PCAP_RECORD = struct.Struct("<IIII")


class CaptureError(Exception):
    """The capture could not start."""


def count_pcap_packets(path: Path) -> int:
    """How many complete packet records the pcap file holds so far."""
    try:
        data = path.read_bytes()
    except OSError:
        return 0
    if len(data) < PCAP_HEADER:
        return 0
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    record = struct.Struct(endian + "IIII")
    offset, count = PCAP_HEADER, 0
    while offset + record.size <= len(data):
        _, _, caplen, _ = record.unpack_from(data, offset)
        if offset + record.size + caplen > len(data):
            break
        offset += record.size + caplen
        count += 1
    return count


def _filter_id(ifname: str) -> str:
    return f"vrlab-cap-{ifname}"


def _nic_index(spec: NodeSpec, ifname: str) -> int:
    for index, nic in enumerate(spec.nics):
        if nic.ifname == ifname:
            return index
    if ifname == MGMT_IFNAME:
        return -1
    names = ", ".join([MGMT_IFNAME] + [nic.ifname for nic in spec.nics])
    raise CaptureError(f"{spec.name} has no interface {ifname!r} (interfaces: {names})")


@contextlib.contextmanager
def capture(lab: Lab, node: str, ifname: str, path: Path) -> Iterator[Path]:
    """Capture `node:ifname` into `path` for the duration of the `with` block."""
    spec = lab.spec(node)
    index = _nic_index(spec, ifname)
    path = path.resolve()
    path.unlink(missing_ok=True)
    key = f"{node}:{ifname}"
    record = lab.record
    existing = record.find("capture", key)
    if existing is not None and existing["state"] != "removed":
        raise CaptureError(f"{key} is already being captured")
    nic = spec.nics[index] if index >= 0 else None
    backend: Any = lab.backend()
    # libvirt: every NIC is captured by QEMU on the node's host, into a volume there that is
    # copied here when the capture stops (backends.libvirt.capture_file / fetch_capture).
    on_host = hasattr(backend, "capture_file")
    if nic is not None and nic.kind == "lan" and not on_host:
        assert nic.netns and nic.tap
        with _tcpdump(record, key, node, path, nic.tap, netns=nic.netns):
            yield path
        return
    netdev = backend_netdev(lab, spec, index)
    record.intend("capture", key, method="filter-dump", node=node, path=str(path),
                  filter=_filter_id(ifname))
    try:
        target = backend.capture_file(record, spec, ifname) if on_host else str(path)
        backend.qmp(record, node, "object-add", **{
            "qom-type": "filter-dump", "id": _filter_id(ifname), "netdev": netdev,
            "file": target, "queue": "all"})
    except BackendError as exc:
        record.removed("capture", key)
        raise CaptureError(f"{key}: {exc}") from exc
    record.created("capture", key)
    try:
        yield path
    finally:
        with contextlib.suppress(BackendError):
            backend.qmp(record, node, "object-del", id=_filter_id(ifname))
        if on_host:
            with contextlib.suppress(BackendError):
                backend.fetch_capture(record, spec, ifname, path)
        record.removed("capture", key)


@contextlib.contextmanager
def _tcpdump(record: Record, key: str, node: str, path: Path, iface: str, *,
             netns: str | None = None, bpf: str | None = None) -> Iterator[Path]:
    """tcpdump on `iface` (in `netns`) into `path`, journaled, for the `with` block."""
    record.intend("capture", key, method="tcpdump", node=node, path=str(path), netns=netns,
                  tap=iface)
    argv = ["tcpdump", "--immediate-mode", "-i", iface, "-U", "-s", "0", "-w", str(path)]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    if bpf is not None:
        argv.append(bpf)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    from orchestrate.backends.qemu import process_start_time

    record.created("capture", key, pid=proc.pid, start_time=process_start_time(proc.pid))
    # tcpdump writes the pcap header once it listens: wait for it, bounded.
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not (path.exists() and path.stat().st_size):
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            record.removed("capture", key)
            where = f"{netns}/{iface}" if netns else iface
            raise CaptureError(f"tcpdump on {where} failed: {err.strip()}")
        time.sleep(0.05)
    try:
        yield path
    finally:
        # Give tcpdump a moment to write what the kernel already queued, then stop it.
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        record.removed("capture", key)


@contextlib.contextmanager
def capture_udp_links(lab: Lab, ports: list[int], path: Path) -> Iterator[Path]:
    """Every point-to-point link at once, on the host's loopback: the UDP datagrams QEMU
    sends between the two ends of each link (each carries one Ethernet frame) from the
    `ports` given (the links' local ports). One tcpdump, the host's clock for every frame:
    timestamps comparable across links and VMs, unlike `filter-dump`'s, which come from each
    VM's own virtual clock. Needs the right to capture on `lo` (root or CAP_NET_RAW)."""
    if not ports:
        raise CaptureError("no point-to-point link to capture")
    path = path.resolve()
    path.unlink(missing_ok=True)
    key = "udp-links"
    existing = lab.record.find("capture", key)
    if existing is not None and existing["state"] != "removed":
        raise CaptureError("the point-to-point links are already being captured")
    bpf = "udp and (" + " or ".join(f"src port {p}" for p in sorted(ports)) + ")"
    with _tcpdump(lab.record, key, "*", path, "lo", bpf=bpf):
        yield path


def udp_payload(frame: bytes) -> tuple[int, bytes] | None:
    """(UDP source port, payload) of an IPv4 UDP datagram captured on loopback (an Ethernet
    header with zero MACs), or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    udp = 14 + ihl
    if len(frame) < udp + 8:
        return None
    return int.from_bytes(frame[udp:udp + 2], "big"), frame[udp + 8:]


def backend_netdev(lab: Lab, spec: NodeSpec, index: int) -> str:
    backend: Any = lab.backend()
    name: str = backend.netdev_name(spec, index)
    return name


def stop_recorded_capture(record: Record, obj: dict[str, Any]) -> None:
    """Stop a capture left running (by a killed `vrlab capture`), from the journal alone."""
    if obj.get("method") == "tcpdump":
        from orchestrate.backends.qemu import process_start_time

        pid = obj.get("pid")
        if pid and process_start_time(int(pid)) == obj.get("start_time"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
    elif obj.get("method") == "filter-dump":
        from orchestrate.backends import get_backend

        backend = get_backend(str(record.data.get("backend", "qemu")),
                              **record.data.get("backend_options", {}))
        with contextlib.suppress(BackendError):
            backend.qmp(record, obj["node"], "object-del", id=obj["filter"])
    record.removed("capture", obj["key"])
