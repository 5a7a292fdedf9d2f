"""Link planning (UDP pairs, LAN segments, MACs, MTUs) and the QEMU command line it yields."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrate import links
from orchestrate.accel import TCG_TB_MIB_BY_ROLE, AccelError, choose_accel, qemu_accel_args
from orchestrate.backends import NodeSpec
from orchestrate.backends.qemu import build_argv
from orchestrate.lab import management_netdev, run_dir_for
from orchestrate.topology import Topology, load_topology

TOPO = """\
    name: mix
    nodes:
      h1: {role: host, interfaces: [{name: eth1}]}
      r1: {role: router, interfaces: [{name: r1-h1}, {name: r1-lan}]}
      r2: {role: router, interfaces: [{name: r2-lan, mtu: 9000}]}
      h2: {role: host, interfaces: [{name: eth1}]}
    links:
      - {endpoints: [h1:eth1, r1:r1-h1], mtu: 1280}
      - {endpoints: [r1:r1-lan, r2:r2-lan, h2:eth1]}
    """


@pytest.fixture
def topology(tmp_path: Path) -> Topology:
    path = tmp_path / "mix.yaml"
    path.write_text(textwrap.dedent(TOPO))
    return load_topology(path)


def plan(topology: Topology) -> dict[str, list[links.NicSpec]]:
    purposes = links.udp_purposes(topology)
    ports = {purpose: 41000 + i for i, purpose in enumerate(purposes)}
    return links.plan_nics(topology, "mix", ports, links.MacAllocator("mix"))


def test_point_to_point_is_a_crossed_udp_pair(topology: Topology) -> None:
    nics = plan(topology)
    h1, r1 = nics["h1"][0], nics["r1"][0]
    assert (h1.kind, r1.kind) == ("udp", "udp")
    assert h1.local_port == r1.remote_port and r1.local_port == h1.remote_port
    assert h1.local_port != r1.local_port
    assert h1.mtu == r1.mtu == 1280


def test_lan_segment_is_one_bridge_in_the_lab_namespace(topology: Topology) -> None:
    nics = plan(topology)
    lan = [nics["r1"][1], nics["r2"][0], nics["h2"][0]]
    assert {n.kind for n in lan} == {"lan"}
    assert {n.netns for n in lan} == {"vrlab-mix"}
    assert len({n.bridge for n in lan}) == 1
    assert len({n.tap for n in lan}) == 3
    assert all(n.tap and len(n.tap) <= 15 for n in lan)
    assert links.lan_bridges(lan) == {"br1": 9000}  # the bridge takes the largest MTU


def test_nics_follow_the_node_interface_order(topology: Topology) -> None:
    r1 = plan(topology)["r1"]
    assert [n.ifname for n in r1] == ["r1-h1", "r1-lan"]


def test_macs_are_deterministic_unique_and_locally_administered(topology: Topology) -> None:
    first = plan(topology)
    again = plan(topology)
    macs = [n.mac for nics in first.values() for n in nics]
    assert macs == [n.mac for nics in again.values() for n in nics]
    assert len(set(macs)) == len(macs)
    assert all(int(mac[:2], 16) & 0x02 and not int(mac[:2], 16) & 0x01 for mac in macs)
    other = links.MacAllocator("other-lab").mac("h1", "eth1")
    assert other != first["h1"][0].mac


def test_mac_allocator_rehashes_collisions() -> None:
    allocator = links.MacAllocator("lab")
    allocator.used.add(links.mac_address("lab", "n", "i"))
    assert allocator.mac("n", "i") == links.mac_address("lab", "n", "i", 1)


def spec_for(topology: Topology, node: str, tmp_path: Path) -> NodeSpec:
    return NodeSpec(
        lab="mix", name=node, role="router", memory=256, cpus=1, accel="tcg",
        kernel=Path("/k"), initrd=Path("/i"), cmdline="console=ttyS0",
        overlay=tmp_path / "root.qcow2", config_disk=tmp_path / "config.img",
        mgmt_mac="52:54:00:aa:bb:cc", ssh_port=42022, mgmt_netdev=management_netdev(42022),
        node_dir=tmp_path, run_dir=tmp_path / "run", nics=plan(topology)[node],
    )


def test_qemu_command_line(topology: Topology, tmp_path: Path) -> None:
    spec = spec_for(topology, "r1", tmp_path)
    argv = build_argv(spec, {"r1-lan": 7})
    joined = " ".join(argv)
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives[0].startswith(f"file={spec.overlay},") and "format=qcow2" in drives[0]
    assert drives[1].startswith(f"file={spec.config_disk},") and "readonly=on" in drives[1]
    netdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
    assert netdevs[0].startswith("user,id=mgmt,")
    assert "restrict=on" in netdevs[0]
    assert "hostfwd=tcp:127.0.0.1:42022-" in netdevs[0] and netdevs[0].endswith(":22")
    assert netdevs[1].startswith("socket,id=data0,udp=127.0.0.1:")
    assert "localaddr=127.0.0.1:" in netdevs[1]
    assert netdevs[2] == "tap,id=data1,fd=7,vhost=off"
    assert len(netdevs) == 3
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert devices[0] == "virtio-net-pci,netdev=mgmt,mac=52:54:00:aa:bb:cc"  # management first
    assert "host_mtu=1280" in devices[1]
    assert f"logfile={spec.serial_log}" in joined
    assert f"unix:{spec.qmp_socket},server=on,wait=off" in joined
    # The translation cache is sized per role (orchestrate.accel.TCG_TB_MIB_BY_ROLE).
    assert f"tcg,thread=multi,tb-size={TCG_TB_MIB_BY_ROLE[spec.role]}" in argv
    # QEMU's max CPU without ERMS/FSRM: TCG runs rep movsb a byte per step (accel.TCG_CPU).
    assert argv[argv.index("-cpu") + 1] == "max,-erms,-fsrm"


def test_lan_nic_without_fd_is_an_error(topology: Topology, tmp_path: Path) -> None:
    from orchestrate.backends import BackendError

    with pytest.raises(BackendError):
        build_argv(spec_for(topology, "r1", tmp_path))


def test_run_dir_stays_short(tmp_path: Path) -> None:
    assert run_dir_for(Path("/root/.local/share/vrlab/labs/x")) == \
        Path("/root/.local/share/vrlab/labs/x/run")
    long = Path("/tmp/" + "d" * 120 + "/labs/x")
    short = run_dir_for(long)
    assert len(str(short)) < 40 and short == run_dir_for(long)


def test_accel_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VRLAB_HOME", str(tmp_path))
    monkeypatch.delenv("VRLAB_ACCEL", raising=False)
    assert qemu_accel_args("tcg")[:2] == ["-accel", "tcg,thread=multi,tb-size=32"]
    assert qemu_accel_args("tcg")[2:] == ["-cpu", "max,-erms,-fsrm"]
    assert choose_accel("tcg").name == "tcg"
    missing = tmp_path / "no-kvm"
    auto = choose_accel("auto", device=missing)
    assert auto.name == "tcg" and "no-kvm" in auto.reason
    with pytest.raises(AccelError):
        choose_accel("kvm", device=missing)
    monkeypatch.setenv("VRLAB_ACCEL", "tcg")
    assert choose_accel("auto").reason == "requested"
    with pytest.raises(AccelError):
        choose_accel("hvf")
