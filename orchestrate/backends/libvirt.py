"""The libvirt backend: one persistent libvirt domain per node (libvirt-python, domain XML).

The domain runs the same QEMU machine as the embedded backend: direct kernel boot, the qcow2
overlay as the first virtio disk, the config disk second and read-only, virtio-net data NICs
as `<interface type='udp'>` pairs on 127.0.0.1 with `<mtu>` (host_mtu), and the serial port on
a unix socket whose output virtlogd writes to `serial.log`.

Management NIC: libvirt 9.0's `<interface type='user'>` has `<portForward>` only with the passt
backend (not installed here, and it has no `restrict=on`), so the management NIC is passed to
QEMU verbatim with `<qemu:commandline>`: `-netdev user,restrict=on,hostfwd=tcp:127.0.0.1:PORT-:22`
plus its virtio-net device, exactly as the QEMU backend does. libvirt marks such domains
"tainted" (custom-argv); that is expected.

The domain runs QEMU as root with no relabelling (`<seclabel type='static' model='dac'
relabel='no'>`) because the images live under the user's home, which libvirt-qemu cannot read.

LAN segments (bridges in a lab namespace, tap fds handed to QEMU) are not available with this
backend: libvirt opens taps itself in the root namespace. `create` refuses such topologies.

URI: `qemu:///system` unless the lab is brought up with another (`--libvirt-uri`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from xml.sax.saxutils import quoteattr

from orchestrate.backends import BackendError, NodeSpec
from orchestrate.record import Record

DEFAULT_URI = "qemu:///system"
MGMT_NETDEV = "vrlabmgmt"
MGMT_PCI_SLOT = "0x10"


def domain_name(lab: str, node: str) -> str:
    return f"vrlab-{lab}-{node}"


def nic_alias(index: int) -> str:
    return f"ua-vrlab-net{index}"


def _esc(value: object) -> str:
    return quoteattr(str(value))


def _text(value: object) -> str:
    from xml.sax.saxutils import escape

    return escape(str(value))


def domain_xml(spec: NodeSpec, emulator: str = "/usr/bin/qemu-system-x86_64") -> str:
    """The libvirt domain XML for one node."""
    for nic in spec.nics:
        if nic.kind != "udp":
            raise BackendError(
                f"{spec.name}:{nic.ifname}: the libvirt backend supports point-to-point links "
                f"only (this one is {nic.kind}); use --backend qemu for LAN segments")
    domain_type = "kvm" if spec.accel == "kvm" else "qemu"
    cpu = ("<cpu mode='host-passthrough'/>" if spec.accel == "kvm"
           else "<cpu mode='maximum' check='none'/>")
    initrd = f"<initrd>{_text(spec.initrd)}</initrd>" if spec.initrd else ""
    interfaces = "".join(
        f"""
    <interface type='udp'>
      <mac address={_esc(nic.mac)}/>
      <source address='127.0.0.1' port={_esc(nic.remote_port)}>
        <local address='127.0.0.1' port={_esc(nic.local_port)}/>
      </source>
      <model type='virtio'/>
      <alias name={_esc(nic_alias(index))}/>
    </interface>"""
        for index, nic in enumerate(spec.nics)
    )
    # libvirt 9.0 refuses <mtu> on udp interfaces; set virtio-net's host_mtu directly.
    overrides = "".join(
        f"""
    <qemu:device alias={_esc(nic_alias(index))}>
      <qemu:frontend>
        <qemu:property name='host_mtu' type='unsigned' value={_esc(nic.mtu)}/>
      </qemu:frontend>
    </qemu:device>"""
        for index, nic in enumerate(spec.nics)
    )
    mgmt_args = [
        "-netdev", f"user,id={MGMT_NETDEV},{spec.mgmt_netdev}",
        # An explicit slot on pcie.0, far above the root ports libvirt places from slot 1 up
        # (libvirt does not know about this device and would otherwise collide with it).
        "-device", f"virtio-net-pci,netdev={MGMT_NETDEV},mac={spec.mgmt_mac},"
                   f"bus=pcie.0,addr={MGMT_PCI_SLOT}",
    ]
    qemu_args = "".join(f"\n    <qemu:arg value={_esc(arg)}/>" for arg in mgmt_args)
    return f"""<domain type='{domain_type}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{_text(domain_name(spec.lab, spec.name))}</name>
  <description>vrlab lab {_text(spec.lab)} node {_text(spec.name)}</description>
  <memory unit='MiB'>{spec.memory}</memory>
  <vcpu>{spec.cpus}</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{_text(spec.kernel)}</kernel>
    {initrd}
    <cmdline>{_text(spec.cmdline)}</cmdline>
  </os>
  {cpu}
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{_text(emulator)}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='unsafe'/>
      <source file={_esc(spec.overlay)}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file={_esc(spec.config_disk)}/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>{interfaces}
    <serial type='unix'>
      <source mode='bind' path={_esc(spec.serial_socket)}/>
      <log file={_esc(spec.serial_log)} append='on'/>
      <target port='0'/>
    </serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <qemu:commandline>{qemu_args}
  </qemu:commandline>
  <qemu:override>{overrides}
  </qemu:override>
</domain>
"""


class LibvirtBackend:
    name = "libvirt"

    def __init__(self, uri: str | None = None) -> None:
        self.uri = uri or os.environ.get("VRLAB_LIBVIRT_URI") or DEFAULT_URI
        self._conn: Any = None

    def connection(self) -> Any:
        if self._conn is None:
            try:
                import libvirt
            except ImportError as exc:
                raise BackendError("the libvirt backend needs libvirt-python") from exc
            # libvirt prints every error (e.g. "domain not found" on lookups) to stderr by
            # default; errors reach us as exceptions anyway.
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise BackendError(f"cannot connect to {self.uri}: {exc}") from exc
        return self._conn

    def _lookup(self, name: str) -> Any:
        import libvirt

        try:
            return self.connection().lookupByName(name)
        except libvirt.libvirtError:
            return None

    def create(self, record: Record, spec: NodeSpec) -> None:
        import libvirt

        xml = domain_xml(spec)
        (spec.node_dir / "domain.xml").write_text(xml)
        name = domain_name(spec.lab, spec.name)
        if self._lookup(name) is not None:
            raise BackendError(f"libvirt domain {name} already exists (`vrlab down {spec.lab}`)")
        record.intend("socket", str(spec.serial_socket), path=str(spec.serial_socket))
        record.intend("domain", spec.name, name=name, uri=self.uri, node=spec.name)
        try:
            self.connection().defineXML(xml)
        except libvirt.libvirtError as exc:
            raise BackendError(f"{spec.name}: libvirt refused the domain: {exc}") from exc
        record.created("domain", spec.name)

    def start(self, record: Record, spec: NodeSpec) -> None:
        import libvirt

        domain = self._lookup(domain_name(spec.lab, spec.name))
        if domain is None:
            raise BackendError(f"{spec.name}: domain vanished before start")
        try:
            domain.create()
        except libvirt.libvirtError as exc:
            raise BackendError(f"{spec.name}: libvirt could not start the domain: {exc}") from exc

    def stop(self, record: Record, node: str) -> None:
        import libvirt

        obj = record.find("domain", node)
        if obj is None or obj["state"] == "removed":
            return
        if obj.get("uri") and obj["uri"] != self.uri:
            self.uri, self._conn = obj["uri"], None
        domain = self._lookup(obj["name"])
        if domain is not None:
            try:
                if domain.isActive():
                    domain.destroy()
            except libvirt.libvirtError:
                pass
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
                if self._lookup(obj["name"]) is not None:
                    raise BackendError(f"{node}: cannot undefine {obj['name']}: {exc}") from exc
        record.removed("domain", node)

    def status(self, record: Record, node: str) -> str:
        obj = record.find("domain", node)
        if obj is None or obj["state"] == "removed":
            return "absent"
        domain = self._lookup(obj["name"])
        if domain is None:
            return "absent"
        return "running" if domain.isActive() else "stopped"

    def netdev_name(self, spec: NodeSpec, index: int) -> str:
        # libvirt names an interface's netdev "host" + its alias; the management NIC is ours
        # (qemu:commandline).
        return MGMT_NETDEV if index < 0 else f"host{nic_alias(index)}"

    def qmp(self, record: Record, node: str, command: str, **arguments: Any) -> Any:
        import libvirt
        import libvirt_qemu

        obj = record.find("domain", node)
        if obj is None:
            raise BackendError(f"{node}: no libvirt domain in the lab record")
        domain = self._lookup(obj["name"])
        if domain is None:
            raise BackendError(f"{node}: domain {obj['name']} does not exist")
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


def make_backend(**options: Any) -> LibvirtBackend:
    return LibvirtBackend(uri=options.get("uri"))
