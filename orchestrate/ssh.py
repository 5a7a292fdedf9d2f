"""SSH for a lab: keys, pinned host keys, ssh_config, and command execution (paramiko).

Each lab has one ed25519 client key pair (`<lab>/ssh/id_ed25519`). Each node gets an ed25519
host key generated here before it boots; the node's config disk carries it into the VM, and the
lab's `known_hosts` pins it as `[127.0.0.1]:PORT`. Nothing ever turns host key checking off:
paramiko uses `RejectPolicy`, the generated `ssh_config` says `StrictHostKeyChecking yes`.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

# Readiness polls connect while sshd is still starting; paramiko logs each refused banner as an
# ERROR traceback through logging's last-resort handler. The failures reach us as exceptions.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False

SSH_USER = "root"
MGMT_HOST = "127.0.0.1"

Opener = Callable[[int, float], "socket.socket | paramiko.Channel"]
"""opener(port, timeout): a connected socket to MGMT_HOST:port on the node's host (a node on
another libvirt host, orchestrate.multihost.open_tcp); None means connect here."""


def _open(port: int, timeout: float, opener: Opener | None
          ) -> socket.socket | paramiko.Channel:
    if opener is not None:
        return opener(port, timeout)
    return socket.create_connection((MGMT_HOST, port), timeout=timeout)


class SshError(Exception):
    """SSH could not connect, authenticate, or verify the host key."""


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What a command run on a node produced."""

    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True, slots=True)
class KeyPair:
    private: Path
    public: Path

    def public_line(self) -> str:
        return self.public.read_text().strip()


def generate_key(path: Path, comment: str) -> KeyPair:
    """An ed25519 key pair at `path` / `path.pub` (kept if it already exists)."""
    public = path.with_name(path.name + ".pub")
    if not (path.exists() and public.exists()):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.unlink(missing_ok=True)
        public.unlink(missing_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
    return KeyPair(path, public)


def known_hosts_line(port: int, host_public_line: str) -> str:
    """`[127.0.0.1]:PORT ssh-ed25519 AAAA...` (the comment is dropped)."""
    keytype, blob = host_public_line.split()[:2]
    return f"[{MGMT_HOST}]:{port} {keytype} {blob}"


def write_known_hosts(path: Path, entries: dict[int, str]) -> None:
    """entries: port -> host public key line."""
    lines = [known_hosts_line(port, line) for port, line in sorted(entries.items())]
    path.write_text("".join(f"{line}\n" for line in lines))


def write_ssh_config(path: Path, lab: str, client_key: Path, known_hosts: Path,
                     ports: dict[str, int], proxies: dict[str, str] | None = None) -> None:
    """An OpenSSH config usable as `ssh -F path NODE`; host checking stays strict.

    `proxies`: node -> ProxyCommand, for nodes whose forward is on another host's loopback.
    """
    blocks = [f"# vrlab lab {lab}: ssh -F {path} NODE\n"]
    for node, port in sorted(ports.items()):
        proxy = (proxies or {}).get(node)
        blocks.append(
            f"Host {node}\n"
            f"    HostName {MGMT_HOST}\n"
            f"    Port {port}\n"
            f"    User {SSH_USER}\n"
            f"    IdentityFile {client_key}\n"
            f"    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {known_hosts}\n"
            f"    GlobalKnownHostsFile /dev/null\n"
            f"    StrictHostKeyChecking yes\n"
            f"    UpdateHostKeys no\n"
            f"    LogLevel ERROR\n"
            + (f"    ProxyCommand {proxy}\n" if proxy else "")
        )
    path.write_text("\n".join(blocks))


def connect(port: int, client_key: Path, known_hosts: Path, timeout: float = 10.0,
            auth_timeout: float = 60.0, opener: Opener | None = None) -> paramiko.SSHClient:
    """A paramiko client authenticated with the lab key; unknown or wrong host keys fail.

    `timeout` bounds the TCP connect and the wait for the server's banner; `auth_timeout`
    the key exchange and authentication, which take seconds of CPU in a TCG guest on a busy
    host and must not be cut short by the shorter "is anyone there" timeout.
    """
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        # paramiko checks the pinned key of [MGMT_HOST]:port whichever way the socket came.
        sock = _open(port, timeout, opener) if opener is not None else None
        client.connect(
            MGMT_HOST,
            port=port,
            username=SSH_USER,
            pkey=paramiko.Ed25519Key.from_private_key_file(str(client_key)),
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=max(timeout, auth_timeout),
            sock=sock,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise SshError(f"{MGMT_HOST}:{port}: host key does not match the pinned key") from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        raise SshError(f"{MGMT_HOST}:{port}: {exc}") from exc
    return client


OutputSink = Callable[[str, bytes], None]
"""Called with ("stdout" or "stderr", bytes) for each piece of output as it arrives."""


def run(client: paramiko.SSHClient, command: str, timeout: float = 60.0,
        stdin: bytes | None = None, on_output: OutputSink | None = None) -> ExecResult:
    """Run `command`, reading stdout and stderr together (no pipe deadlock), with a deadline.

    With `on_output` the output is handed to it as it arrives (a running `ping` shows each
    line) instead of being collected: the result's stdout and stderr are then empty.
    """
    transport = client.get_transport()
    if transport is None:
        raise SshError("ssh transport closed")
    channel = transport.open_session(timeout=timeout)
    channel.settimeout(0.2)
    channel.exec_command(command)
    if stdin:
        channel.sendall(stdin)
    channel.shutdown_write()
    out = bytearray()
    err = bytearray()

    def take(stream: str, buffer: bytearray, data: bytes) -> None:
        if on_output is None:
            buffer += data
        elif data:
            on_output(stream, data)

    deadline = time.monotonic() + timeout
    # Done when the exit status is in AND the channel's EOF arrived: sshd may send the exit
    # status before the last stderr bytes, and data never follows EOF (RFC 4254 §5.3).
    eof_grace: float | None = None
    while True:
        while channel.recv_ready():
            take("stdout", out, channel.recv(65536))
        while channel.recv_stderr_ready():
            take("stderr", err, channel.recv_stderr(65536))
        if channel.exit_status_ready():
            if channel.eof_received or channel.closed:
                if not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                continue
            if eof_grace is None:
                eof_grace = time.monotonic() + 5.0
            elif time.monotonic() > eof_grace:
                break  # a server that never sends EOF: keep what arrived
        if time.monotonic() > deadline:
            channel.close()
            raise SshError(f"command timed out after {timeout:.0f} s: {command}")
        time.sleep(0.01)
    status = channel.recv_exit_status()
    channel.close()
    return ExecResult(status, out.decode(errors="replace"), err.decode(errors="replace"))


def banner_ready(port: int, timeout: float = 3.0, opener: Opener | None = None) -> bool:
    """True when something at 127.0.0.1:port sends an SSH identification line.

    A plain socket, no key exchange: polling this is cheap for the guest. (QEMU's user
    networking accepts the host side of a forwarded connection before the guest answers, so
    "connected" alone means nothing.)
    """
    try:
        with _open(port, timeout, opener) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def ssh_answers(port: int, client_key: Path, known_hosts: Path, timeout: float = 3.0,
                opener: Opener | None = None) -> bool:
    """True when the node's SSH server proves the pinned host key and accepts the lab key.

    Polls with `banner_ready` first and starts a key exchange only once sshd answers, with
    generous timeouts: in a TCG guest on a busy host a key exchange takes seconds of CPU, and
    abandoning it to retry leaves sshd's pre-auth children competing for the one vCPU.
    """
    if not banner_ready(port, timeout, opener):
        return False
    try:
        client = connect(port, client_key, known_hosts, timeout=30.0, auth_timeout=60.0,
                         opener=opener)
    except SshError:
        return False
    client.close()
    return True
