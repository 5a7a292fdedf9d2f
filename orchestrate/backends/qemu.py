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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrate import links
from orchestrate.backends import BackendError, NodeSpec
from orchestrate.readiness import Marker, parse_markers, poll_until
from orchestrate.record import Record

if TYPE_CHECKING:
    import paramiko

    from orchestrate.images import ImageInfo
    from orchestrate.nodeconfig import NodeBootSpec


def qemu_binary() -> str:
    """`VRLAB_QEMU` or qemu-system-x86_64 (tests substitute a stand-in)."""
    return os.environ.get("VRLAB_QEMU", "qemu-system-x86_64")

QUIT_GRACE = 3.0
# mem-merge: QEMU marks guest RAM MADV_MERGEABLE, so KSM (orchestrate.ksm) can share the pages
# that VMs booted from one image or restored from one snapshot have alike.
MACHINE = "q35,mem-merge=on"


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


def reap_own_child(obj: dict[str, Any], pids: list[int]) -> None:
    """Reap the journaled QEMU if this process is its parent (`up` and `down` in one process:
    the pytest plugin, `vrlab test`), including one that had already exited.

    `recorded_pids` leaves zombies out (a zombie is not a running VM), so a QEMU that died
    before `down` was never waited for. The journaled pid is checked by its start time, which
    a zombie still has; waitpid on a pid that is not our child fails harmlessly.
    """
    candidates = set(pids)
    pid = obj.get("pid")
    if pid is not None and process_start_time(int(pid)) == obj.get("start_time"):
        candidates.add(int(pid))
    for candidate in candidates:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(candidate, os.WNOHANG)


# -- QMP --------------------------------------------------------------------------------------


def qmp_command(socket_path: Path, command: str, arguments: dict[str, object] | None = None,
                timeout: float = 5.0) -> object:
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


def build_argv(spec: NodeSpec, tap_fds: dict[str, int] | None = None,
               extra: Sequence[str] = ()) -> list[str]:
    """The QEMU command line for one node (`tap_fds`: ifname -> fd for LAN NICs), for a lab's
    node and a standalone boot alike; `extra` arguments go last."""
    from orchestrate import nodeconfig
    from orchestrate.accel import qemu_accel_args

    tap_fds = tap_fds or {}
    argv = [
        qemu_binary(),
        "-name", f"guest={spec.lab}.{spec.name},debug-threads=on",
        "-nodefaults", "-no-user-config", "-display", "none",
        "-machine", MACHINE, *qemu_accel_args(spec.accel, spec.role),
        "-m", str(spec.memory), "-smp", str(spec.cpus),
        "-kernel", str(spec.kernel),
    ]
    if spec.initrd:
        argv += ["-initrd", str(spec.initrd)]
    argv += [
        "-append", spec.cmdline,
        # Root overlay first, config disk second (read-only): the image's init relies on it.
        "-drive", f"file={spec.overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
        "-drive", nodeconfig.config_drive_arg(spec.config_disk),
        "-netdev", f"user,id={nodeconfig.MGMT_NETDEV_ID},{spec.mgmt_netdev}",
        "-device", nodeconfig.mgmt_device_arg(spec.device_mac(-1)),
    ]
    for index, nic in enumerate(spec.nics):
        ident = netdev_id(index)
        argv += [
            "-netdev", nic_netdev(nic, ident, tap_fds.get(nic.ifname), index),
            "-device", (f"virtio-net-pci,netdev={ident},mac={spec.device_mac(index)},"
                        f"host_mtu={nic.mtu}"),
        ]
    argv += [
        "-chardev", (f"socket,id=serial0,path={spec.serial_socket},server=on,wait=off,"
                     f"logfile={spec.serial_log},logappend=on"),
        "-serial", "chardev:serial0",
        "-qmp", f"unix:{spec.qmp_socket},server=on,wait=off",
        "-pidfile", str(spec.pidfile),
        "-object", "rng-random,id=rng0,filename=/dev/urandom",
        "-device", "virtio-rng-pci,rng=rng0",
        *extra,
    ]
    if spec.incoming is not None:
        from orchestrate.snapshot import restore_qemu_args

        argv += restore_qemu_args(spec.incoming, spec.memory)
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
        reap_own_child(obj, pids)
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

    def qmp(self, record: Record, node: str, command: str, **arguments: object) -> object:
        obj = record.find("process", node)
        if obj is None or not obj.get("qmp"):
            raise BackendError(f"{node}: no QEMU process in the lab record")
        return qmp_command(Path(obj["qmp"]), command, arguments)


def make_backend(**options: Any) -> QemuBackend:
    return QemuBackend()


# -- a node without a lab ---------------------------------------------------------------------


class StandaloneError(BackendError):
    """A standalone VM exited or did not get where it was awaited."""


@dataclass
class StandaloneVM:
    """One node of the image booted without a lab (see `boot_standalone`)."""

    process: subprocess.Popen[bytes]
    spec: NodeSpec
    client_key: Path
    known_hosts: Path
    started: float  # time.monotonic() just before QEMU was started

    @property
    def ssh_port(self) -> int:
        return self.spec.ssh_port

    @property
    def serial_log(self) -> Path:
        return self.spec.serial_log

    def serial_text(self) -> str:
        try:
            return self.serial_log.read_text(errors="replace")
        except OSError:
            return ""

    def markers(self) -> list[Marker]:
        return parse_markers(self.serial_text())

    def alive(self, what: str = "the VM") -> None:
        if self.process.poll() is not None:
            raise StandaloneError(f"QEMU exited ({self.process.returncode}) waiting for {what}: "
                                  f"{self.serial_text()[-600:]}")

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str,
                 interval: float = 0.02) -> float:
        """Poll until `predicate()`; return seconds since QEMU started. Raises StandaloneError
        on timeout or if QEMU exits."""
        if not poll_until(predicate, interval=interval, alive=lambda: self.alive(what),
                          deadline=time.monotonic() + timeout):
            raise StandaloneError(f"no {what} after {timeout:.0f} s: "
                                  f"{self.serial_text()[-600:]}")
        return time.monotonic() - self.started

    def wait_marker(self, stage: str, timeout: float = 120.0) -> float:
        return self.wait_for(lambda: any(m.stage.startswith(stage) for m in self.markers()),
                             timeout, f"'vrlab: {stage}' on the serial console")

    def connect(self, timeout: float = 120.0) -> paramiko.SSHClient:
        """A paramiko client with the pinned host key, retried until sshd answers."""
        from orchestrate import ssh

        deadline = time.monotonic() + timeout
        while True:
            try:
                return ssh.connect(self.ssh_port, self.client_key, self.known_hosts,
                                   timeout=max(5.0, min(30.0, deadline - time.monotonic())))
            except ssh.SshError as exc:
                if "does not match" in str(exc):
                    raise
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise StandaloneError(
                        f"ssh to 127.0.0.1:{self.ssh_port} failed: {exc}") from exc
                time.sleep(0.2)

    def rss_bytes(self) -> int:
        """QEMU's resident memory (VmRSS), 0 once it has exited."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def qmp(self, command: str, **arguments: object) -> object:
        return qmp_command(self.spec.qmp_socket, command, arguments)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def free_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def standalone_spec(image: ImageInfo, boot: NodeBootSpec, workdir: Path, run_dir: Path, *,
                    ssh_port: int, data_nics: Sequence[tuple[str, int]] = (),
                    memory_mib: int = 256, accel: str = "tcg",
                    extra_cmdline: str = "") -> NodeSpec:
    """The NodeSpec of a node with no lab around it: its files in `workdir`, its sockets in
    `run_dir` (short), `data_nics` (mac, mtu) pairs on empty QEMU hubs."""
    from orchestrate import nodeconfig

    nics = [links.NicSpec(node=boot.hostname, ifname=f"eth{index + 1}", mac=mac, mtu=mtu,
                          link=-1, kind="none") for index, (mac, mtu) in enumerate(data_nics)]
    return NodeSpec(
        lab="standalone", name=boot.hostname, role=boot.role, memory=memory_mib, cpus=1,
        accel=accel, kernel=image.kernel, initrd=image.initrd,
        cmdline=image.cmdline + (f" {extra_cmdline}" if extra_cmdline else ""),
        overlay=workdir / "root.qcow2", config_disk=workdir / "config.img",
        mgmt_mac=boot.mgmt_mac, ssh_port=ssh_port,
        mgmt_netdev=nodeconfig.management_netdev_options(ssh_port),
        node_dir=workdir, run_dir=run_dir, nics=nics)


@contextlib.contextmanager
def boot_standalone(image: ImageInfo, boot: NodeBootSpec, workdir: Path, *,
                    data_nics: Sequence[tuple[str, int]] = (), memory_mib: int = 256,
                    accel: str = "tcg") -> Iterator[StandaloneVM]:
    """Boot `image` with the config disk of `boot` (whose keys must match
    `workdir/client_ed25519` and `workdir/host_ed25519`; see `standalone_keys`), through the
    same command line as a lab's node (`build_argv`) plus -no-reboot (a guest reboot exits).
    `data_nics` are (mac, mtu) pairs of extra NICs on empty hubs. The serial console is the
    socket `vm.spec.serial_socket` and the log `vm.serial_log`. The VM is killed on exit."""
    import shutil
    import tempfile

    from orchestrate import nodeconfig, ssh
    from orchestrate.images import image_overlay

    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="vrlab-"))  # sun_path is short: keep sockets here
    spec = standalone_spec(image, boot, workdir, run_dir, ssh_port=free_tcp_port(),
                           data_nics=data_nics, memory_mib=memory_mib, accel=accel)
    image_overlay(image, spec.overlay)
    nodeconfig.write_config_disk(boot, spec.config_disk)
    known_hosts = workdir / "known_hosts"
    ssh.write_known_hosts(known_hosts, {spec.ssh_port: boot.host_key_public})
    spec.serial_log.unlink(missing_ok=True)
    argv = build_argv(spec, extra=("-no-reboot",))
    started = time.monotonic()
    with open(spec.qemu_log, "wb") as qemu_log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qemu_log,
                                   stderr=subprocess.STDOUT)
    vm = StandaloneVM(process, spec, workdir / "client_ed25519", known_hosts, started)
    try:
        yield vm
    finally:
        vm.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def standalone_keys(workdir: Path) -> tuple[str, str, str]:
    """(client public line, host private key text, host public line) in `workdir`."""
    from orchestrate import ssh

    client = ssh.generate_key(workdir / "client_ed25519", "vrlab-standalone")
    host = ssh.generate_key(workdir / "host_ed25519", "node@vrlab-standalone")
    return client.public_line(), host.private.read_text(), host.public_line()
