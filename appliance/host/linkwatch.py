"""Link state from the kernel: an rtnetlink socket subscribed to RTNLGRP_LINK.

The daemon follows its data interfaces' operational state the way routing daemons do on
Linux (and `route monitor` / RTM_IFINFO on BSD): one AF_NETLINK NETLINK_ROUTE socket bound to
the link multicast group, read from the daemon's poll loop. Every RTM_NEWLINK / RTM_DELLINK
becomes a `LinkEvent`; the daemon hands `LinkEvent.up` to `Router.set_link`.

A link is *up* when it is administratively up (IFF_UP) and has carrier (IFLA_CARRIER, else
IFF_LOWER_UP). Carrier rather than IFF_RUNNING / operstate: the kernel updates carrier at
once, while the RFC 2863 operstate (and IFF_RUNNING, derived from it) is set later by the
linkwatch work, so a link just brought up can read "down" for a moment and the daemon would
start by withdrawing routes it is about to restore. Both notifications come from that same
linkwatch work, so after the first read they agree; the operstate is logged alongside.

The socket and the message layouts are `appliance.host.netlink`'s (standard library only;
that module says why the appliance does not use pyroute2). `parse_link_messages` is pure and
unit-tested.
"""

from __future__ import annotations

import errno
import select
import time
from dataclasses import dataclass

from appliance.host.netlink import (
    AF_BRIDGE,
    IFF_LOWER_UP,
    IFF_UP,
    IFINFOMSG,
    IFLA_CARRIER,
    IFLA_IFNAME,
    IFLA_OPERSTATE,
    NLMSG_DONE,
    NLMSG_ERROR,
    OPERSTATES,
    RTM_DELLINK,
    RTM_NEWLINK,
    RTMGRP_LINK,
    Netlink,
    attr,
    attributes,
    message,
    messages,
)

__all__ = ["LinkEvent", "LinkWatch", "link_message", "parse_link_messages"]

_RCVBUF = 1 << 20


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """One interface's state as a RTM_NEWLINK / RTM_DELLINK message gave it."""

    ifindex: int
    name: str
    flags: int
    """ifi_flags: IFF_UP, IFF_RUNNING, IFF_LOWER_UP, ..."""
    carrier: bool | None
    """IFLA_CARRIER (None when the message had none: use IFF_LOWER_UP)."""
    operstate: str
    """IFLA_OPERSTATE as text (`up`, `down`, `lowerlayerdown`, ...; `unknown` if absent)."""
    deleted: bool = False
    """RTM_DELLINK: the interface is gone."""

    @property
    def up(self) -> bool:
        """Usable for forwarding: administratively up with carrier."""
        if self.deleted or not self.flags & IFF_UP:
            return False
        return self.carrier if self.carrier is not None else bool(self.flags & IFF_LOWER_UP)

    def describe(self) -> str:
        """Why, in a few words: `carrier off, operstate lowerlayerdown`."""
        if self.deleted:
            return "interface removed"
        parts = ["admin up" if self.flags & IFF_UP else "admin down"]
        carrier = self.carrier if self.carrier is not None else bool(self.flags & IFF_LOWER_UP)
        parts.append("carrier on" if carrier else "carrier off")
        parts.append(f"operstate {self.operstate}")
        return ", ".join(parts)


def parse_link_messages(data: bytes) -> tuple[list[LinkEvent], bool]:
    """The link events in one netlink datagram, and whether it ended a dump (NLMSG_DONE or
    an error answer). Other message types are skipped; a truncated message ends parsing."""
    events: list[LinkEvent] = []
    done = False
    for msg_type, _seq, payload in messages(data):
        if msg_type in (NLMSG_DONE, NLMSG_ERROR):
            done = True
            continue
        if msg_type not in (RTM_NEWLINK, RTM_DELLINK) or len(payload) < IFINFOMSG.size:
            continue
        family, _type, index, flags, _change = IFINFOMSG.unpack_from(payload)
        if family == AF_BRIDGE:
            # Bridge-port messages (a port joining or leaving a bridge sends RTM_NEWLINK /
            # RTM_DELLINK with family AF_BRIDGE): about the port, not the link, which gets
            # its own AF_UNSPEC message. A DELLINK here does not mean the interface is gone.
            continue
        name = ""
        carrier: bool | None = None
        operstate = "unknown"
        for attr_type, value in attributes(payload[IFINFOMSG.size :]):
            if attr_type == IFLA_IFNAME:
                name = value.split(b"\0", 1)[0].decode(errors="replace")
            elif attr_type == IFLA_CARRIER and value:
                carrier = bool(value[0])
            elif attr_type == IFLA_OPERSTATE and value:
                operstate = OPERSTATES[value[0]] if value[0] < len(OPERSTATES) else str(value[0])
        events.append(LinkEvent(index, name, flags, carrier, operstate,
                                deleted=msg_type == RTM_DELLINK))
    return events, done


def link_message(msg_type: int, ifindex: int, name: str, flags: int, *,
                 carrier: bool | None = None, operstate: int | None = None,
                 family: int = 0) -> bytes:
    """A RTM_NEWLINK/RTM_DELLINK message as the kernel sends it (for tests)."""
    attrs = b""
    for attr_type, value in ((IFLA_IFNAME, name.encode() + b"\0"),
                             (IFLA_CARRIER, None if carrier is None else bytes([carrier])),
                             (IFLA_OPERSTATE, None if operstate is None else bytes([operstate]))):
        if value is None:
            continue
        attrs += attr(attr_type, value)
    return message(msg_type, 0, 0, IFINFOMSG.pack(family, 1, ifindex, flags, 0xFFFFFFFF) + attrs)


class LinkWatch:
    """A non-blocking rtnetlink socket on the link group, for the daemon's poll loop."""

    def __init__(self) -> None:
        self.netlink = Netlink(groups=RTMGRP_LINK, rcvbuf=_RCVBUF)
        self.sock = self.netlink.sock
        self.overflows = 0
        """Times the kernel dropped notifications (ENOBUFS); each is followed by a dump."""

    def fileno(self) -> int:
        return self.netlink.fileno()

    def close(self) -> None:
        self.netlink.close()

    def _request_dump(self) -> None:
        self.netlink.request_link_dump()

    def snapshot(self, timeout: float = 5.0) -> dict[int, LinkEvent]:
        """Every interface's current state (a RTM_GETLINK dump on this socket; notifications
        read meanwhile count too, the newest wins). Raises OSError on timeout."""
        self._request_dump()
        states: dict[int, LinkEvent] = {}
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OSError(errno.ETIMEDOUT, "no answer to the RTM_GETLINK dump")
            select.select([self.sock], [], [], remaining)
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self.overflows += 1
                states.clear()
                self._request_dump()
                continue
            events, done = parse_link_messages(data)
            states.update((e.ifindex, e) for e in events)
            if done:
                return states

    def read(self) -> list[LinkEvent]:
        """The notifications queued now, oldest first (never blocks). When the kernel had to
        drop some (ENOBUFS), a fresh dump gives every interface's state instead."""
        events: list[LinkEvent] = []
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return events
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self.overflows += 1
                return list(self.snapshot().values())
            events.extend(parse_link_messages(data)[0])
