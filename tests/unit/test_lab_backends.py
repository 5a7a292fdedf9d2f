"""libvirt domain XML, pcap counting, lab name resolution, and the CLI's argument splitting."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orchestrate.backends import BackendError, NodeSpec
from orchestrate.backends.libvirt_xml import HostFiles, domain_xml
from orchestrate.capture import count_pcap_packets
from orchestrate.cli import build_parser
from orchestrate.commands.exec import nodes_and_command
from orchestrate.lab import Lab, LabError, management_netdev, resolve_lab_name
from orchestrate.links import NicSpec
from orchestrate.record import Record

QEMU_NS = "{http://libvirt.org/schemas/domain/qemu/1.0}"


def spec(tmp_path: Path, nics: list[NicSpec]) -> NodeSpec:
    return NodeSpec(
        lab="duo", name="violin", role="host", memory=256, cpus=1, accel="tcg",
        kernel=Path("/img/vmlinuz"), initrd=Path("/img/initrd.img"), cmdline="console=ttyS0 q",
        overlay=tmp_path / "root.qcow2", config_disk=tmp_path / "config.img",
        mgmt_mac="52:54:00:aa:bb:cc", ssh_port=42022, mgmt_netdev=management_netdev(42022),
        node_dir=tmp_path, run_dir=tmp_path / "run", nics=nics,
    )


FILES = HostFiles(kernel="/pool/img-k-kernel", initrd="/pool/img-i-initrd",
                  overlay="/pool/duo-violin-root.qcow2", config_disk="/pool/duo-violin-config.img",
                  serial_log="/pool/duo-violin-serial.log")


def test_libvirt_domain_xml(tmp_path: Path) -> None:
    nic = NicSpec("violin", "vioif0", "52:54:00:01:02:03", 1280, 0, "udp", 41000, 41001)
    root = ET.fromstring(domain_xml(spec(tmp_path, [nic]), FILES))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "vrlab-duo-violin"
    assert root.findtext("os/kernel") == "/pool/img-k-kernel"
    assert root.findtext("os/cmdline") == "console=ttyS0 q no_timer_check"
    disks = root.findall("devices/disk")
    assert [d.find("source").get("file") for d in disks] == [  # type: ignore[union-attr]
        "/pool/duo-violin-root.qcow2", "/pool/duo-violin-config.img"]
    assert disks[1].find("readonly") is not None
    iface = root.find("devices/interface")
    assert iface is not None and iface.get("type") == "udp"
    source = iface.find("source")
    assert source is not None and source.get("port") == "41001"
    assert source.get("address") == "127.0.0.1"
    local = iface.find("source/local")
    assert local is not None and (local.get("address"), local.get("port")) == ("127.0.0.1",
                                                                                 "41000")
    args = [a.get("value") for a in root.iter(f"{QEMU_NS}arg")]
    netdev = args[args.index("-netdev") + 1]
    assert netdev is not None and "restrict=on" in netdev
    assert "hostfwd=tcp:127.0.0.1:42022-" in netdev
    mtu = root.find(f"{QEMU_NS}override/{QEMU_NS}device/{QEMU_NS}frontend/{QEMU_NS}property")
    assert mtu is not None and (mtu.get("name"), mtu.get("value")) == ("host_mtu", "1280")
    serial = root.find("devices/serial")
    assert serial is not None and serial.get("type") == "pty"
    assert serial.find("log").get("file") == "/pool/duo-violin-serial.log"  # type: ignore[union-attr]


def test_libvirt_crossing_udp_link_and_lan_segment(tmp_path: Path) -> None:
    """A UDP link between two hosts' tunnel addresses; a LAN NIC on the segment's network."""
    udp = NicSpec("violin", "eth1", "52:54:00:01:02:03", 1500, 0, "udp", 41000, 41001,
                  local_address="203.0.113.11", remote_address="203.0.113.12")
    lan = NicSpec("violin", "eth2", "52:54:00:01:02:04", 1400, 3, "lan", netns="n",
                  bridge="br3", tap="t3p0")
    root = ET.fromstring(domain_xml(spec(tmp_path, [udp, lan]), FILES))
    first, second = root.findall("devices/interface")
    assert first.find("source").get("address") == "203.0.113.12"  # type: ignore[union-attr]
    assert first.find("source/local").get("address") == "203.0.113.11"  # type: ignore[union-attr]
    assert second.get("type") == "network"
    assert second.find("source").get("network") == "vrlab-duo-seg3"  # type: ignore[union-attr]
    assert second.find("mtu").get("size") == "1400"  # type: ignore[union-attr]
    # host_mtu overrides only for the udp NIC (the network NIC has <mtu>)
    assert len(root.findall(f"{QEMU_NS}override/{QEMU_NS}device")) == 1


def test_libvirt_refuses_unlinked_interfaces(tmp_path: Path) -> None:
    nic = NicSpec("violin", "eth1", "52:54:00:01:02:03", 1500, -1, "none")
    with pytest.raises(BackendError, match="on no link"):
        domain_xml(spec(tmp_path, [nic]), FILES)


def test_count_pcap_packets(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    frame = b"\x00" * 60
    record = struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame
    path.write_bytes(header + record * 3 + record[:20])  # the last one is still being written
    assert count_pcap_packets(path) == 3
    assert count_pcap_packets(tmp_path / "missing.pcap") == 0


def test_resolve_lab_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VRLAB_HOME", str(tmp_path))
    with pytest.raises(LabError, match="no lab is up"):
        resolve_lab_name(None)
    Record.create(tmp_path / "labs" / "one" / "record.json", "one")
    assert resolve_lab_name(None) == "one"
    Record.create(tmp_path / "labs" / "two" / "record.json", "two")
    with pytest.raises(LabError, match="several"):
        resolve_lab_name(None)
    topo = tmp_path / "file.yaml"
    topo.write_text("name: fromfile\nnodes: {}\n")
    assert resolve_lab_name(str(topo)) == "fromfile"
    assert Lab.names() == ["one", "two"]


def test_exec_options_after_the_node() -> None:
    args = build_parser().parse_args(["exec", "r1", "--lab", "x", "--", "sh", "-c", "exit 3"])
    assert nodes_and_command(args) == (["r1"], ["sh", "-c", "exit 3"])
    assert args.lab == "x"
    args = build_parser().parse_args(["exec", "r1", "uptime"])
    assert nodes_and_command(args) == (["r1"], ["uptime"])
