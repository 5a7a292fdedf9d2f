"""A running lab: `Lab.up` builds it from a topology, `Lab.open` finds it, `down` removes it.

The lab directory `$VRLAB_HOME/labs/<name>/` holds `record.json` (see orchestrate.record),
the lab's SSH material (`ssh/`, `known_hosts`, `ssh_config`) and one directory per node
(overlay, config disk, serial.log, qemu.log). Unix sockets live in `<lab>/run/`, or in
`/tmp/vrlab-<hash>/` when that path would be too long for a socket address.

`up` journals every object before creating it and, if anything fails (or is interrupted),
tears down whatever the journal lists before re-raising. `down` reads only the journal, so it
works after `kill -9` of a VM, after `kill -9` of `vrlab up` itself, and twice in a row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrate import links, ports, ssh
from orchestrate.backends import Backend, BackendError, NodeSpec, get_backend
from orchestrate.hosts import Host, inventory_to_json
from orchestrate.images import ImageError, ImageInfo, ensure_image, image_overlay
from orchestrate.memory import hold_ksm, process_memory_kib, release_ksm
from orchestrate.names import BadName, is_under, name_problem, path_under
from orchestrate.node import NodeHandle, link_local_from_mac
from orchestrate.readiness import wait_ready
from orchestrate.record import (
    KINDS_TEARDOWN_ORDER,
    RECORD_NAME,
    Record,
    RecordError,
    lab_dir,
    labs_dir,
)
from orchestrate.snapshot import (
    BOOT_MODES,
    Snapshot,
    default_boot,
    node_snapshots,
    restore_macs,
    restore_spec,
    snapshot_overlay,
)

if TYPE_CHECKING:
    from orchestrate.topology import Node, Topology

DEFAULT_TIMEOUT = 300.0
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for the NUL and a suffix

FILE_KINDS = ("socket", "overlay", "config_disk", "file", "directory")
"""Journal kinds that are paths: teardown removes them only inside the lab's directories."""




class LabError(Exception):
    """A lab could not be brought up, found, or taken down."""


class LabInputError(LabError):
    """The lab was refused before anything started: bad input, exit status 2."""


class LabNameError(LabInputError):
    """A lab name breaks the name rule (orchestrate.names)."""


MEMINFO = Path("/proc/meminfo")


def memory_available_mib() -> int | None:
    """What the kernel estimates it can give new processes without swapping (MemAvailable)."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_lab_memory(topology: Topology, lab_name: str) -> None:
    """LabInputError when the nodes' memory adds up to more than the machine has available.

    QEMU maps a guest's memory lazily, so such a lab may boot and then, under load, push the
    host into swap or the OOM killer (which picks the largest QEMU): refuse it up front.
    """
    need = sum(int(node.memory) for node in topology.nodes.values())
    have = memory_available_mib()
    if have is not None and need > have:
        raise LabInputError(
            f"lab {lab_name} needs {need} MiB of guest memory ({len(topology.nodes)} nodes), "
            f"more than the {have} MiB this machine has available (MemAvailable, "
            f"{MEMINFO}); give the nodes less (`memory:` under defaults or a node), or use "
            f"--force to start it anyway")


@dataclass
class NodeStatus:
    name: str
    role: str
    state: str  # running / stopped / absent
    ssh_port: int
    mgmt: str
    addresses: list[str]
    serial_log: str
    interfaces: list[dict[str, Any]] = field(default_factory=list)
    host: str = "local"  # the libvirt host it runs on ("local": this machine)
    boot: str = "cold"  # or "snapshot" (restored from its kind's saved state)
    pss_mib: float | None = None  # the VM process's proportional set size (shared pages split)
    rss_mib: float | None = None


def run_dir_for(directory: Path) -> Path:
    """Where this lab's unix sockets go: `<lab>/run`, or a short /tmp path if that is too long."""
    candidate = directory / "run"
    if len(str(candidate)) + 24 <= SOCKET_PATH_MAX:
        return candidate
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:12]
    return Path("/tmp") / f"vrlab-{digest}"


def private_directory(path: Path) -> None:
    """Create `path` mode 0700, or accept it only if it is a real directory we own, 0700.

    The socket directory may be the shared-/tmp fallback, and its sockets lead to root
    consoles: a directory someone else made there first (or a symlink) must not be used.
    """
    try:
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # whatever the umask
    except FileExistsError:
        pass
    check_private(path)


def check_private(path: Path) -> None:
    """LabError unless `path` is a directory (not a symlink) we own, closed to others."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise LabError(f"{path} exists and is not a directory (a symlink?); remove it")
    if info.st_uid != os.geteuid():
        raise LabError(f"{path} belongs to uid {info.st_uid}, not to us (uid {os.geteuid()}); "
                       f"remove it")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise LabError(f"{path} is mode {stat.S_IMODE(info.st_mode):04o}, open to others "
                       f"(must be 0700); remove it")


class Lab:
    """A lab as its journal describes it."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self.name = record.lab
        self.dir = record.path.parent
        self._handles: dict[str, NodeHandle] = {}
        self._backend_impl: Backend | None = None

    # -- paths ---------------------------------------------------------------------------------

    @property
    def client_key(self) -> Path:
        return self.dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def backend_name(self) -> str:
        return str(self.record.data.get("backend", "qemu"))

    def backend(self) -> Backend:
        """The lab's backend (one per Lab: the libvirt one holds its hosts' connections)."""
        if self._backend_impl is None:
            self._backend_impl = get_backend(self.backend_name,
                                             **self.record.data.get("backend_options", {}))
        return self._backend_impl

    def nodes(self) -> list[str]:
        return list(self.record.data["nodes"])

    def spec(self, name: str) -> NodeSpec:
        try:
            data = self.record.data["nodes"][name]
        except KeyError:
            raise LabError(f"lab {self.name} has no node {name!r} "
                           f"(nodes: {', '.join(self.nodes())})") from None
        return NodeSpec.from_json(self.name, name, data)

    def node(self, name: str) -> NodeHandle:
        if name not in self._handles:
            self._handles[name] = NodeHandle(self, name)
        return self._handles[name]

    # -- hosts (libvirt backend with an inventory) ----------------------------------------------

    def host(self, node: str) -> Host | None:
        """The inventory host `node` runs on; None when it runs here (no inventory)."""
        name = self.record.data["nodes"].get(node, {}).get("host")
        inventory = self.record.data.get("backend_options", {}).get("hosts") or {}
        return Host.from_json(name, inventory[name]) if name in inventory else None

    def management_opener(self, node: str) -> ssh.Opener | None:
        """How to reach the node's SSH forward on its host's loopback (None: 127.0.0.1 here)."""
        host = self.host(node)
        if host is None:
            return None
        from orchestrate import multihost

        return lambda port, timeout: multihost.open_tcp(host, port, timeout)

    def serial_text(self, node: str) -> str:
        """The node's serial log so far (fetched from its host first, for libvirt)."""
        spec = self.spec(node)
        backend: Any = self.backend()
        if hasattr(backend, "sync_serial"):
            with contextlib.suppress(BackendError):
                backend.sync_serial(self.record, spec)
        try:
            return spec.serial_log.read_text(errors="replace")
        except OSError:
            return ""

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, name: str) -> Lab:
        directory = checked_lab_dir(name)
        try:
            record = Record.load(directory / RECORD_NAME)
        except RecordError as exc:
            raise LabError(f"no lab named {name!r} ({exc})") from exc
        if record.lab != name:
            raise LabError(f"{directory / RECORD_NAME} is the journal of lab {record.lab!r}, "
                           f"not {name!r}")
        return cls(record)

    @staticmethod
    def names() -> list[str]:
        root = labs_dir()
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir()
                      if name_problem(p.name) is None and (p / RECORD_NAME).is_file())

    # -- up ------------------------------------------------------------------------------------

    @classmethod
    def up(cls, topology: Topology, backend: str = "qemu", accel: str = "auto",
           timeout: float = DEFAULT_TIMEOUT, *, name: str | None = None,
           image: ImageInfo | None = None, progress: bool = True,
           backend_options: dict[str, Any] | None = None,
           on_event: Callable[[str, str, str], None] | None = None,
           force: bool = False, boot: str | None = None) -> Lab:
        """Build and boot `topology`; return when every node is ready (or raise LabError).

        `image` is an ImageInfo (default: `images.ensure_image()`); `name` overrides the
        topology's name so the same file can run twice side by side. A lab needing more
        memory than the machine has available is refused unless `force`. `boot`: "snapshot"
        (restore each node from its kind's saved state, orchestrate.snapshot; nodes whose
        snapshot cannot be had boot cold) or "cold" (default: `VRLAB_BOOT`, else snapshot).
        """
        boot = boot or default_boot()
        if boot not in BOOT_MODES:
            raise LabError(f"boot {boot!r}: choose from {', '.join(BOOT_MODES)}")
        lab_name = topology.name if name is None else name
        inventory = getattr(topology, "inventory", None)
        if inventory and not (backend_options or {}).get("hosts"):
            backend_options = {**(backend_options or {}),
                               "hosts": inventory_to_json(inventory)}
        on_hosts = bool((backend_options or {}).get("hosts"))
        if on_hosts and backend != "libvirt":
            raise LabInputError(f"a hosts inventory needs the libvirt backend (not {backend})")
        directory = checked_lab_dir(lab_name)
        if not force and not on_hosts:  # on hosts, placement checks each host's memory
            check_lab_memory(topology, lab_name)
        if (directory / RECORD_NAME).exists():
            raise LabError(f"lab {lab_name!r} already exists ({directory}); "
                           f"`vrlab down {lab_name}` first")
        if directory.exists():
            # Not made by vrlab (it would hold a journal): never adopt it, since teardown
            # removes the lab directory.
            raise LabError(f"{directory} exists but holds no lab journal; remove it or choose "
                           f"another name")
        from orchestrate.accel import AccelError, choose_accel

        try:
            if image is None:
                image = ensure_image(progress=progress)  # --no-progress: no build spinner
            backend_impl = get_backend(backend, **(backend_options or {}))
            choice = choose_accel(accel, image.kernel, image.initrd)
        except (AccelError, BackendError) as exc:
            raise LabError(str(exc)) from exc
        except ImageError as exc:
            raise LabError(f"image: {exc}") from exc
        labs_dir().mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
        record = Record.create(
            directory / RECORD_NAME, lab_name, backend=backend,
            backend_options=backend_options or {}, accel=choice.name,
            accel_reason=choice.reason, accel_requested=accel,
            topology=str(topology.path) if topology.path else None, boot=boot,
        )
        # The directory is journaled as vrlab's own: teardown removes it only then.
        record.intend("directory", str(directory), path=str(directory))
        record.created("directory", str(directory))
        record.intend("ksm", "ksm")
        ksm_off, held = hold_ksm(str(record.path))
        if held:
            record.created("ksm", "ksm")
        else:
            record.removed("ksm", "ksm")
        record.set_fields(ksm=ksm_off or "on")
        if ksm_off and progress:
            print(f"vrlab: {ksm_off}", file=sys.stderr, flush=True)
        lab = cls(record)
        lab._backend_impl = backend_impl
        try:
            lab._build(topology, image, choice.name, backend_impl, boot, progress)
            wait_ready(lab, timeout, progress, on_event,
                       start=lambda node: backend_impl.start(record, lab.spec(node)))
            record.set_fields(state="up", ready_at=time.time())
        except BaseException as exc:
            record.set_fields(state="failed")
            lab.close()
            leftovers = ["down raised"]
            with contextlib.suppress(Exception):
                leftovers = lab.down()
            if leftovers:
                message = "; ".join(leftovers)
                print(f"vrlab: cleaning up lab {lab_name} left: {message} (`vrlab down "
                      f"{lab_name}` retries)", file=sys.stderr)
            if isinstance(exc, (BackendError, links.LinkError, ports.PortError, ssh.SshError,
                                subprocess.CalledProcessError, OSError)):
                detail = exc.stderr.decode(errors="replace").strip() if isinstance(
                    exc, subprocess.CalledProcessError) and exc.stderr else ""
                raise LabError(f"{exc}{': ' + detail if detail else ''}") from exc
            raise
        return lab

    def _build(self, topology: Topology, image: ImageInfo, accel: str,
               backend: Backend, boot: str, progress: bool) -> None:
        """Create everything the nodes need; `wait_ready` starts them (at an admitted rate)."""
        record = self.record
        run_dir = run_dir_for(self.dir)
        if run_dir != self.dir / "run":
            if os.path.lexists(run_dir):
                check_private(run_dir)  # before journaling it: someone else's is never ours
            record.intend("directory", str(run_dir), path=str(run_dir))
        private_directory(run_dir)
        client = ssh.generate_key(self.client_key, f"vrlab-{self.name}")
        host_keys = {
            node: ssh.generate_key(self.dir / "ssh" / f"host_{node}_ed25519",
                                   f"{node}@vrlab-{self.name}")
            for node in topology.nodes
        }
        purposes = [f"ssh:{node}" for node in topology.nodes] + links.udp_purposes(topology)
        allocated = ports.allocate_ports(record, purposes)
        macs = links.MacAllocator(self.name)
        mgmt_macs = {node: macs.mac(node, links.MGMT_IFNAME) for node in topology.nodes}
        nics = links.plan_nics(topology, self.name, allocated, macs)
        # The libvirt backend builds on its hosts (placement, storage volumes, networks).
        on_hosts: Any = backend if hasattr(backend, "prepare") else None
        placement: dict[str, str] = {}
        if on_hosts is not None:
            placement = on_hosts.place(topology)
            nics = on_hosts.route(nics, placement)

        specs: dict[str, NodeSpec] = {}
        (self.dir / "nodes").mkdir(mode=0o700, exist_ok=True)
        for node_name, node in topology.nodes.items():
            node_dir = path_under(self.dir / "nodes", node_name)
            node_dir.mkdir(mode=0o700, exist_ok=True)
            port = allocated[f"ssh:{node_name}"]
            specs[node_name] = NodeSpec(
                lab=self.name, name=node_name, role=str(node.role),
                memory=int(node.memory), cpus=int(getattr(node, "cpus", 1) or 1), accel=accel,
                kernel=image.kernel, initrd=image.initrd, cmdline=image.cmdline,
                overlay=node_dir / "root.qcow2",
                config_disk=node_dir / "config.img", mgmt_mac=mgmt_macs[node_name],
                ssh_port=port, mgmt_netdev=management_netdev(port), node_dir=node_dir,
                run_dir=run_dir, nics=nics[node_name], host=placement.get(node_name),
            )
        snapshots: dict[str, Snapshot] = {}
        if boot == "snapshot" and backend.name == "qemu":
            snapshots = node_snapshots(image, specs, progress)
            specs.update({n: restore_spec(specs[n], snap) for n, snap in snapshots.items()})
        nodes_json = {n: s.to_json() for n, s in specs.items()}
        for node_name, node in topology.nodes.items():
            nodes_json[node_name]["addresses"] = [
                f"{iface.name} {address}" for iface in node.interfaces
                for address in getattr(iface, "addresses", [])]
        record.set_fields(nodes=nodes_json)

        ssh.write_known_hosts(self.known_hosts, {
            specs[n].ssh_port: host_keys[n].public_line() for n in specs})
        ssh.write_ssh_config(self.ssh_config, self.name, client.private, self.known_hosts,
                             {n: s.ssh_port for n, s in specs.items()},
                             proxies=self._proxy_commands(specs))

        for node_name, spec in specs.items():
            if on_hosts is None:  # on hosts the overlay is a volume there (backends.libvirt)
                record.intend("overlay", str(spec.overlay), path=str(spec.overlay))
                if node_name in snapshots:
                    snapshot_overlay(snapshots[node_name], spec.overlay)
                else:
                    image_overlay(image, spec.overlay)
                spec.overlay.chmod(0o600)
                record.created("overlay", str(spec.overlay))
            record.intend("config_disk", str(spec.config_disk), path=str(spec.config_disk))
            write_config_disk(topology, topology.nodes[node_name], spec, client,
                              host_keys[node_name])
            spec.config_disk.chmod(0o600)  # it carries the node's SSH host private key
            record.created("config_disk", str(spec.config_disk))

        all_nics = [nic for spec in specs.values() for nic in spec.nics]
        bridges = links.lan_bridges(all_nics) if on_hosts is None else {}
        if on_hosts is not None:
            on_hosts.prepare(record, specs, image)
        if bridges:
            namespace = links.netns_name(self.name)
            record.intend("namespace", namespace, name=namespace)
            links.create_namespace(namespace)
            record.created("namespace", namespace)
            for bridge, mtu in sorted(bridges.items()):
                record.intend("bridge", f"{namespace}/{bridge}", netns=namespace, name=bridge)
                links.create_bridge(namespace, bridge, mtu)
                record.created("bridge", f"{namespace}/{bridge}")

        for spec in specs.values():
            backend.create(record, spec)
        record.set_fields(state="booting", boot_started=time.time())

    def _proxy_commands(self, specs: dict[str, NodeSpec]) -> dict[str, str]:
        from orchestrate import multihost

        inventory = self.record.data.get("backend_options", {}).get("hosts") or {}
        return {name: multihost.proxy_command(Host.from_json(spec.host, inventory[spec.host]))
                for name, spec in specs.items()
                if spec.host is not None and spec.host in inventory
                and (inventory[spec.host].get("netns") or inventory[spec.host].get("ssh"))}

    # -- readiness -----------------------------------------------------------------------------

    # -- status --------------------------------------------------------------------------------

    def status(self) -> list[NodeStatus]:
        backend = self.backend()
        result = []
        for name in self.nodes():
            spec = self.spec(name)
            try:
                state = backend.status(self.record, name)
            except BackendError as exc:
                state = f"unknown ({exc})"
            result.append(NodeStatus(
                name=name, role=spec.role, state=state, ssh_port=spec.ssh_port,
                mgmt=f"{ssh.MGMT_HOST}:{spec.ssh_port}",
                addresses=list(self.record.data["nodes"][name].get("addresses", [])),
                serial_log=str(spec.serial_log),
                interfaces=[{"name": nic.ifname, "mac": nic.mac, "mtu": nic.mtu,
                             "link": nic.kind,
                             "link_local": str(link_local_from_mac(nic.mac))}
                            for nic in spec.nics],
                host=spec.host or "local",
                boot="snapshot" if spec.incoming else "cold",
            ))
            pid = self.vm_pid(name)
            memory = process_memory_kib(pid) if pid is not None else None
            if memory is not None:
                result[-1].pss_mib, result[-1].rss_mib = memory[0] / 1024, memory[1] / 1024
        return result

    def vm_pid(self, name: str) -> int | None:
        """The pid of the node's QEMU process, when the journal has it and it still runs."""
        from orchestrate.backends.qemu import process_start_time

        obj = self.record.find("process", name)
        if obj is None or obj.get("state") == "removed" or obj.get("pid") is None:
            return None
        pid = int(obj["pid"])
        return pid if process_start_time(pid) == obj.get("start_time") else None

    # -- capture -------------------------------------------------------------------------------

    def capture(self, node: str, ifname: str, path: Path,
                ) -> contextlib.AbstractContextManager[Path]:
        from orchestrate.capture import capture

        return capture(self, node, ifname, Path(path))

    # -- down ----------------------------------------------------------------------------------

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()

    def down(self) -> list[str]:
        """Remove everything the journal lists; return problems (empty when all went)."""
        self.close()
        try:
            return teardown(self.record)
        finally:
            if self.record.data.get("backend_options", {}).get("hosts"):
                from orchestrate import multihost

                multihost.close_jumps()


def teardown(record: Record) -> list[str]:
    """Remove what the journal lists, and only inside the lab's own directories.

    The lab directory `$VRLAB_HOME/labs/<lab>` and its socket directory are the only places a
    lab creates files; a journal path anywhere else (a hand-edited or foreign journal) is
    reported and left alone. The lab directory itself goes last, and only when the journal
    says vrlab created it.
    """
    problems: list[str] = []
    if not record.path.exists():
        return problems  # already down: the journal goes last, after everything it listed
    try:
        directory = checked_lab_dir(record.lab)
    except LabError as exc:
        return [str(exc)]
    if record.path.resolve() != directory / RECORD_NAME:
        return [f"{record.path} is not the journal of lab {record.lab!r} ({directory}); "
                f"nothing removed"]
    record.set_fields(state="stopping")
    backend_name = str(record.data.get("backend", "qemu"))
    try:
        backend: Backend | None = get_backend(backend_name,
                                              **record.data.get("backend_options", {}))
    except Exception as exc:  # e.g. libvirt-python missing: still remove files
        backend = None
        problems.append(f"backend {backend_name}: {exc}")
    roots = (directory, run_dir_for(directory))
    for kind in KINDS_TEARDOWN_ORDER:
        for obj in reversed(list(record.objects(kind))):
            try:
                _remove(record, backend, obj, roots)
            except Exception as exc:
                problems.append(f"{kind} {obj['key']}: {exc}")
    if problems:
        return problems
    own = record.find("directory", str(directory))
    if own is not None and own["state"] == "created":
        shutil.rmtree(directory, ignore_errors=True)
    else:  # an `up` that died before journaling its directory: only the journal is ours
        record.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            directory.rmdir()
    return problems


def _remove(record: Record, backend: Backend | None, obj: dict[str, Any],
            roots: tuple[Path, ...]) -> None:
    kind, key = obj["kind"], obj["key"]
    if kind in FILE_KINDS and not is_under(obj["path"], *roots):
        raise LabError(f"{obj['path']} is outside the lab's directories "
                       f"({', '.join(map(str, roots))}); left alone")
    if kind == "capture":
        from orchestrate.capture import stop_recorded_capture

        stop_recorded_capture(record, obj)
    elif kind in ("process", "domain"):
        if backend is None:
            raise LabError("no backend to stop it with")
        backend.stop(record, obj.get("node", key))
        record.removed(kind, key)
    elif kind in ("volume", "network", "vxlan"):
        remove = getattr(backend, "remove", None)
        if remove is None:
            raise LabError("no libvirt backend to remove it with")
        remove(record, obj)
    elif kind == "ksm":
        release_ksm(str(record.path))
    elif kind == "namespace":
        links.remove_namespace(obj["name"])
    elif kind in ("bridge", "tap"):
        # They live in the lab's namespace: gone with it. If the namespace is still there
        # (its removal failed), deleting it again is what would remove them.
        if links.namespace_exists(obj["netns"]):
            raise LabError(f"namespace {obj['netns']} still exists")
    elif kind in FILE_KINDS and kind != "directory":
        Path(obj["path"]).unlink(missing_ok=True)
    elif kind == "directory":
        if Path(obj["path"]).resolve() == roots[0]:
            return  # the lab directory holds the journal: removed last, by teardown()
        shutil.rmtree(obj["path"], ignore_errors=True)
    record.removed(kind, key)


# -- helpers ----------------------------------------------------------------------------------


def management_netdev(port: int) -> str:
    """QEMU user networking options for the management NIC (no `id`)."""
    from orchestrate import nodeconfig

    return nodeconfig.management_netdev_options(port)


def write_config_disk(topology: Topology, node: Node, spec: NodeSpec, client: ssh.KeyPair,
                      host_key: ssh.KeyPair) -> None:
    """The node's config disk (orchestrate.nodeconfig): identity, NICs by MAC, keys, routes."""
    from orchestrate import nodeconfig

    boot = nodeconfig.NodeBootSpec.from_node(
        node,
        mgmt_mac=spec.mgmt_mac,
        interface_macs={nic.ifname: nic.mac for nic in spec.nics},
        interface_mtus={nic.ifname: nic.mtu for nic in spec.nics},
        authorized_keys=[client.public_line()],
        host_key_private=host_key.private.read_text(),
        host_key_public=host_key.public_line(),
    )
    boot = dataclasses.replace(boot, restore_macs=restore_macs(spec),
                               router_config=shaped_router_config(boot.router_config, spec))
    try:
        nodeconfig.write_config_disk(boot, spec.config_disk)
    except nodeconfig.NodeConfigError as exc:
        raise LabError(f"{spec.name}: config disk: {exc}") from exc


def shaped_router_config(config: Mapping[str, Any] | None, spec: NodeSpec
                         ) -> dict[str, Any] | None:
    """A router's config with `qdisc_bypass: false` on every interface of an impaired link:
    its TX ring then sends through the guest's netem qdisc (orchestrate.netem), now and after
    `vrlab link set`. Other interfaces keep the bypass (the fast way)."""
    if config is None:
        return None
    impaired = {nic.ifname for nic in spec.nics if nic.impaired}
    interfaces = [{**iface, "qdisc_bypass": False} if iface.get("name") in impaired else iface
                  for iface in config.get("interfaces", [])]
    return {**config, "interfaces": interfaces}


def checked_lab_dir(name: str) -> Path:
    """The lab's directory; LabError when `name` breaks the name rule (orchestrate.names)."""
    try:
        return lab_dir(name)
    except BadName as exc:
        raise LabNameError(f"lab {exc}") from None


def resolve_lab_name(given: str | None) -> str:
    """A lab name from a name, a topology file (its `name:`), or the only lab there is.

    The result always follows the name rule (LabError otherwise).
    """
    if given:
        path = Path(given)
        if given.endswith((".yaml", ".yml")) and path.is_file():
            from appliance.yamlsource import YamlSourceError, load_file

            with contextlib.suppress(YamlSourceError):
                data = load_file(path).data
                if isinstance(data, dict) and isinstance(data.get("name"), str):
                    given = str(data["name"])
            if given == str(path):
                given = path.stem
        checked_lab_dir(given)
        return given
    names = Lab.names()
    if len(names) == 1:
        return names[0]
    if not names:
        raise LabError("no lab is up (`vrlab up FILE`)")
    raise LabError(f"several labs are up ({', '.join(names)}): name one with --lab")


def iter_labs() -> Iterator[Lab]:
    for name in Lab.names():
        with contextlib.suppress(LabError):
            yield Lab.open(name)
