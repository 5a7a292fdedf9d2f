"""SSH: pinned host keys (a wrong or unknown key is refused), exec results, ssh_config.

A small paramiko SSH server on 127.0.0.1 stands in for a node: it proves a host key generated
by vrlab, accepts only the lab's client key, and answers one canned command.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from orchestrate import ssh

CANNED = "echo out; echo err >&2; exit 3"


class _Server(paramiko.ServerInterface):
    def __init__(self, allowed: paramiko.PKey) -> None:
        self.allowed = allowed
        self.command = threading.Event()
        self.text = b""

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == ssh.SSH_USER and key.get_base64() == self.allowed.get_base64()
        return paramiko.common.AUTH_SUCCESSFUL if ok else paramiko.common.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.common.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.text = command
        self.command.set()
        return True


def _serve(listener: socket.socket, host_key: paramiko.PKey, client_key: paramiko.PKey,
           stop: threading.Event) -> None:
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        transport = paramiko.Transport(conn)
        transport.add_server_key(host_key)
        server = _Server(client_key)
        try:
            transport.start_server(server=server)
            channel = transport.accept(10)
            if channel is None:
                continue
            if server.command.wait(10):
                if server.text.decode() == CANNED:
                    channel.sendall(b"out\n")
                    channel.sendall_stderr(b"err\n")
                    channel.send_exit_status(3)
                else:
                    channel.send_exit_status(0)
            channel.close()
        except (paramiko.SSHException, EOFError, OSError):
            pass
        finally:
            # Let the client read the exit status before the transport goes away.
            stop.wait(0.3)
            transport.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[int, ssh.KeyPair, ssh.KeyPair, Path]]:
    client = ssh.generate_key(tmp_path / "id_ed25519", "lab")
    host = ssh.generate_key(tmp_path / "host_ed25519", "node")
    host_key = paramiko.Ed25519Key.from_private_key_file(str(host.private))
    client_key = paramiko.Ed25519Key.from_private_key_file(str(client.private))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(listener, host_key, client_key, stop),
                              daemon=True)
    thread.start()
    known = tmp_path / "known_hosts"
    ssh.write_known_hosts(known, {port: host.public_line()})
    try:
        yield port, client, host, known
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_generate_key_is_ed25519_and_kept(tmp_path: Path) -> None:
    pair = ssh.generate_key(tmp_path / "k", "c")
    first = pair.public_line()
    assert first.startswith("ssh-ed25519 ")
    assert ssh.generate_key(tmp_path / "k", "c").public_line() == first
    assert (tmp_path / "k").stat().st_mode & 0o077 == 0


def test_known_hosts_pins_bracketed_port(tmp_path: Path) -> None:
    line = ssh.known_hosts_line(40022, "ssh-ed25519 AAAAC3Nz comment")
    assert line == "[127.0.0.1]:40022 ssh-ed25519 AAAAC3Nz"


def test_exec_with_the_pinned_key(node: tuple[int, ssh.KeyPair, ssh.KeyPair, Path]) -> None:
    port, client, _, known = node
    conn = ssh.connect(port, client.private, known)
    try:
        result = ssh.run(conn, CANNED, timeout=20)
    finally:
        conn.close()
    assert result == ssh.ExecResult(3, "out\n", "err\n")


def test_wrong_host_key_is_refused(node: tuple[int, ssh.KeyPair, ssh.KeyPair, Path],
                                   tmp_path: Path) -> None:
    port, client, _, known = node
    impostor = ssh.generate_key(tmp_path / "other_host", "other")
    ssh.write_known_hosts(known, {port: impostor.public_line()})
    with pytest.raises(ssh.SshError, match="does not match"):
        ssh.connect(port, client.private, known)
    assert not ssh.ssh_answers(port, client.private, known)


def test_unknown_host_is_refused(node: tuple[int, ssh.KeyPair, ssh.KeyPair, Path]) -> None:
    port, client, _, known = node
    known.write_text("")
    with pytest.raises(ssh.SshError):
        ssh.connect(port, client.private, known)


def test_openssh_uses_the_generated_config(node: tuple[int, ssh.KeyPair, ssh.KeyPair, Path],
                                           tmp_path: Path) -> None:
    port, client, _, known = node
    config = tmp_path / "ssh_config"
    ssh.write_ssh_config(config, "lab", client.private, known, {"violin": port})
    text = config.read_text()
    assert "StrictHostKeyChecking yes" in text
    assert "StrictHostKeyChecking no" not in text
    proc = subprocess.run(["ssh", "-F", str(config), "violin", CANNED],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")


def test_openssh_refuses_a_wrong_host_key(node: tuple[int, ssh.KeyPair, ssh.KeyPair, Path],
                                          tmp_path: Path) -> None:
    port, client, _, known = node
    impostor = ssh.generate_key(tmp_path / "other_host", "other")
    ssh.write_known_hosts(known, {port: impostor.public_line()})
    config = tmp_path / "ssh_config"
    ssh.write_ssh_config(config, "lab", client.private, known, {"violin": port})
    proc = subprocess.run(["ssh", "-F", str(config), "violin", CANNED],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 255
    assert "out" not in proc.stdout


def test_banner_probe_needs_an_ssh_banner(node: tuple[int, ssh.KeyPair, ssh.KeyPair, Path]
                                          ) -> None:
    port, client, _, known = node
    assert ssh.banner_ready(port)
    assert ssh.ssh_answers(port, client.private, known)
    with socket.socket() as silent:  # accepts (as QEMU's slirp does) but never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        assert not ssh.banner_ready(silent.getsockname()[1], timeout=0.5)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    assert not ssh.banner_ready(closed_port, timeout=0.5)
