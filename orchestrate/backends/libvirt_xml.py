"""libvirt XML for the libvirt backend: domains, isolated networks, the storage pool, volumes.

Pure text from the node's spec (no libvirt connection), so the rendering is unit-tested on its
own; orchestrate.backends.libvirt (whose docstring says why each element is what it is) creates
the objects from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from orchestrate import multihost
from orchestrate.accel import TCG_CPU_DISABLED
from orchestrate.backends import BackendError, NodeSpec
from orchestrate.links import NicSpec

DEFAULT_URI = "qemu:///system"
LOCAL_HOST = "local"
MGMT_NETDEV = "vrlabmgmt"
MGMT_PCI_SLOT = "0x10"
POOL_NAME = "vrlab"
POOL_PATH = "/var/lib/libvirt/images/vrlab"
CHUNK = 1 << 20
# Under TCG on a loaded host the kernel's IO-APIC timer check can miss its ticks and panic
# ("IO-APIC + timer doesn't work!"; seen booting four nodes over two simulated hosts).
TIMER_CHECK = " no_timer_check"


def domain_name(lab: str, node: str) -> str:
    return f"vrlab-{lab}-{node}"


def nic_alias(index: int) -> str:
    return f"ua-vrlab-net{index}"


def node_volume(lab: str, node: str, what: str) -> str:
    """The name of one of a node's volumes: root.qcow2, config.img, serial.log, *.pcap."""
    return f"{lab}-{node}-{what}"


def _esc(value: object) -> str:
    return quoteattr(str(value))


def _text(value: object) -> str:
    return escape(str(value))


@dataclass(frozen=True, slots=True)
class HostFiles:
    """Where the domain's files are on its host."""

    kernel: str
    initrd: str | None
    overlay: str
    config_disk: str
    serial_log: str


def _interface_xml(spec: NodeSpec, index: int, nic: NicSpec) -> str:
    alias = f"<alias name={_esc(nic_alias(index))}/>"
    if nic.kind == "udp":
        return f"""
    <interface type='udp'>
      <mac address={_esc(nic.mac)}/>
      <source address={_esc(nic.remote_address)} port={_esc(nic.remote_port)}>
        <local address={_esc(nic.local_address)} port={_esc(nic.local_port)}/>
      </source>
      <model type='virtio'/>
      {alias}
    </interface>"""
    if nic.kind == "lan":
        return f"""
    <interface type='network'>
      <mac address={_esc(nic.mac)}/>
      <source network={_esc(multihost.network_name(spec.lab, nic.link))}/>
      <mtu size={_esc(nic.mtu)}/>
      <model type='virtio'/>
      {alias}
    </interface>"""
    raise BackendError(
        f"{spec.name}:{nic.ifname}: an interface on no link is not available with the libvirt "
        f"backend; link it, or use --backend qemu")


def domain_xml(spec: NodeSpec, files: HostFiles,
               emulator: str = "/usr/bin/qemu-system-x86_64") -> str:
    """The libvirt domain XML for one node whose files are `files` on its host."""
    domain_type = "kvm" if spec.accel == "kvm" else "qemu"
    disabled = "".join(f"<feature policy='disable' name='{name}'/>"
                       for name in TCG_CPU_DISABLED)
    cpu = ("<cpu mode='host-passthrough'/>" if spec.accel == "kvm"
           else f"<cpu mode='maximum' check='none'>{disabled}</cpu>")
    initrd = f"<initrd>{_text(files.initrd)}</initrd>" if files.initrd else ""
    interfaces = "".join(_interface_xml(spec, index, nic) for index, nic in enumerate(spec.nics))
    # libvirt 9.0 refuses <mtu> on udp interfaces; set virtio-net's host_mtu directly.
    overrides = "".join(
        f"""
    <qemu:device alias={_esc(nic_alias(index))}>
      <qemu:frontend>
        <qemu:property name='host_mtu' type='unsigned' value={_esc(nic.mtu)}/>
      </qemu:frontend>
    </qemu:device>"""
        for index, nic in enumerate(spec.nics) if nic.kind == "udp"
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
    <kernel>{_text(files.kernel)}</kernel>
    {initrd}
    <cmdline>{_text(spec.cmdline + TIMER_CHECK)}</cmdline>
  </os>
  {cpu}
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{_text(emulator)}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='unsafe'/>
      <source file={_esc(files.overlay)}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file={_esc(files.config_disk)}/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>{interfaces}
    <serial type='pty'>
      <log file={_esc(files.serial_log)} append='on'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
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


def network_xml(name: str, bridge: str, mtu: int) -> str:
    """An isolated libvirt network (no <forward>, no <ip>: no NAT, no dnsmasq) with a bridge."""
    return (f"<network><name>{_text(name)}</name>"
            f"<bridge name={_esc(bridge)} stp='off' delay='0'/>"
            f"<mtu size={_esc(mtu)}/></network>")


def pool_xml() -> str:
    return (f"<pool type='dir'><name>{POOL_NAME}</name>"
            f"<target><path>{POOL_PATH}</path></target></pool>")


def volume_xml(name: str, capacity: int, fmt: str = "raw", backing: str | None = None,
               backing_format: str = "raw") -> str:
    backing_xml = (f"<backingStore><path>{_text(backing)}</path>"
                   f"<format type={_esc(backing_format)}/></backingStore>" if backing else "")
    return (f"<volume><name>{_text(name)}</name>"
            f"<capacity unit='bytes'>{capacity}</capacity>"
            f"<allocation unit='bytes'>0</allocation>"
            f"<target><format type={_esc(fmt)}/></target>{backing_xml}</volume>")
