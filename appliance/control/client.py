"""The client half of the vrlab-router control protocol: JSON lines over a Unix socket.

Kept apart from appliance.control.server (the server) and free of any appliance import, so that
`routerctl` starts fast: inside a TCG VM every imported module costs tens of milliseconds.
"""

from __future__ import annotations

import errno
import json
import socket
from typing import Any

DEFAULT_SOCKET = "/run/vrlab-router.sock"
SHOW_WHAT = ("interfaces", "routes", "neighbors", "stats", "sysctl")

Json = Any


class ControlError(Exception):
    """A request the daemon refused, or a socket problem on the client side."""


def encode(message: Json) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class ControlClient:
    """One connection to the daemon; `request` sends a request and returns its result."""

    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float = 10.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            hint = ""
            if e.errno in (errno.ENOENT, errno.ECONNREFUSED):
                hint = " (is vrlab-router running? --socket names another socket)"
            elif e.errno == errno.EACCES:
                hint = " (the socket is mode 0600: run as the daemon's user, usually root)"
            raise ControlError(f"cannot connect to {path}: {e.strerror}{hint}") from None
        self._buf = b""

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def request(self, op: str, **args: Json) -> Json:
        """Send ``{"op": op, **args}``; return the result or raise ControlError."""
        try:
            self.sock.sendall(encode({"op": op, **args}))
            while b"\n" not in self._buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ControlError("vrlab-router closed the connection")
                self._buf += chunk
        except TimeoutError:
            raise ControlError(f"no answer from {self.path} in time") from None
        except OSError as e:
            raise ControlError(f"control socket {self.path}: {e.strerror or e}") from None
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            response = json.loads(line)
        except json.JSONDecodeError:
            raise ControlError(f"garbled answer from {self.path}: {line[:80]!r}") from None
        if not isinstance(response, dict) or "ok" not in response:
            raise ControlError(f"garbled answer from {self.path}: {line[:80]!r}")
        if not response["ok"]:
            raise ControlError(str(response.get("error", "request failed")))
        return response.get("result")
