"""Host port allocation that never collides across labs.

Ports are taken from a fixed range on 127.0.0.1 (`VRLAB_PORT_RANGE`, default 40000-49999,
below Linux's default ephemeral range 32768-60999 would overlap, so the default starts at
40000 and every candidate is also test-bound). Allocation holds an exclusive `flock` on
`$VRLAB_HOME/ports.lock`, skips every port any lab's journal still reserves, checks the port
can actually be bound (TCP and UDP), and journals the reservation in the allocating lab's
record *before* releasing the lock, so two `vrlab up` running at once cannot pick the same port.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrate.record import Record, all_records, lab_home

DEFAULT_RANGE = (40000, 49999)


class PortError(Exception):
    """No free port was found in the range."""


def port_range() -> tuple[int, int]:
    env = os.environ.get("VRLAB_PORT_RANGE")
    if not env:
        return DEFAULT_RANGE
    low, _, high = env.partition("-")
    first, last = int(low), int(high)
    if not 1024 <= first <= last <= 65535:
        raise PortError(f"VRLAB_PORT_RANGE={env!r}: want LOW-HIGH within 1024-65535")
    return first, last


@contextmanager
def allocation_lock() -> Iterator[None]:
    path = lab_home() / "ports.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when both a TCP and a UDP socket can bind host:port right now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def _start_offset(lab: str, size: int) -> int:
    """Each lab starts its search at a different place, so labs rarely contend."""
    digest = hashlib.sha256(lab.encode()).digest()
    return int.from_bytes(digest[:4], "big") % size


def allocate_ports(record: Record, purposes: list[str]) -> dict[str, int]:
    """Reserve one port per purpose (e.g. "ssh:r1", "udp:r1:eth1") in `record`.

    Returns purpose -> port. A purpose already reserved in this record keeps its port.
    """
    first, last = port_range()
    size = last - first + 1
    result: dict[str, int] = {}
    with allocation_lock():
        taken: set[int] = set()
        for other in all_records():
            if other.path.resolve() != record.path.resolve():
                taken |= other.reserved_ports()
        taken |= record.reserved_ports()
        for purpose in purposes:
            existing = record.find("port", purpose)
            if existing is not None and existing["state"] != "removed":
                result[purpose] = int(existing["port"])
        candidate = _start_offset(record.lab, size)
        for purpose in purposes:
            if purpose in result:
                continue
            for _ in range(size):
                port = first + candidate % size
                candidate += 1
                if port in taken or not port_is_free(port):
                    continue
                taken.add(port)
                result[purpose] = port
                # A port is a reservation, not a host object: it is "created" the moment it is
                # journaled, and "removed" when the lab goes down.
                record.intend("port", purpose, port=port)
                record.created("port", purpose)
                break
            else:
                raise PortError(f"no free port left in {first}-{last} for {purpose}")
    return result


def lock_path() -> Path:
    return lab_home() / "ports.lock"
