"""One shared duo lab (violin <-> piano, qemu backend): SSH with pinned host keys, exec
pass-through, OpenSSH with the generated ssh_config, status, and a pcap of the seed's ping."""

from __future__ import annotations

import selectors
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrate import ssh
from orchestrate.lab import Lab

REPO = Path(__file__).resolve().parents[2]


def vrlab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrate", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_exec_passes_exit_status_stdout_and_stderr(duo_lab: Lab) -> None:
    result = duo_lab.node("violin").exec("echo out; echo err >&2; exit 7", timeout=30)
    assert (result.exit_status, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert duo_lab.node("piano").exec("hostname", timeout=30).stdout.strip() == "piano"


def test_vrlab_exec_cli_passes_status_through(duo_lab: Lab) -> None:
    proc = vrlab("exec", "violin", "--lab", duo_lab.name, "--", "sh", "-c",
                 "echo hello; echo oops >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "hello\n", "oops\n")


def test_vrlab_exec_several_nodes_prefix_lines_and_exit_with_the_highest(duo_lab: Lab
                                                                          ) -> None:
    proc = vrlab("exec", "violin,piano", "--lab", duo_lab.name, "--", "hostname")
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["piano  | piano", "violin | violin"]
    proc = vrlab("exec", "--all", "--lab", duo_lab.name, "--", "sh", "-c",
                 "test $(hostname) = piano || exit 4")
    assert (proc.returncode, proc.stdout) == (4, "")


def test_vrlab_exec_streams_output_while_the_command_runs(duo_lab: Lab) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "exec", "violin", "--lab", duo_lab.name, "--",
         "sh", "-c", "echo first; sleep 5; echo second"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=60), "no output within 60 s"
        first = proc.stdout.readline()
        still_running = proc.poll() is None
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first == "first\n" and still_running, "the first line came only at the end"
    assert (rest, proc.returncode) == ("second\n", 0), err


def test_openssh_with_the_generated_ssh_config(duo_lab: Lab) -> None:
    proc = subprocess.run(["ssh", "-F", str(duo_lab.ssh_config), "piano", "hostname"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout.strip()) == (0, "piano")


def test_a_wrong_pinned_host_key_is_refused(duo_lab: Lab, tmp_path: Path) -> None:
    port = duo_lab.spec("violin").ssh_port
    # piano's real host key pinned for violin's port: a real key, just not violin's.
    piano_key = (duo_lab.dir / "ssh" / "host_piano_ed25519.pub").read_text()
    wrong = tmp_path / "known_hosts"
    ssh.write_known_hosts(wrong, {port: piano_key})
    with pytest.raises(ssh.SshError, match="does not match"):
        ssh.connect(port, duo_lab.client_key, wrong)
    config = tmp_path / "ssh_config"
    ssh.write_ssh_config(config, duo_lab.name, duo_lab.client_key, wrong, {"violin": port})
    proc = subprocess.run(["ssh", "-F", str(config), "violin", "echo reached"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 255 and "reached" not in proc.stdout
    # ...while the lab's own known_hosts is accepted.
    ssh.connect(port, duo_lab.client_key, duo_lab.known_hosts).close()


def test_status_shows_nodes_running_with_ports(duo_lab: Lab) -> None:
    status = {node.name: node for node in duo_lab.status()}
    assert set(status) == {"violin", "piano"}
    assert {node.state for node in status.values()} == {"running"}
    assert status["violin"].ssh_port != status["piano"].ssh_port
    proc = vrlab("status", duo_lab.name, "--json")
    assert proc.returncode == 0
    assert f'"ssh_port": {status["piano"].ssh_port}' in proc.stdout


def test_capture_has_the_icmpv6_echo_exchange(duo_lab: Lab, tmp_path: Path) -> None:
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
    from scapy.utils import rdpcap

    violin_ll = duo_lab.node("violin").link_local("vioif0")
    piano_ll = duo_lab.node("piano").link_local("vioif0")
    with duo_lab.capture("piano", "vioif0", tmp_path / "piano.pcap") as pcap:
        result = duo_lab.node("violin").exec(f"ping -c 3 -W 2 {piano_ll}%vioif0", timeout=60)
        assert result.ok, result.stdout + result.stderr
    packets = rdpcap(str(pcap))
    requests = [p for p in packets if ICMPv6EchoRequest in p]
    replies = [p for p in packets if ICMPv6EchoReply in p]
    assert len(requests) == 3 and len(replies) == 3
    assert {(p[IPv6].src, p[IPv6].dst) for p in requests} == {(violin_ll, piano_ll)}
    assert {(p[IPv6].src, p[IPv6].dst) for p in replies} == {(piano_ll, violin_ll)}
    journaled = duo_lab.record.find("capture", "piano:vioif0")
    assert journaled is not None and journaled["state"] == "removed"


def test_cli_capture_stops_after_count(duo_lab: Lab, tmp_path: Path, e2e: SimpleNamespace
                                       ) -> None:
    out = tmp_path / "cli.pcap"
    piano_ll = duo_lab.node("piano").link_local("vioif0")
    capture = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "capture", "violin:vioif0", "-w", str(out),
         "-c", "4", "--duration", "60", "--lab", duo_lab.name],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert e2e.wait_until(lambda: out.exists(), 30)
        duo_lab.node("violin").exec(f"ping -c 4 -i 0.5 -W 2 {piano_ll}%vioif0", timeout=60)
        _, err = capture.communicate(timeout=60)
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.wait()
    assert capture.returncode == 0, err
    from orchestrate.capture import count_pcap_packets

    assert count_pcap_packets(out) >= 4
