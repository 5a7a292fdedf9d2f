"""Inventory, placement and the plan of links across hosts (no libvirt, no root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrate import multihost
from orchestrate.hosts import (
    QEMU_OVERHEAD_MIB,
    Capacity,
    Demand,
    Host,
    PlacementError,
    host_capacity,
    load_inventory,
    place,
)
from orchestrate.links import NicSpec
from orchestrate.ssh import write_ssh_config
from orchestrate.topology import TopologyError

ALPHA = Host("alpha", "qemu+tcp://203.0.113.11/system", "203.0.113.11", netns="vrsim-alpha")
BETA = Host("beta", "qemu+tcp://203.0.113.12/system", "203.0.113.12", netns="vrsim-beta")
HOSTS = {"alpha": ALPHA, "beta": BETA}


def test_capacity_from_libvirt_with_reserve_overcommit_and_caps() -> None:
    info = ["x86_64", 24105, 2, 2599, 1, 1, 2, 1]
    free = 22_000 * 1024 * 1024
    assert host_capacity(ALPHA, info, free) == Capacity(22_000 - 1024, 16)
    capped = Host("alpha", ALPHA.uri, ALPHA.tunnel, memory=4096, vcpus=3)
    assert host_capacity(capped, info, free) == Capacity(4096, 3)


def test_placement_spreads_largest_first_and_honours_pins() -> None:
    demands = {"r1": Demand(512, 1), "h1": Demand(256, 1), "h2": Demand(256, 1),
               "h3": Demand(256, 1, pin="alpha")}
    placed = place(demands, {"alpha": Capacity(4096, 16), "beta": Capacity(4096, 16)})
    assert placed["h3"] == "alpha"
    assert placed["r1"] == "beta"  # alpha already holds the pinned h3
    assert sorted(placed.values()).count("alpha") == 2


def test_placement_packs_by_vcpus_too() -> None:
    demands = {"a": Demand(256, 2), "b": Demand(256, 2)}
    placed = place(demands, {"alpha": Capacity(8192, 2), "beta": Capacity(1024, 2)})
    assert placed == {"a": "alpha", "b": "beta"}  # alpha has the memory, not the vCPUs


def test_placement_refuses_what_does_not_fit_naming_every_node() -> None:
    demands = {"big": Demand(4096, 1), "huge": Demand(8192, 1), "small": Demand(256, 1)}
    with pytest.raises(PlacementError) as info:
        place(demands, {"alpha": Capacity(4500, 8), "beta": Capacity(1000, 8)})
    message = str(info.value)
    assert "huge (needs 8256 MiB" in message and "big" not in message.split("(left")[0]
    assert "alpha" in message and "beta" in message
    with pytest.raises(PlacementError, match="pinned to host 'gamma'"):
        place({"a": Demand(256, 1, pin="gamma")}, {"alpha": Capacity(4096, 8)})
    with pytest.raises(PlacementError, match="pinned to beta"):
        place({"a": Demand(2048, 1, pin="beta")},
              {"alpha": Capacity(8192, 8), "beta": Capacity(2048 + QEMU_OVERHEAD_MIB - 1, 8)})


def test_inventory_file_is_validated_and_placed(tmp_path: Path) -> None:
    good = tmp_path / "hosts.yaml"
    good.write_text("hosts:\n  alpha: {uri: \"qemu+ssh://root@alpha/system\", "
                    "tunnel: 198.51.100.10, memory: 32G}\n")
    assert load_inventory(str(good)) == {
        "alpha": Host("alpha", "qemu+ssh://root@alpha/system", "198.51.100.10", memory=32768)}
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts:\n  alpha: {uri: qemu, tunnel: 198.51.100.300}\nextra: 1\n")
    with pytest.raises(TopologyError) as info:
        load_inventory(str(bad))
    assert [str(p).split(": ", 1)[0] for p in info.value.problems] == [
        f"{bad}:2:16", f"{bad}:2:30", f"{bad}:3:1"]


def nic(node: str, ifname: str, link: int, kind: str = "udp", mtu: int = 1500,
        ports: tuple[int | None, int | None] = (None, None)) -> NicSpec:
    return NicSpec(node, ifname, "52:54:00:00:00:01", mtu, link, kind,  # type: ignore[arg-type]
                   local_port=ports[0], remote_port=ports[1])


def test_route_links_uses_tunnel_addresses_only_across_hosts() -> None:
    nics = {
        "r1": [nic("r1", "a", 0, ports=(40000, 40001)), nic("r1", "b", 1, ports=(40002, 40003)),
               nic("r1", "c", 2, "lan")],
        "h1": [nic("h1", "eth1", 0, ports=(40001, 40000))],
        "h2": [nic("h2", "eth1", 1, ports=(40003, 40002)), nic("h2", "eth2", 2, "lan")],
        "h3": [nic("h3", "eth1", 2, "lan", mtu=9000)],
    }
    placement = {"r1": "alpha", "h1": "beta", "h2": "alpha", "h3": "beta"}
    routed = multihost.route_links(nics, placement, HOSTS)
    assert (routed["r1"][0].local_address, routed["r1"][0].remote_address) == (
        "203.0.113.11", "203.0.113.12")
    assert (routed["h1"][0].local_address, routed["h1"][0].remote_address) == (
        "203.0.113.12", "203.0.113.11")
    assert routed["r1"][1].remote_address == "127.0.0.1"  # r1-h2: same host
    segments = multihost.lan_segments(routed, placement)
    assert segments == [multihost.Segment(2, 9000, ("alpha", "beta"))]
    largest = multihost.crossing_frames(routed, placement, HOSTS)
    # VXLAN over IPv4: 9000 + 14 (inner Ethernet) + 8 (VXLAN) + 8 (UDP) + 20 (IP)
    assert largest["beta"] == (9050, "LAN segment links[2] (mtu 9000, VXLAN)")
    six = Host("six", "qemu+tcp://[2001:db8::1]/system", "2001:db8::1")
    assert multihost.udp_link_overhead(six.tunnel) == 14 + 8 + 40


def test_lan_segment_names_fit_linux_and_vnis_differ() -> None:
    lab = "a-very-long-lab-name-that-goes-on"
    assert len(multihost.bridge_name(lab, 99)) <= 15
    assert len(multihost.vxlan_name(lab, 99)) <= 15
    assert multihost.bridge_name(lab, 1) != multihost.bridge_name("other", 1)
    vnis = {multihost.vni(lab, link) for link in range(50)}
    assert len(vnis) == 50 and all(0 < v < 2**24 for v in vnis)


def test_real_remote_host_is_refused_where_the_kernel_is_needed() -> None:
    remote = Host("far", "qemu+ssh://root@far/system", "198.51.100.10")
    with pytest.raises(multihost.MultiHostError, match="host far: a LAN segment"):
        multihost.create_vxlan(remote, "vx0", 1, "br0", [], 1500)
    with pytest.raises(multihost.MultiHostError, match="management forward"):
        multihost.proxy_command(remote)


def test_ssh_config_reaches_a_node_through_its_host(tmp_path: Path) -> None:
    path = tmp_path / "ssh_config"
    write_ssh_config(path, "lab", tmp_path / "key", tmp_path / "known_hosts",
                     {"h1": 40010, "h2": 40011},
                     proxies={"h1": multihost.proxy_command(ALPHA)})
    blocks = path.read_text().split("Host ")
    h1 = next(b for b in blocks if b.startswith("h1"))
    h2 = next(b for b in blocks if b.startswith("h2"))
    assert "ProxyCommand ip netns exec vrsim-alpha nc 127.0.0.1 %p" in h1
    assert "StrictHostKeyChecking yes" in h1
    assert "ProxyCommand" not in h2


def test_a_host_reached_over_ssh(tmp_path: Path) -> None:
    far = Host("far", "qemu+ssh://root@far/system", "198.51.100.10", ssh="root@far",
               ssh_key="/keys/id", known_hosts="/keys/known")
    command = multihost.proxy_command(far)
    assert command.startswith("ssh ") and command.endswith("-W 127.0.0.1:%p root@far")
    assert "StrictHostKeyChecking=yes" in command and "UserKnownHostsFile=/keys/known" in command
    assert "-i /keys/id" in command
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("hosts:\n  far: {uri: \"qemu+ssh://root@far/system\", "
                         "tunnel: 198.51.100.10, ssh: root@far, netns: x}\n"
                         "  near: {uri: \"qemu+ssh://root@near/system\", "
                         "tunnel: 198.51.100.11, ssh: \"near; rm -rf /\"}\n")
    with pytest.raises(TopologyError) as info:
        load_inventory(str(inventory))
    assert [p.message for p in info.value.problems] == [
        "a host is reached by ssh: or is a netns:, not both",
        "ssh must be user@host, got 'near; rm -rf /'"]
