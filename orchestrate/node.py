"""One node of a running lab (`lab.node(name)`): commands over SSH, its MACs and addresses."""

from __future__ import annotations

import contextlib
import ipaddress
import shlex
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrate import ssh

if TYPE_CHECKING:
    from orchestrate.lab import Lab


class NodeHandle:
    """One node of a running lab: run commands over SSH, find its serial log."""

    def __init__(self, lab: Lab, name: str) -> None:
        self.lab = lab
        self.name = name
        self.spec = lab.spec(name)
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def serial_log(self) -> Path:
        return self.spec.serial_log

    @property
    def ssh_port(self) -> int:
        return self.spec.ssh_port

    @property
    def role(self) -> str:
        return self.spec.role

    def mac(self, ifname: str) -> str:
        for nic in self.spec.nics:
            if nic.ifname == ifname:
                return nic.mac
        from orchestrate.lab import LabError

        raise LabError(f"{self.name} has no interface {ifname}")

    def link_local(self, ifname: str) -> str:
        """The modified EUI-64 link-local address (RFC 4291 appendix A) of `ifname`."""
        return str(link_local_from_mac(self.mac(ifname)))

    def connect(self, timeout: float = 30.0) -> None:
        """Open the node's SSH connection (host key checked, lab key accepted) if it is not
        open; `exec` then uses it. Raises ssh.SshError."""
        with self._lock:
            if self._client is None:
                self._client = ssh.connect(self.ssh_port, self.lab.client_key,
                                           self.lab.known_hosts, timeout=min(timeout, 15.0),
                                           opener=self.lab.management_opener(self.name))

    def exec(self, cmd: str | Sequence[str], timeout: float = 60.0,
             on_output: ssh.OutputSink | None = None) -> ssh.ExecResult:
        """Run `cmd` over SSH; with `on_output`, stream its output there (see `ssh.run`)."""
        command = cmd if isinstance(cmd, str) else shlex.join(cmd)
        streamed = False

        def sink(stream: str, data: bytes) -> None:
            nonlocal streamed
            streamed = True
            assert on_output is not None
            on_output(stream, data)

        with self._lock:
            for attempt in (1, 2):
                if self._client is None:
                    self._client = ssh.connect(self.ssh_port, self.lab.client_key,
                                               self.lab.known_hosts, timeout=min(timeout, 15.0),
                                               opener=self.lab.management_opener(self.name))
                try:
                    return ssh.run(self._client, command, timeout=timeout,
                                   on_output=sink if on_output is not None else None)
                except Exception:
                    # A dropped connection (e.g. the VM rebooted): reconnect once, unless
                    # output was already streamed (running it again would repeat it).
                    self.close_locked()
                    if attempt == 2 or streamed:
                        raise
            raise AssertionError("unreachable")

    def close_locked(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()


def link_local_from_mac(mac: str) -> ipaddress.IPv6Address:
    octets = bytearray(int(part, 16) for part in mac.split(":"))
    octets[0] ^= 0x02
    eui = bytes(octets[:3]) + b"\xff\xfe" + bytes(octets[3:])
    return ipaddress.IPv6Address(b"\xfe\x80" + b"\x00" * 6 + eui)
