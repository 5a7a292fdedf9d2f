"""The libvirt backend: one libvirt domain per node, on one host or spread over several.

Hosts: without an inventory the lab runs on one host, `local`, reached at `--libvirt-uri`
(default `qemu:///system`). With one (`hosts:` in the topology or `vrlab up --hosts FILE`,
orchestrate.hosts) every node is placed on a host and everything of it is made there through
that host's libvirt connection; orchestrate.multihost has the links and management across
hosts. Every object is journalled with its host, so `down` finds it again.

Everything a domain uses on its host is a libvirt storage volume in the host's `vrlab` pool (a
directory pool at /var/lib/libvirt/images/vrlab, defined on first use and kept), so one
mechanism serves a local and a remote host:

- the image's kernel, initrd and disk: uploaded by stream once per host, named by the SHA-256
  of their content (`img-<digest>-disk`), with a `.done` marker volume written after the upload
  completed; a second `up` finds them and copies nothing. They stay (a cache, like the local
  image cache); `vrlab image prune` does not touch hosts.
- per node: the qcow2 overlay (created by libvirt on the host, backed by the image's disk), the
  config disk (built here, uploaded) and the serial log (an empty volume that virtlogd appends
  to; vrlab reads it back by stream from where it last stopped, into the local `serial.log`).
  These are journalled (kind `volume`) and removed by `down`.
- captures (filter-dump) write into a volume that is downloaded when the capture stops.

The domain runs the same QEMU machine as the embedded backend: direct kernel boot, the overlay
as the first virtio disk, the config disk second and read-only, the serial port on a pty (the
console is a libvirt stream, `vrlab console`). Data NICs:

- point-to-point: `<interface type='udp'>` pairs, on 127.0.0.1 on one host or between the two
  hosts' tunnel addresses (libvirt 9.0 refuses `<mtu>` on udp interfaces, so virtio-net's
  host_mtu is set with `<qemu:override>`);
- LAN segments: `<interface type='network'>` on the segment's libvirt network on that host (an
  isolated `<network>` with its own bridge and MTU, created here; joined across hosts by VXLAN,
  orchestrate.multihost).

Management NIC: libvirt 9.0's `<interface type='user'>` has `<portForward>` only with the passt
backend (not installed here, and it has no `restrict=on`), so the management NIC is passed to
QEMU verbatim with `<qemu:commandline>`: `-netdev user,restrict=on,hostfwd=tcp:127.0.0.1:PORT-:22`
plus its virtio-net device, exactly as the QEMU backend does. libvirt marks such domains
"tainted" (custom-argv); that is expected. The forward listens on the host's loopback.

The domain runs QEMU as root with no relabelling (`<seclabel type='static' model='dac'
relabel='no'>`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from orchestrate import multihost
from orchestrate.backends import BackendError, NodeSpec
from orchestrate.backends.libvirt_xml import (
    CHUNK,
    DEFAULT_URI,
    LOCAL_HOST,
    MGMT_NETDEV,
    POOL_NAME,
    HostFiles,
    domain_name,
    domain_xml,
    network_xml,
    nic_alias,
    node_volume,
    pool_xml,
    volume_xml,
)
from orchestrate.hosts import (
    Capacity,
    Demand,
    Host,
    PlacementError,
    host_capacity,
    inventory_from_json,
    place,
)
from orchestrate.links import NicSpec
from orchestrate.record import Record


def content_digest(path: Path) -> str:
    """SHA-256 of a file, remembered next to it (`.<name>.sha256`, keyed by size and mtime)."""
    stat = path.stat()
    key = f"{stat.st_size} {stat.st_mtime_ns}"
    memo = path.with_name(f".{path.name}.sha256")
    with contextlib.suppress(OSError):
        stamp, _, digest = memo.read_text().strip().rpartition(" ")
        if stamp == key and len(digest) == 64:
            return digest
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            sha.update(chunk)
    digest = sha.hexdigest()
    with contextlib.suppress(OSError):
        memo.write_text(f"{key} {digest}\n")
    return digest


def _hole_handler(_stream: Any, fd: int) -> list[Any]:
    """For sparseSendAll: (in data?, bytes until the section ends) at the current offset."""
    current = os.lseek(fd, 0, os.SEEK_CUR)
    end = os.fstat(fd).st_size
    if current >= end:
        return [False, 0]
    try:
        data = os.lseek(fd, current, os.SEEK_DATA)
    except OSError:  # ENXIO: only a hole until the end
        data = end
    if data > current:
        section = [False, data - current]
    else:
        section = [True, os.lseek(fd, current, os.SEEK_HOLE) - current]
    os.lseek(fd, current, os.SEEK_SET)
    return section


def _libvirt() -> Any:
    try:
        import libvirt
    except ImportError as exc:
        raise BackendError("the libvirt backend needs libvirt-python") from exc
    return libvirt


class LibvirtBackend:
    name = "libvirt"

    def __init__(self, uri: str | None = None,
                 hosts: dict[str, dict[str, Any]] | None = None) -> None:
        if hosts:
            self.hosts = inventory_from_json(hosts)
        else:
            local_uri = uri or os.environ.get("VRLAB_LIBVIRT_URI") or DEFAULT_URI
            self.hosts = {LOCAL_HOST: Host(LOCAL_HOST, local_uri, multihost.LOOPBACK)}
        self.uri = next(iter(self.hosts.values())).uri
        self._conns: dict[str, Any] = {}
        self._unreachable: dict[str, str] = {}
        self._lock = threading.Lock()
        self._image_paths: dict[str, dict[str, str]] = {}
        self._serial: dict[str, tuple[int, Path]] = {}

    # -- hosts ---------------------------------------------------------------------------------

    def host(self, name: str | None) -> Host:
        try:
            return self.hosts[name or LOCAL_HOST]
        except KeyError:
            raise BackendError(f"host {name!r} is not in the lab's inventory") from None

    def connection(self, host: str | None) -> Any:
        """The libvirt connection of `host`; an unreachable host fails fast after once."""
        libvirt = _libvirt()
        target = self.host(host)
        with self._lock:
            if target.name in self._conns:
                return self._conns[target.name]
            if target.name in self._unreachable:
                raise BackendError(self._unreachable[target.name])
            # libvirt prints every error (e.g. "domain not found" on lookups) to stderr by
            # default; errors reach us as exceptions anyway.
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            try:
                conn = libvirt.open(target.uri)
            except libvirt.libvirtError as exc:
                message = f"host {target.name} ({target.uri}) is unreachable: {exc}"
                self._unreachable[target.name] = message
                raise BackendError(message) from exc
            self._conns[target.name] = conn
            return conn

    def _broken(self, host: str | None, exc: Exception) -> BackendError:
        """A call on an open connection failed: the host may have gone; say so, once."""
        libvirt = _libvirt()
        target = self.host(host)
        conn = self._conns.get(target.name)
        alive = False
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                alive = bool(conn.isAlive())
        if not alive:
            message = f"host {target.name} ({target.uri}) is unreachable: {exc}"
            self._unreachable[target.name] = message
            self._conns.pop(target.name, None)
            return BackendError(message)
        return BackendError(f"host {target.name}: {exc}")

    def capacity(self, names: list[str] | None = None) -> dict[str, Capacity]:
        libvirt = _libvirt()
        result = {}
        for name in names or list(self.hosts):
            conn = self.connection(name)
            try:
                result[name] = host_capacity(self.hosts[name], conn.getInfo(),
                                             conn.getFreeMemory())
            except libvirt.libvirtError as exc:
                raise self._broken(name, exc) from exc
        return result

    def place(self, topology: Any) -> dict[str, str]:
        """node -> host for every node of `topology` (see orchestrate.hosts.place)."""
        demands = {
            name: Demand(int(node.memory), int(getattr(node, "cpus", 1) or 1),
                         getattr(node, "host", None))
            for name, node in topology.nodes.items()
        }
        if list(self.hosts) == [LOCAL_HOST]:
            for name, demand in demands.items():
                if demand.pin not in (None, LOCAL_HOST):
                    raise BackendError(f"node {name} is pinned to host {demand.pin!r}, but "
                                       f"the lab has no hosts inventory (hosts: or --hosts)")
            return dict.fromkeys(demands, LOCAL_HOST)
        try:
            return place(demands, self.capacity())
        except PlacementError as exc:
            raise BackendError(str(exc)) from exc

    def host_of(self, record: Record, node: str) -> str:
        return str(record.data["nodes"].get(node, {}).get("host") or LOCAL_HOST)

    # -- storage -------------------------------------------------------------------------------

    def pool(self, host: str) -> Any:
        libvirt = _libvirt()
        conn = self.connection(host)
        try:
            try:
                pool = conn.storagePoolLookupByName(POOL_NAME)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                    raise
                pool = conn.storagePoolDefineXML(pool_xml(), 0)
                pool.build(0)
                pool.setAutostart(1)
            if not pool.isActive():
                pool.build(0)  # the directory may be gone (a dir pool's build is mkdir -p)
                pool.create(0)
            return pool
        except libvirt.libvirtError as exc:
            raise self._broken(host, exc) from exc

    @staticmethod
    def _volume(pool: Any, name: str) -> Any:
        libvirt = _libvirt()
        try:
            return pool.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
            return None

    def upload(self, host: str, pool: Any, name: str, path: Path, sparse: bool) -> str:
        """Create volume `name` from the local file `path` (streamed); return its host path."""
        libvirt = _libvirt()
        conn = self.connection(host)
        size = path.stat().st_size
        volume = pool.createXML(volume_xml(name, size), 0)
        stream = conn.newStream(0)
        try:
            with path.open("rb") as handle:
                fd = handle.fileno()
                if sparse:
                    volume.upload(stream, 0, size, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
                    stream.sparseSendAll(lambda _s, n, f: os.read(f, n), _hole_handler,
                                         lambda _s, n, f: os.lseek(f, n, os.SEEK_CUR), fd)
                else:
                    volume.upload(stream, 0, size, 0)
                    stream.sendAll(lambda _s, n, f: os.read(f, n), fd)
            stream.finish()
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            with contextlib.suppress(libvirt.libvirtError):
                volume.delete(0)
            raise
        return str(volume.path())

    def ensure_image(self, host: str, image: Any) -> dict[str, str]:
        """The image's files on `host` (uploaded once per content digest): role -> path."""
        libvirt = _libvirt()
        if host in self._image_paths:
            return self._image_paths[host]
        pool = self.pool(host)
        files = {"kernel": Path(image.kernel), "disk": Path(image.disk)}
        if getattr(image, "initrd", None):
            files["initrd"] = Path(image.initrd)
        paths: dict[str, str] = {}
        try:
            for role, path in files.items():
                name = f"img-{content_digest(path)[:32]}-{role}"
                volume = self._volume(pool, name)
                if volume is not None and self._volume(pool, f"{name}.done") is None:
                    volume.delete(0)  # an upload that never finished
                    volume = None
                if volume is None:
                    paths[role] = self.upload(host, pool, name, path, sparse=role == "disk")
                    pool.createXML(volume_xml(f"{name}.done", 0), 0)
                else:
                    paths[role] = str(volume.path())
        except libvirt.libvirtError as exc:
            raise self._broken(host, exc) from exc
        self._image_paths[host] = paths
        return paths

    def _journal_volume(self, record: Record, host: str, name: str) -> str:
        key = f"{host}/{name}"
        record.intend("volume", key, host=host, pool=POOL_NAME, name=name)
        return key

    # -- a lab's objects on its hosts ------------------------------------------------------------

    def route(self, nics: dict[str, list[NicSpec]], placement: dict[str, str]
              ) -> dict[str, list[NicSpec]]:
        """Crossing links between tunnel addresses; refuse what the underlay cannot carry."""
        routed = multihost.route_links(nics, placement, self.hosts)
        largest = multihost.crossing_frames(routed, placement, self.hosts)
        try:
            if largest:
                multihost.check_underlay(self.hosts, largest)
            for segment in multihost.lan_segments(routed, placement):
                if len(segment.hosts) > 1:
                    for name in segment.hosts:
                        multihost._require_access(self.hosts[name],
                                                  "a LAN segment across hosts (VXLAN)")
        except multihost.MultiHostError as exc:
            raise BackendError(str(exc)) from exc
        return routed

    def prepare(self, record: Record, specs: dict[str, NodeSpec], image: Any) -> None:
        """Images on every host used, then each LAN segment's networks (and VXLAN)."""
        libvirt = _libvirt()
        used = sorted({spec.host or LOCAL_HOST for spec in specs.values()})
        for host in used:
            self.ensure_image(host, image)
        nics = {name: spec.nics for name, spec in specs.items()}
        placement = {name: spec.host or LOCAL_HOST for name, spec in specs.items()}
        lab = record.lab
        for segment in multihost.lan_segments(nics, placement):
            name = multihost.network_name(lab, segment.link)
            bridge = multihost.bridge_name(lab, segment.link)
            for host in segment.hosts:
                key = f"{host}/{name}"
                record.intend("network", key, host=host, name=name)
                try:
                    self.connection(host).networkCreateXML(
                        network_xml(name, bridge, segment.mtu))
                except libvirt.libvirtError as exc:
                    raise self._broken(host, exc) from exc
                record.created("network", key)
            if len(segment.hosts) < 2:
                continue
            vxlan = multihost.vxlan_name(lab, segment.link)
            for host in segment.hosts:
                key = f"{host}/{vxlan}"
                record.intend("vxlan", key, host=host, name=vxlan)
                peers = [self.hosts[other].tunnel for other in segment.hosts if other != host]
                try:
                    multihost.create_vxlan(self.hosts[host], vxlan,
                                           multihost.vni(lab, segment.link), bridge, peers,
                                           segment.mtu)
                except Exception as exc:
                    raise BackendError(f"host {host}: VXLAN for LAN segment "
                                       f"links[{segment.link}]: {exc}") from exc
                record.created("vxlan", key)

    def remove(self, record: Record, obj: dict[str, Any]) -> None:
        """Remove a journalled `volume`, `network` or `vxlan` from its host. Idempotent."""
        libvirt = _libvirt()
        host = obj.get("host")
        kind = obj["kind"]
        if kind == "vxlan":
            multihost.remove_vxlan(self.host(host), obj["name"])
            return
        conn = self.connection(host)
        try:
            if kind == "network":
                try:
                    network = conn.networkLookupByName(obj["name"])
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                        raise
                    return
                persistent = network.isPersistent()
                if network.isActive():
                    network.destroy()  # a transient network is gone after this
                if persistent:
                    network.undefine()
            elif kind == "volume":
                try:
                    pool = conn.storagePoolLookupByName(obj["pool"])
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                        raise
                    return
                volume = self._volume(pool, obj["name"])
                if volume is not None:
                    volume.delete(0)
        except libvirt.libvirtError as exc:
            raise self._broken(host, exc) from exc

    # -- the four hooks ----------------------------------------------------------------------

    def create(self, record: Record, spec: NodeSpec) -> None:
        libvirt = _libvirt()
        host = spec.host or LOCAL_HOST
        name = domain_name(spec.lab, spec.name)
        if self._lookup(host, name) is not None:
            raise BackendError(f"libvirt domain {name} already exists on host {host} "
                               f"(`vrlab down {spec.lab}`)")
        image = self._image_paths.get(host)
        if image is None:
            raise BackendError(f"{spec.name}: the image is not on host {host} (prepare first)")
        pool = self.pool(host)
        try:
            overlay = node_volume(spec.lab, spec.name, "root.qcow2")
            key = self._journal_volume(record, host, overlay)
            disk = pool.storageVolLookupByName(Path(image["disk"]).name)
            capacity = int(disk.info()[1])
            overlay_path = pool.createXML(
                volume_xml(overlay, capacity, "qcow2", image["disk"], "raw"), 0).path()
            record.created("volume", key)
            config = node_volume(spec.lab, spec.name, "config.img")
            key = self._journal_volume(record, host, config)
            config_path = self.upload(host, pool, config, spec.config_disk, sparse=False)
            record.created("volume", key)
            serial = node_volume(spec.lab, spec.name, "serial.log")
            key = self._journal_volume(record, host, serial)
            serial_path = pool.createXML(volume_xml(serial, 0), 0).path()
            record.created("volume", key)
        except libvirt.libvirtError as exc:
            raise self._broken(host, exc) from exc
        xml = domain_xml(spec, HostFiles(image["kernel"], image.get("initrd"), overlay_path,
                                         config_path, serial_path))
        (spec.node_dir / "domain.xml").write_text(xml)
        record.intend("domain", spec.name, name=name, uri=self.host(host).uri, host=host,
                      node=spec.name)
        try:
            self.connection(host).defineXML(xml)
        except libvirt.libvirtError as exc:
            raise BackendError(f"{spec.name}: libvirt on host {host} refused the domain: "
                               f"{exc}") from exc
        record.created("domain", spec.name)

    def start(self, record: Record, spec: NodeSpec) -> None:
        libvirt = _libvirt()
        host = spec.host or LOCAL_HOST
        domain = self._lookup(host, domain_name(spec.lab, spec.name))
        if domain is None:
            raise BackendError(f"{spec.name}: domain vanished before start")
        try:
            domain.create()
        except libvirt.libvirtError as exc:
            raise BackendError(f"{spec.name}: libvirt on host {host} could not start the "
                               f"domain: {exc}") from exc

    def _lookup(self, host: str | None, name: str) -> Any:
        """The domain, or None when the host has no such domain (other errors raise)."""
        libvirt = _libvirt()
        try:
            return self.connection(host).lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise self._broken(host, exc) from exc

    def stop(self, record: Record, node: str) -> None:
        libvirt = _libvirt()
        obj = record.find("domain", node)
        if obj is None or obj["state"] == "removed":
            return
        host = obj.get("host") or LOCAL_HOST
        if host == LOCAL_HOST and obj.get("uri") and obj["uri"] != self.host(host).uri:
            self.hosts[LOCAL_HOST] = Host(LOCAL_HOST, obj["uri"], multihost.LOOPBACK)
            self._conns.pop(LOCAL_HOST, None)
        domain = self._lookup(host, obj["name"])
        if domain is not None:
            try:
                if domain.isActive():
                    domain.destroy()
            except libvirt.libvirtError as exc:
                if not self.connection(host).isAlive():
                    raise self._broken(host, exc) from exc
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    if not domain.isActive():
                        break
                except libvirt.libvirtError:
                    break
                time.sleep(0.1)
            try:
                domain.undefine()
            except libvirt.libvirtError as exc:
                if self._lookup(host, obj["name"]) is not None:
                    raise BackendError(f"{node}: cannot undefine {obj['name']} on host "
                                       f"{host}: {exc}") from exc
        record.removed("domain", node)

    def status(self, record: Record, node: str) -> str:
        libvirt = _libvirt()
        obj = record.find("domain", node)
        if obj is None or obj["state"] == "removed":
            return "absent"
        host = obj.get("host") or LOCAL_HOST
        domain = self._lookup(host, obj["name"])
        if domain is None:
            return "absent"
        try:
            return "running" if domain.isActive() else "stopped"
        except libvirt.libvirtError as exc:
            raise self._broken(host, exc) from exc

    def netdev_name(self, spec: NodeSpec, index: int) -> str:
        # libvirt names an interface's netdev "host" + its alias; the management NIC is ours
        # (qemu:commandline).
        return MGMT_NETDEV if index < 0 else f"host{nic_alias(index)}"

    def _domain(self, record: Record, node: str) -> tuple[str, Any]:
        """(host, libvirt domain) of a node from the journal; BackendError when it is gone."""
        obj = record.find("domain", node)
        if obj is None:
            raise BackendError(f"{node}: no libvirt domain in the lab record")
        host = obj.get("host") or LOCAL_HOST
        domain = self._lookup(host, obj["name"])
        if domain is None:
            raise BackendError(f"{node}: domain {obj['name']} does not exist on host {host}")
        return host, domain

    def qmp(self, record: Record, node: str, command: str, **arguments: Any) -> Any:
        libvirt = _libvirt()
        import libvirt_qemu

        _, domain = self._domain(record, node)
        message = {"execute": command}
        if arguments:
            message["arguments"] = arguments  # type: ignore[assignment]
        try:
            reply = json.loads(libvirt_qemu.qemuMonitorCommand(domain, json.dumps(message), 0))
        except libvirt.libvirtError as exc:
            raise BackendError(f"{node}: QMP {command}: {exc}") from exc
        if "error" in reply:
            raise BackendError(f"{node}: QMP {command}: {reply['error'].get('desc')}")
        return reply.get("return")

    # -- files on the host, read back ---------------------------------------------------------

    def download(self, host: str, name: str, offset: int = 0) -> bytes:
        """Bytes of volume `name` from `offset` to its end (empty when it is gone)."""
        libvirt = _libvirt()
        conn = self.connection(host)
        try:
            pool = conn.storagePoolLookupByName(POOL_NAME)
            volume = self._volume(pool, name)
            if volume is None:
                return b""
            stream = conn.newStream(0)
            volume.download(stream, offset, 0, 0)
            chunks: list[bytes] = []
            stream.recvAll(lambda _s, data, acc: acc.append(data) or len(data), chunks)
            stream.finish()
        except libvirt.libvirtError as exc:
            raise self._broken(host, exc) from exc
        return b"".join(chunks)

    def sync_serial(self, record: Record, spec: NodeSpec) -> None:
        """Append what the node's serial log on its host gained to the local `serial.log`."""
        host = spec.host or LOCAL_HOST
        offset = spec.serial_log.stat().st_size if spec.serial_log.exists() else 0
        data = self.download(host, node_volume(spec.lab, spec.name, "serial.log"), offset)
        if data:
            with spec.serial_log.open("ab") as handle:
                handle.write(data)

    def capture_file(self, record: Record, spec: NodeSpec, ifname: str) -> str:
        """A journalled volume on the node's host for QEMU to write a capture into."""
        libvirt = _libvirt()
        host = spec.host or LOCAL_HOST
        name = node_volume(spec.lab, spec.name, f"{ifname}.pcap")
        pool = self.pool(host)
        key = self._journal_volume(record, host, name)
        try:
            old = self._volume(pool, name)
            if old is not None:
                old.delete(0)
            path = str(pool.createXML(volume_xml(name, 0), 0).path())
        except libvirt.libvirtError as exc:
            raise self._broken(host, exc) from exc
        record.created("volume", key)
        return path

    def fetch_capture(self, record: Record, spec: NodeSpec, ifname: str, local: Path) -> None:
        """Copy the capture volume here, then remove it from the host."""
        host = spec.host or LOCAL_HOST
        name = node_volume(spec.lab, spec.name, f"{ifname}.pcap")
        local.write_bytes(self.download(host, name))
        obj = record.find("volume", f"{host}/{name}")
        if obj is not None:
            self.remove(record, obj)
            record.removed("volume", obj["key"])

    def open_console(self, record: Record, node: str) -> Any:
        """A libvirt stream on the node's serial console (wherever it runs)."""
        libvirt = _libvirt()
        host, domain = self._domain(record, node)
        stream = self.connection(host).newStream(0)
        try:
            domain.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        except libvirt.libvirtError as exc:
            raise BackendError(f"{node}: console: {exc}") from exc
        return stream


    def console_socket(self, record: Record, node: str) -> socket.socket:
        """The node's console stream as a local socket (two pump threads in between)."""
        libvirt = _libvirt()
        stream = self.open_console(record, node)
        ours, theirs = socket.socketpair()

        def from_console() -> None:
            with contextlib.suppress(libvirt.libvirtError, OSError):
                while True:
                    data = stream.recv(65536)
                    if not isinstance(data, bytes) or not data:
                        break
                    ours.sendall(data)
            with contextlib.suppress(OSError):
                ours.shutdown(socket.SHUT_WR)

        def to_console() -> None:
            with contextlib.suppress(libvirt.libvirtError, OSError):
                while data := ours.recv(65536):
                    stream.send(data)
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()

        for pump in (from_console, to_console):
            threading.Thread(target=pump, name=f"console-{node}", daemon=True).start()
        return theirs


def make_backend(**options: Any) -> LibvirtBackend:
    return LibvirtBackend(uri=options.get("uri"), hosts=options.get("hosts"))
