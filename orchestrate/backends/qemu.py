"""The embedded QEMU backend: one `qemu-system-x86_64` process per node, no daemon.

Each process is journaled before it is spawned with what identifies it even if vrlab dies
before learning its pid: its pidfile (`-pidfile`) and a marker that appears in its command
line (its QMP socket path, unique per lab and node). Once spawned, the pid and the kernel's
start time of that pid are journaled, so `stop` never signals a recycled pid.

Stopping: QMP `quit` (QEMU exits cleanly and removes its sockets), then SIGKILL after a grace
period. QEMU runs in its own session so a Ctrl-C or kill of `vrlab up` does not take it along
half-way; `vrlab down` is what stops it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from orchestrate import links
from orchestrate.backends import BackendError, NodeSpec
from orchestrate.record import Record


def qemu_binary() -> str:
    """`VRLAB_QEMU` or qemu-system-x86_64 (tests substitute a stand-in)."""
    return os.environ.get("VRLAB_QEMU", "qemu-system-x86_64")

QUIT_GRACE = 3.0


# -- processes --------------------------------------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses; fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])  # field 22 overall


def process_is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def pids_with_marker(marker: str) -> list[int]:
    """Processes whose command line contains `marker` as one argument or part of one."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker.encode() in arg for arg in argv):
            found.append(int(entry.name))
    return found


def recorded_pids(obj: dict[str, Any]) -> list[int]:
    """The live pids a journaled process object refers to (verified, never guessed)."""
    pids: set[int] = set()
    pid = obj.get("pid")
    if pid is not None and process_start_time(int(pid)) == obj.get("start_time"):
        pids.add(int(pid))
    pidfile = obj.get("pidfile")
    marker = obj.get("marker")
    if pidfile and marker:
        with contextlib.suppress(OSError, ValueError):
            candidate = int(Path(pidfile).read_text().strip())
            if candidate in pids_with_marker(marker):
                pids.add(candidate)
    if marker:
        pids.update(pids_with_marker(marker))
    pids.discard(os.getpid())
    return sorted(p for p in pids if not process_is_zombie(p))


def kill_and_wait(pids: list[int], timeout: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            if process_start_time(pid) is None or process_is_zombie(pid):
                break
            time.sleep(0.05)


# -- QMP --------------------------------------------------------------------------------------


def qmp_command(socket_path: Path, command: str, timeout: float = 5.0, **arguments: Any) -> Any:
    """One QMP command over the node's QMP unix socket; returns its `return` value."""
    from qemu.qmp.legacy import QEMUMonitorProtocol

    monitor = QEMUMonitorProtocol(str(socket_path))
    try:
        monitor.connect(negotiate=True)
        monitor.settimeout(timeout)
        reply = monitor.cmd_raw(command, arguments or None)
    except Exception as exc:
        raise BackendError(f"QMP {command} on {socket_path}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            monitor.close()
    if not isinstance(reply, dict):
        raise BackendError(f"QMP {command}: no reply")
    if "error" in reply:
        raise BackendError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")
    return reply.get("return")


# -- command line -----------------------------------------------------------------------------


def nic_netdev(nic: links.NicSpec, netdev_id: str, fd: int | None = None, hub: int = 0) -> str:
    if nic.kind == "udp":
        return (f"socket,id={netdev_id},udp=127.0.0.1:{nic.remote_port},"
                f"localaddr=127.0.0.1:{nic.local_port}")
    if nic.kind == "lan":
        if fd is None:
            raise BackendError(f"{nic.node}:{nic.ifname}: LAN NIC needs a tap fd")
        return f"tap,id={netdev_id},fd={fd},vhost=off"
    # An interface on no link: a QEMU hub with one port, which drops everything.
    return f"hubport,id={netdev_id},hubid={1000 + hub}"


def netdev_id(index: int) -> str:
    return f"data{index}"


def build_argv(spec: NodeSpec, tap_fds: dict[str, int] | None = None) -> list[str]:
    """The QEMU command line for one node (`tap_fds`: ifname -> fd for LAN NICs)."""
    from orchestrate.accel import qemu_accel_args

    tap_fds = tap_fds or {}
    argv = [
        qemu_binary(),
        "-name", f"guest={spec.lab}.{spec.name},debug-threads=on",
        "-nodefaults", "-no-user-config", "-display", "none",
        "-machine", "q35", *qemu_accel_args(spec.accel),
        "-m", str(spec.memory), "-smp", str(spec.cpus),
        "-kernel", str(spec.kernel),
    ]
    if spec.initrd:
        argv += ["-initrd", str(spec.initrd)]
    argv += [
        "-append", spec.cmdline,
        # Root overlay first, config disk second (read-only): the image's init relies on it.
        "-drive", f"file={spec.overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
        "-drive", f"file={spec.config_disk},if=virtio,format=raw,readonly=on",
        "-netdev", f"user,id=mgmt,{spec.mgmt_netdev}",
        "-device", f"virtio-net-pci,netdev=mgmt,mac={spec.mgmt_mac}",
    ]
    for index, nic in enumerate(spec.nics):
        ident = netdev_id(index)
        argv += [
            "-netdev", nic_netdev(nic, ident, tap_fds.get(nic.ifname), index),
            "-device", f"virtio-net-pci,netdev={ident},mac={nic.mac},host_mtu={nic.mtu}",
        ]
    argv += [
        "-chardev", (f"socket,id=serial0,path={spec.serial_socket},server=on,wait=off,"
                     f"logfile={spec.serial_log},logappend=on"),
        "-serial", "chardev:serial0",
        "-qmp", f"unix:{spec.qmp_socket},server=on,wait=off",
        "-pidfile", str(spec.pidfile),
        "-object", "rng-random,id=rng0,filename=/dev/urandom",
        "-device", "virtio-rng-pci,rng=rng0",
    ]
    return argv


# -- the backend ------------------------------------------------------------------------------


class QemuBackend:
    name = "qemu"

    def create(self, record: Record, spec: NodeSpec) -> None:
        # Nothing to define ahead of time: the command line is written for inspection.
        (spec.node_dir / "qemu.argv").write_text("\n".join(build_argv(spec, {
            nic.ifname: -1 for nic in spec.nics if nic.kind == "lan"})) + "\n")

    def start(self, record: Record, spec: NodeSpec) -> None:
        tap_fds: dict[str, int] = {}
        try:
            for nic in spec.nics:
                if nic.kind == "lan":
                    assert nic.netns and nic.tap and nic.bridge
                    record.intend("tap", f"{nic.netns}/{nic.tap}", netns=nic.netns,
                                  name=nic.tap, node=spec.name)
                    tap_fds[nic.ifname] = links.open_tap(nic.netns, nic.tap, nic.bridge, nic.mtu)
                    record.created("tap", f"{nic.netns}/{nic.tap}")
            argv = build_argv(spec, tap_fds)
            for kind, path in (("socket", spec.serial_socket), ("socket", spec.qmp_socket)):
                record.intend(kind, str(path), path=str(path))
            record.intend("process", spec.name, backend="qemu", marker=str(spec.qmp_socket),
                          pidfile=str(spec.pidfile), qmp=str(spec.qmp_socket),
                          argv=argv)
            with open(spec.qemu_log, "ab") as log:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    pass_fds=tuple(tap_fds.values()), start_new_session=True,
                )
            record.created("process", spec.name, pid=proc.pid,
                           start_time=process_start_time(proc.pid))
            # Do not keep a Popen around: the VM outlives this process; reap it if it dies
            # while we are still here (a zombie would look alive to kill -0).
            proc.returncode = 0
        finally:
            for fd in tap_fds.values():
                os.close(fd)

    def stop(self, record: Record, node: str) -> None:
        obj = record.find("process", node)
        if obj is None or obj["state"] == "removed":
            return
        pids = recorded_pids(obj)
        if pids and obj.get("qmp") and Path(obj["qmp"]).exists():
            with contextlib.suppress(BackendError):
                qmp_command(Path(obj["qmp"]), "quit", timeout=2.0)
            deadline = time.monotonic() + QUIT_GRACE
            while time.monotonic() < deadline and recorded_pids(obj):
                for pid in pids:
                    with contextlib.suppress(ChildProcessError, OSError):
                        os.waitpid(pid, os.WNOHANG)
                time.sleep(0.05)
        remaining = recorded_pids(obj)
        if remaining:
            kill_and_wait(remaining)
        for pid in pids:  # reap it if it was our child (vrlab up and down in one process)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        if recorded_pids(obj):
            raise BackendError(f"{node}: QEMU process {recorded_pids(obj)} survived SIGKILL")
        record.removed("process", node)

    def status(self, record: Record, node: str) -> str:
        obj = record.find("process", node)
        if obj is None or obj["state"] == "removed":
            return "absent"
        return "running" if recorded_pids(obj) else "stopped"

    def netdev_name(self, spec: NodeSpec, index: int) -> str:
        """The QEMU netdev id of data NIC `index` (-1: the management NIC)."""
        return "mgmt" if index < 0 else netdev_id(index)

    def qmp(self, record: Record, node: str, command: str, **arguments: Any) -> Any:
        obj = record.find("process", node)
        if obj is None or not obj.get("qmp"):
            raise BackendError(f"{node}: no QEMU process in the lab record")
        return qmp_command(Path(obj["qmp"]), command, **arguments)


def make_backend(**options: Any) -> QemuBackend:
    return QemuBackend()
