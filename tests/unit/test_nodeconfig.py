"""The per-node config disk: what the image's init will read, rendered and written on the host."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrate import nodeconfig
from orchestrate.nodeconfig import (
    DataInterface,
    KernelRoute,
    NodeBootSpec,
    NodeConfigError,
    render_files,
    write_config_disk,
)
from orchestrate.topology import Node, NodeInterface, Route

PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey h1@vrlab"
CLIENT = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClient vrlab-lab"


def host_spec(**changes: object) -> NodeBootSpec:
    base: dict[str, object] = dict(
        hostname="h1", role="host", mgmt_mac="52:54:00:AA:00:01",
        authorized_keys=(CLIENT,), host_key_private=PRIVATE, host_key_public=PUBLIC,
        interfaces=(
            DataInterface("eth1", "52:54:00:aa:01:01", ("198.51.100.2/26", "2001:db8:1::2/64"),
                          1400),
            DataInterface("eth2", "52:54:00:aa:01:02"),
        ),
        routes=(
            KernelRoute("0.0.0.0/0", via="198.51.100.1"),
            KernelRoute("2001:db8:9::/48", via="fe80::1%eth1"),
            KernelRoute("192.0.2.0/26", dev="eth2"),
            KernelRoute("192.0.2.64/26", type="blackhole"),
            KernelRoute("192.0.2.128/26", type="reject"),
        ),
    )
    base.update(changes)
    return NodeBootSpec(**base)  # type: ignore[arg-type]


def router_spec(**changes: object) -> NodeBootSpec:
    base: dict[str, object] = dict(
        hostname="r1", role="router", mgmt_mac="52:54:00:bb:00:01",
        authorized_keys=(CLIENT,), host_key_private=PRIVATE, host_key_public=PUBLIC,
        interfaces=(DataInterface("r1-h1", "52:54:00:bb:01:01", mtu=1500),
                    DataInterface("r1-h2", "52:54:00:bb:01:02")),
        router_config={"hostname": "r1", "interfaces": [
            {"name": "r1-h1", "addresses": ["198.51.100.1/26"]},
            {"name": "r1-h2", "addresses": ["198.51.100.65/26", "2001:db8:2::1/64"]}]},
    )
    base.update(changes)
    return NodeBootSpec(**base)  # type: ignore[arg-type]


def test_host_files() -> None:
    files = render_files(host_spec())
    assert files["format"] == "vrlab-config 1\n"
    assert files["hostname"] == "h1\n"
    assert files["role"] == "host\n"
    # Management first, MACs lower-cased, "-" for an unset MTU.
    assert files["interfaces"].splitlines() == [
        "52:54:00:aa:00:01 mgmt0 -",
        "52:54:00:aa:01:01 eth1 1400",
        "52:54:00:aa:01:02 eth2 -",
    ]
    batch = files["net.batch"].splitlines()
    assert batch[:3] == ["link set dev lo up", "address add 203.0.113.254/29 dev mgmt0",
                         "link set dev mgmt0 up"]
    assert "link set dev eth1 mtu 1400 up" in batch
    assert "link set dev eth2 up" in batch
    assert "address add 198.51.100.2/26 dev eth1" in batch
    assert "address add 2001:db8:1::2/64 dev eth1 nodad" in batch
    assert "route add 0.0.0.0/0 via 198.51.100.1" in batch
    assert "route add 2001:db8:9::/48 via fe80::1 dev eth1" in batch
    assert "route add 192.0.2.0/26 dev eth2" in batch
    assert "route add blackhole 192.0.2.64/26" in batch
    assert "route add prohibit 192.0.2.128/26" in batch
    # Every address before any route: a gateway must be on-link when its route is added.
    last_address = max(i for i, line in enumerate(batch) if line.startswith("address add"))
    first_route = min(i for i, line in enumerate(batch) if line.startswith("route add"))
    assert last_address < first_route
    sysctl = dict(line.split() for line in files["sysctl"].splitlines())
    assert sysctl["net/ipv6/conf/mgmt0/disable_ipv6"] == "1"
    assert sysctl["net/ipv6/conf/eth1/accept_dad"] == "0"
    assert sysctl["net/ipv6/conf/all/accept_dad"] == "0"
    assert "net/ipv4/ip_forward" not in sysctl
    assert files["authorized_keys"] == CLIENT + "\n"
    assert files["ssh_host_key"] == PRIVATE
    assert files["ssh_host_key.pub"] == PUBLIC + "\n"
    assert "router.yaml" not in files
    assert "PRIVATE KEY" not in files["node.json"]


def test_router_files_keep_the_kernel_off_the_data_interfaces() -> None:
    files = render_files(router_spec())
    batch = files["net.batch"].splitlines()
    assert "link set dev r1-h1 mtu 1500 up" in batch
    assert "link set dev r1-h2 up" in batch
    data_addresses = [line for line in batch
                      if line.startswith("address add") and "mgmt0" not in line]
    assert data_addresses == []
    assert not any(line.startswith("route") for line in batch)
    sysctl = dict(line.split() for line in files["sysctl"].splitlines())
    assert sysctl["net/ipv4/ip_forward"] == "0"
    assert sysctl["net/ipv6/conf/all/forwarding"] == "0"
    for name in ("r1-h1", "r1-h2"):
        assert sysctl[f"net/ipv6/conf/{name}/disable_ipv6"] == "1"
        assert sysctl[f"net/ipv4/conf/{name}/arp_ignore"] == "8"
    assert yaml.safe_load(files["router.yaml"]) == router_spec().router_config


def test_extra_sysctls_become_proc_paths() -> None:
    files = render_files(host_spec(sysctls={"net.ipv4.tcp_syncookies": 0,
                                            "net/ipv4/conf/eth1.10/rp_filter": 2}))
    sysctl = dict(line.split() for line in files["sysctl"].splitlines())
    assert sysctl["net/ipv4/tcp_syncookies"] == "0"
    assert sysctl["net/ipv4/conf/eth1.10/rp_filter"] == "2"  # slashes kept: names with dots


@pytest.mark.parametrize(("spec", "message"), [
    (lambda: host_spec(hostname="../h1"), "hostname"),
    (lambda: host_spec(role="switch"), "role"),
    (lambda: host_spec(mgmt_mac="52:54:00:aa:00"), "mgmt_mac"),
    (lambda: host_spec(interfaces=(DataInterface("mgmt0", "52:54:00:aa:01:01"),)),
     "not a usable interface name"),
    (lambda: host_spec(interfaces=(DataInterface("eth1", "52:54:00:aa:00:01"),), routes=()),
     "used twice"),
    (lambda: host_spec(interfaces=(DataInterface("eth1", "52:54:00:aa:01:01", ("10.0.0.300/8",)),),
                       routes=()), "eth1"),
    (lambda: host_spec(routes=(KernelRoute("192.0.2.0/24", dev="eth9"),)), "no interface"),
    (lambda: host_spec(routes=(KernelRoute("192.0.2.0/24"),)), "needs `via`"),
    (lambda: host_spec(sysctls={"net.ipv4.../x": 1}), "sysctl"),
    (lambda: host_spec(authorized_keys=()), "authorized_keys"),
    (lambda: router_spec(interfaces=(DataInterface("r1-h1", "52:54:00:bb:01:01",
                                                   ("198.51.100.1/26",)),)), "no kernel addresses"),
    (lambda: router_spec(router_config=None), "router_config"),
])
def test_invalid_specs_are_refused_with_the_field(spec: object, message: str) -> None:
    with pytest.raises(NodeConfigError, match=message):
        render_files(spec())  # type: ignore[operator]


def test_from_node_host_and_router() -> None:
    host = Node(
        name="h1", role="host",
        interfaces=[NodeInterface("eth1", [ipaddress.ip_interface("198.51.100.2/26")],
                                  link_local=ipaddress.IPv6Address("fe80::2"))],
        routes=[Route(ipaddress.ip_network("0.0.0.0/0"), via=ipaddress.ip_address("198.51.100.1"))],
    )
    spec = NodeBootSpec.from_node(
        host, mgmt_mac="52:54:00:00:00:01", interface_macs={"eth1": "52:54:00:00:01:01"},
        interface_mtus={"eth1": 9000}, authorized_keys=[CLIENT],
        host_key_private=PRIVATE, host_key_public=PUBLIC)
    assert spec.interfaces == (DataInterface("eth1", "52:54:00:00:01:01",
                                             ("fe80::2/64", "198.51.100.2/26"), 9000),)
    assert spec.routes == (KernelRoute("0.0.0.0/0", via="198.51.100.1"),)
    files = render_files(spec)
    assert "net/ipv6/conf/eth1/addr_gen_mode 1" in files["sysctl"].splitlines()

    router = Node(name="r1", role="router",
                  interfaces=[NodeInterface("r1-h1", [ipaddress.ip_interface("198.51.100.1/26")],
                                            mtu=1400)],
                  sysctl={"net.inet.ip.redirect": 0})
    spec = NodeBootSpec.from_node(
        router, mgmt_mac="52:54:00:00:00:02", interface_macs={"r1-h1": "52:54:00:00:02:01"},
        interface_mtus={"r1-h1": 9000}, authorized_keys=[CLIENT],
        host_key_private=PRIVATE, host_key_public=PUBLIC)
    assert spec.interfaces == (DataInterface("r1-h1", "52:54:00:00:02:01", (), 1400),)
    assert spec.router_config == router.router_config()
    with pytest.raises(NodeConfigError, match="no MAC"):
        NodeBootSpec.from_node(router, mgmt_mac="52:54:00:00:00:02", interface_macs={},
                               authorized_keys=[CLIENT], host_key_private=PRIVATE,
                               host_key_public=PUBLIC)


def test_management_netdev() -> None:
    arg = nodeconfig.mgmt_netdev_arg(2222)
    assert arg.startswith("user,id=mgmt,restrict=on,")
    assert "net=203.0.113.248/29" in arg
    assert "hostfwd=tcp:127.0.0.1:2222-203.0.113.254:22" in arg
    assert nodeconfig.mgmt_device_arg("52:54:00:AA:00:01") == \
        "virtio-net-pci,netdev=mgmt,mac=52:54:00:aa:00:01"
    with pytest.raises(NodeConfigError):
        nodeconfig.mgmt_netdev_arg(0)


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no QEMU")
def test_qemu_accepts_the_management_netdev() -> None:
    # QEMU validates -netdev at start-up and exits 1 on a bad option; `quit` ends it cleanly.
    result = subprocess.run(
        ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S",
         "-monitor", "stdio", "-netdev", nodeconfig.mgmt_netdev_arg(2222)],
        input="quit\n", capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def _debugfs(disk: Path, command: str) -> str:
    result = subprocess.run(["debugfs", "-R", command, str(disk)], capture_output=True,
                            text=True, check=True, timeout=30)
    return result.stdout


@pytest.mark.skipif(shutil.which("debugfs") is None, reason="no debugfs (e2fsprogs)")
def test_config_disk_holds_the_rendered_files(tmp_path: Path) -> None:
    spec = router_spec()
    disk = write_config_disk(spec, tmp_path / "node" / "config.img")
    assert disk == tmp_path / "node" / "config.img"
    assert disk.stat().st_size == nodeconfig.CONFIG_DISK_MIB << 20
    assert list(disk.parent.iterdir()) == [disk]  # no .partial left behind
    for name, text in render_files(spec).items():
        assert _debugfs(disk, f"cat /{name}") == text
    stat = _debugfs(disk, "stat /ssh_host_key")
    assert "Mode:  0600" in stat
    assert "User:     0" in _debugfs(disk, "stat /")
    # Written again (a second `up`), it is replaced, not appended to.
    write_config_disk(host_spec(), disk)
    assert _debugfs(disk, "cat /hostname") == "h1\n"
    assert "router.yaml" not in _debugfs(disk, "ls -l /")


def test_config_disk_refuses_a_bad_spec_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(NodeConfigError):
        write_config_disk(host_spec(hostname="-bad"), tmp_path / "config.img")
    assert list(tmp_path.iterdir()) == []
