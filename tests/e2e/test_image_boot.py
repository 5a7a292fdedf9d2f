"""The image boots: one VM of each role, straight from qemu-system-x86_64 (no lab), under TCG.

Each VM gets a config disk from orchestrate.nodeconfig; the tests log in with paramiko against
the pinned host key and check what the image's init did: names, addresses, sysctls, sshd,
the appliance on routers, orphans reaped by PID 1, the readiness markers on the serial console,
and `poweroff` ending QEMU. Every VM is killed at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate import images
from orchestrate.backends.qemu import StandaloneVM, boot_standalone, standalone_keys
from orchestrate.nodeconfig import DataInterface, KernelRoute, NodeBootSpec

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs QEMU"),
]

BOOT_TIMEOUT = 180.0  # TCG on a loaded 2-core machine; typically well under 20 s


@pytest.fixture(scope="module")
def image() -> images.ImageInfo:
    cached = images.find_image(images.compute_digest())
    if cached is not None:
        return cached
    if os.geteuid() != 0:
        pytest.skip("no cached image, and building one needs root (`sudo vrlab image build`)")
    return images.ensure_image(progress=False)


class Booted:
    """A running standalone VM and a logged-in SSH client."""

    def __init__(self, vm: StandaloneVM, client: Any, spec: NodeBootSpec) -> None:
        self.vm, self.client, self.spec = vm, client, spec
        self.console = vm.spec.serial_socket

    def run(self, command: str) -> str:
        # Read to EOF before asking for the exit status: sshd may send the status before the
        # last of the output.
        _, stdout, stderr = self.client.exec_command(command, timeout=60)
        out = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
        status = stdout.channel.recv_exit_status()
        assert status == 0, f"`{command}` exited {status}: {out}{err}"
        return out


def boot(image: images.ImageInfo, workdir: Path, role: str) -> Iterator[Booted]:
    client_line, host_private, host_public = standalone_keys(workdir)
    if role == "host":
        # "eth0" is the kernel's name for the management NIC until the init renames it: the
        # two-step rename must still give it to this data NIC.
        interfaces = (
            DataInterface("eth0", "52:54:00:e2:01:01", ("198.51.100.2/26", "2001:db8:1::2/64"),
                          1400),
            DataInterface("h1-lan", "52:54:00:e2:01:02", ("192.0.2.10/28",)),
        )
        spec = NodeBootSpec(
            hostname="h1", role="host", mgmt_mac="52:54:00:e2:00:01",
            authorized_keys=(client_line,), host_key_private=host_private,
            host_key_public=host_public, interfaces=interfaces,
            routes=(KernelRoute("0.0.0.0/0", via="198.51.100.1"),
                    KernelRoute("2001:db8:9::/48", via="fe80::1%eth0")),
        )
    else:
        interfaces = (DataInterface("r1-h1", "52:54:00:e2:02:01", mtu=1500),
                      DataInterface("r1-h2", "52:54:00:e2:02:02"))
        spec = NodeBootSpec(
            hostname="r1", role="router", mgmt_mac="52:54:00:e2:00:02",
            authorized_keys=(client_line,), host_key_private=host_private,
            host_key_public=host_public, interfaces=interfaces,
            router_config={"hostname": "r1", "interfaces": [
                {"name": "r1-h1", "addresses": ["198.51.100.1/26", "2001:db8:1::1/64"]},
                {"name": "r1-h2", "addresses": ["198.51.100.65/26"]}]},
        )
    # Each data NIC on an empty QEMU hub: the NIC exists in the guest, and frames go nowhere.
    nics = tuple((iface.mac, iface.mtu or 1500) for iface in interfaces)
    with boot_standalone(image, spec, workdir, data_nics=nics) as vm:
        vm.wait_marker("ssh up", BOOT_TIMEOUT)
        client = vm.connect(timeout=BOOT_TIMEOUT)
        try:
            yield Booted(vm, client, spec)
        finally:
            client.close()


@pytest.fixture(scope="module")
def host_vm(image: images.ImageInfo, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[Booted]:
    yield from boot(image, tmp_path_factory.mktemp("host"), "host")


@pytest.fixture(scope="module")
def router_vm(image: images.ImageInfo, tmp_path_factory: pytest.TempPathFactory,
              ) -> Iterator[Booted]:
    yield from boot(image, tmp_path_factory.mktemp("router"), "router")


def addresses(node: Booted, ifname: str) -> set[str]:
    data = json.loads(node.run(f"ip -j address show dev {ifname}"))
    return {f"{a['local']}/{a['prefixlen']}" for a in data[0].get("addr_info", [])}


def test_host_comes_up_with_its_identity_and_addresses(host_vm: Booted) -> None:
    assert host_vm.run("hostname").strip() == "h1"
    assert addresses(host_vm, "mgmt0") == {"203.0.113.254/29"}
    eth0 = addresses(host_vm, "eth0")
    assert {"198.51.100.2/26", "2001:db8:1::2/64"} <= eth0
    assert addresses(host_vm, "h1-lan") == {"192.0.2.10/28"} | {
        a for a in addresses(host_vm, "h1-lan") if a.startswith("fe80:")}
    links = {link["ifname"]: link for link in json.loads(host_vm.run("ip -j link show"))}
    assert links["eth0"]["address"] == "52:54:00:e2:01:01"
    assert links["eth0"]["mtu"] == 1400
    assert links["mgmt0"]["address"] == "52:54:00:e2:00:01"
    assert not [name for name in links if name.startswith("vrlabtmp")]
    routes = host_vm.run("ip route show default; ip -6 route show 2001:db8:9::/48")
    assert "default via 198.51.100.1 dev eth0" in routes
    assert "2001:db8:9::/48 via fe80::1 dev eth0" in routes
    assert host_vm.run("cat /proc/sys/net/ipv6/conf/eth0/accept_dad").strip() == "0"
    # No DAD: the address is usable at once, never "tentative".
    assert "tentative" not in host_vm.run("ip -6 address show dev eth0")


def test_host_serial_console_has_the_readiness_markers(host_vm: Booted) -> None:
    stages = [m.stage for m in host_vm.vm.markers()]
    assert stages[:4] == ["init start", "network up", "ssh up", "ready"]
    uptimes = [m.uptime for m in host_vm.vm.markers()[:4]]
    assert all(t is not None for t in uptimes)
    assert uptimes == sorted(uptimes)  # type: ignore[type-var]


def test_sshd_serves_the_pinned_host_key_and_only_keys(host_vm: Booted) -> None:
    served = host_vm.client.get_transport().get_remote_server_key()
    assert f"{served.get_name()} {served.get_base64()}" == \
        " ".join(host_vm.spec.host_key_public.split()[:2])
    config = host_vm.run("/usr/sbin/sshd -T")
    assert "passwordauthentication no" in config
    assert "permitrootlogin without-password" in config


def test_pid1_reaps_orphans(host_vm: Booted) -> None:
    # The subshell exits at once; its sleeps are re-parented to PID 1 and must be reaped
    # when they end, not left as zombies.
    host_vm.run("setsid sh -c 'sleep 0.2 & sleep 0.3 & exit 0'")
    zombies = ""
    for _ in range(50):
        time.sleep(0.2)
        zombies = host_vm.run("ps -eo stat=,ppid=,comm= | awk '$1 ~ /^Z/ && $2 == 1'")
        sleeping = host_vm.run("ps -eo ppid=,comm= | awk '$1 == 1 && $2 == \"sleep\"'")
        if not sleeping.strip() and not zombies.strip():
            break
    assert zombies.strip() == ""
    assert host_vm.run("ps -o comm= -p 1").strip() == "vrlab-init"


def test_router_runs_the_appliance_and_the_kernel_stays_off(router_vm: Booted) -> None:
    assert router_vm.run("hostname").strip() == "r1"
    router_vm.vm.wait_marker("ready", BOOT_TIMEOUT)
    stages = [m.stage for m in router_vm.vm.markers()]
    assert "router up" in stages, router_vm.run("cat /var/log/vrlab-router.log")
    for ifname in ("r1-h1", "r1-h2"):
        assert addresses(router_vm, ifname) == set()  # no kernel addresses, not even fe80::
        assert router_vm.run(f"cat /proc/sys/net/ipv6/conf/{ifname}/disable_ipv6").strip() \
            == "1"
        assert router_vm.run(f"cat /proc/sys/net/ipv4/conf/{ifname}/arp_ignore").strip() == "8"
    assert router_vm.run("cat /proc/sys/net/ipv4/ip_forward").strip() == "0"
    shown = json.loads(router_vm.run("routerctl show interfaces --json"))
    text = json.dumps(shown)
    assert "r1-h1" in text and "198.51.100.1" in text and "198.51.100.65" in text
    assert router_vm.run("readlink -f /etc/vrlab/router.yaml").strip() == \
        "/etc/vrlab/node/router.yaml"


def test_serial_console_gives_a_root_shell_on_enter(host_vm: Booted) -> None:
    assert "press Enter for a root shell" in host_vm.vm.serial_text()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as console:
        console.connect(str(host_vm.console))
        console.sendall(b"\r")
        time.sleep(1.0)
        console.sendall(b"echo console-$((6 * 7)) $(id -u) $(hostname)\r")
        host_vm.vm.wait_for(lambda: "console-42 0 h1" in host_vm.vm.serial_text(), 60.0,
                            "the console shell's answer", interval=0.2)


def test_poweroff_ends_the_vm(host_vm: Booted) -> None:
    # Last in this file: it stops the module's host VM.
    channel = host_vm.client.get_transport().open_session(timeout=30)
    channel.exec_command("poweroff")
    elapsed = host_vm.vm.wait_for(lambda: host_vm.vm.process.poll() is not None, 60.0,
                                  "QEMU to exit after poweroff", interval=0.2)
    assert elapsed > 0
    assert any(m.stage == "shutdown" for m in host_vm.vm.markers())
