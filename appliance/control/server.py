"""The control socket: routerctl <-> vrlab-router, JSON lines over a Unix stream socket.

Protocol. The client connects, writes one request per line and reads one response line per
request; several requests may share a connection. A request is a JSON object with an ``op``;
a response is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "message"}``.

==================  ==============================================  ===========================
op                  arguments                                       result
==================  ==============================================  ===========================
``status``                                                          hostname, pid, fastpath, ...
``show``            ``what``: interfaces|routes|neighbors|stats|    a list of objects (stats:
                    sysctl                                          ``{counters, text}``)
``sysctl-get``      ``name``                                        ``{name, value}``
``sysctl-set``      ``name``, ``value``                             ``{name, old, value}``
``route-add``       ``prefix``, one of ``via`` (``addr[%if]``,      the route as ``show routes``
                    optional ``dev``), ``dev``, ``type``            prints it
                    (blackhole|reject)
``route-del``       ``prefix``                                      ``{prefix}``
``trace-start``     ``count``, optional ``filter`` (a list of up to     ``{session}``
                    8 addresses: only packets from or to them)
``trace-read``      ``session``, ``after`` (a packet id)            ``{records, done}``
``trace-stop``      ``session``                                     ``{}``
``reload``                                                          ``{applied, summary,
                                                                    problems, restart}``; an
                                                                    error if refused
==================  ==============================================  ===========================

The socket is created mode 0600 (the umask is narrowed around ``bind``, so there is no moment
when others could connect) and removed when the server closes. The server never blocks: it
lives in the daemon's poll loop (`ControlServer.attach` / `ControlServer.handle`), answers
each complete line at once and keeps unsent output per client.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from appliance.config import ROUTE_TYPES, ConfigError, RouteConfig

# The protocol's shared names live with the client (which must stay import-light); they are
# re-exported here for the daemon and the tests.
from appliance.control.client import DEFAULT_SOCKET as DEFAULT_SOCKET
from appliance.control.client import SHOW_WHAT, ControlError, Json, encode
from appliance.control.client import ControlClient as ControlClient
from appliance.core.sysctl import SysctlError
from appliance.dataplane.report import render as render_fastpath

if TYPE_CHECKING:
    from appliance.core.router import Router
    from appliance.core.trace import TraceRecord

MAX_LINE = 1 << 16
"""Longest request line the server accepts (a route or sysctl request is a few dozen bytes)."""
MAX_CLIENTS = 16
STALE_TRACE = 5.0


Dispatch = Callable[[dict[str, Json]], Json]


# ---------------------------------------------------------------------------- server side


@dataclass
class _Client:
    sock: socket.socket
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    closing: bool = False


class ControlServer:
    """A non-blocking JSON-lines server on a Unix socket, driven by the caller's poll loop."""

    def __init__(self, path: str, dispatch: Dispatch,
                 log: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.dispatch = dispatch
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self._poller: select.poll | select.epoll | None = None
        self._clients: dict[int, _Client] = {}
        self.ensure_free(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            self.sock.bind(path)
        except OSError as e:
            self.sock.close()
            raise ControlError(f"cannot create control socket {path}: {e.strerror}") from None
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self._inode = os.stat(path).st_ino
        self.sock.listen(8)
        self.sock.setblocking(False)

    @staticmethod
    def ensure_free(path: str) -> bool:
        """Remove a socket file nobody answers on (True: there was one, left by a daemon
        that was killed); refuse to steal a live one."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{path} exists and is not a socket; not touching it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: left by a daemon that was killed
            return True
        finally:
            probe.close()
        raise ControlError(f"another vrlab-router is already answering on {path}")

    def fileno(self) -> int:
        return self.sock.fileno()

    def attach(self, poller: select.poll | select.epoll) -> None:
        """Register the listening socket (and later each client) with `poller`."""
        self._poller = poller
        poller.register(self.sock.fileno(), select.POLLIN)

    def owns(self, fd: int) -> bool:
        return fd == self.sock.fileno() or fd in self._clients

    def handle(self, fd: int, events: int) -> None:
        """Serve poll `events` on `fd` (the listener or a client)."""
        if fd == self.sock.fileno():
            self._accept()
            return
        client = self._clients.get(fd)
        if client is None:
            return
        if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
            self._read(client)
        if fd in self._clients and events & select.POLLOUT:
            self._flush(client)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            if len(self._clients) >= MAX_CLIENTS:
                with contextlib.suppress(OSError):
                    conn.send(encode({"ok": False, "error": "too many control clients"}))
                conn.close()
                continue
            conn.setblocking(False)
            self._clients[conn.fileno()] = _Client(conn)
            if self._poller is not None:
                self._poller.register(conn.fileno(), select.POLLIN)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            # The peer finished sending; answer what is complete, then close after flushing.
            client.closing = True
            self._flush(client)
            return
        client.inbuf += data
        while True:
            nl = client.inbuf.find(b"\n")
            if nl < 0:
                break
            line = bytes(client.inbuf[:nl])
            del client.inbuf[: nl + 1]
            client.outbuf += encode(self.answer(line))
        if len(client.inbuf) > MAX_LINE:
            client.outbuf += encode({"ok": False, "error": "request line too long"})
            client.inbuf.clear()
            client.closing = True
        self._flush(client)

    def answer(self, line: bytes) -> Json:
        """The response object for one request line."""
        try:
            request = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return {"ok": False, "error": f"request is not JSON: {e}"}
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return {"ok": False, "error": 'a request is a JSON object with an "op"'}
        try:
            return {"ok": True, "result": self.dispatch(request)}
        except (ControlError, SysctlError, ConfigError, ValueError, KeyError, LookupError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            return {"ok": False, "error": str(message)}
        except Exception as e:  # a bug: say so on both sides, keep routing
            self.log(f"vrlab-router: control request {request.get('op')!r} failed: {e!r}")
            return {"ok": False, "error": f"internal error: {e!r}"}

    def _flush(self, client: _Client) -> None:
        fd = client.sock.fileno()
        while client.outbuf:
            try:
                sent = client.sock.send(client.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(client)
                return
            del client.outbuf[:sent]
        if client.closing and not client.outbuf:
            self._drop(client)
            return
        if self._poller is not None:
            mask = select.POLLIN | (select.POLLOUT if client.outbuf else 0)
            self._poller.modify(fd, mask)

    def _drop(self, client: _Client) -> None:
        fd = client.sock.fileno()
        self._clients.pop(fd, None)
        if self._poller is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._poller.unregister(fd)
        client.sock.close()

    def close(self) -> None:
        """Close every connection and the listener; remove the socket file if it is ours."""
        for client in list(self._clients.values()):
            self._drop(client)
        if self._poller is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._poller.unregister(self.sock.fileno())
        self.sock.close()
        try:
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------- the commands


def _ip_text(addr: bytes) -> str:
    return str(ipaddress.ip_address(addr))


def _mac_text(mac: bytes | None) -> str | None:
    return None if mac is None else ":".join(f"{b:02x}" for b in mac)


@dataclass
class TraceSession:
    """`routerctl trace -n N`: tracing on until N packets have been traced (or stopped)."""

    session: int
    count: int
    baseline: int
    """The newest packet id before the session began; later ids belong to it."""
    last_read: float
    """time.monotonic() of the client's last read: a session nobody reads for
    STALE_TRACE seconds (its routerctl was killed) may be replaced."""
    done: bool = False
    addresses: list[str] = field(default_factory=list)
    """The filter: only IP packets from or to these addresses (empty: every frame)."""


MAX_TRACE_ADDRESSES = 8
"""As many as the fast path's trace filter holds (TRACE_MAX_ADDRS)."""


class ControlCommands:
    """The request dispatcher: what each op does to the router."""

    def __init__(self, router: Router, status: Callable[[], dict[str, Json]] | None = None,
                 reload: Callable[[], dict[str, Json]] | None = None) -> None:
        self.router = router
        self.status = status or (lambda: {})
        self.reload = reload
        """Re-read the configuration file (the daemon's SIGHUP handling)."""
        self.trace: TraceSession | None = None
        self._sessions = 0

    def __call__(self, request: dict[str, Json]) -> Json:
        op = request["op"]
        handler = self._OPS.get(op)
        if handler is None:
            raise ControlError(f"unknown op {op!r} (known: {', '.join(sorted(self._OPS))})")
        return handler(self, request)

    # --- show

    def show(self, request: dict[str, Json]) -> Json:
        what = request.get("what")
        if what == "interfaces":
            return self.interfaces()
        if what == "routes":
            return self.routes()
        if what == "neighbors":
            return self.neighbors()
        if what == "stats":
            status = self.status()
            fast = status.get("fastpath_counters")
            fast_counters = {str(k): int(v) for k, v in fast.items()
                             if isinstance(v, int)} if isinstance(fast, dict) else {}
            drops = status.get("rx_ring_drops", 0)
            text = self.router.stats.render() + render_fastpath(
                fast_counters, drops if isinstance(drops, int) else 0)
            return {"counters": self.router.stats.as_dict(), "fastpath": fast_counters,
                    "text": text}
        if what == "sysctl":
            return [
                {"name": name, "value": value,
                 "description": self.router.sysctl.describe(name).description}
                for name, value in self.router.sysctl.items()
            ]
        raise ControlError(f"show what? expected one of {', '.join(SHOW_WHAT)}, got {what!r}")

    def interfaces(self) -> list[dict[str, Json]]:
        return [
            {
                "name": iface.name,
                "ifindex": iface.ifindex,
                "mac": _mac_text(iface.mac),
                "mtu": iface.mtu,
                "ipv4": [str(a) for a in iface.ipv4],
                "ipv6": [str(a) for a in iface.ipv6],
                "state": "up" if iface.up else "down",
                "link_changes": iface.link_changes,
            }
            for iface in sorted(self.router.interfaces.values(), key=lambda i: i.ifindex)
        ]

    def _ifname(self, ifindex: int | None) -> str | None:
        if ifindex is None:
            return None
        iface = self.router.interfaces.get(ifindex)
        return iface.name if iface is not None else f"ifindex{ifindex}"

    def _route_json(self, route: Any) -> dict[str, Json]:
        return {
            "prefix": str(route.prefix),
            "type": route.type.name.lower(),
            "gateway": None if route.gateway is None else str(route.gateway),
            "interface": self._ifname(route.ifindex),
            "origin": route.origin.name.lower(),
        }

    def _linkdown_routes(self) -> list[Any]:
        linkdown = getattr(self.router, "linkdown_routes", None)
        return list(linkdown()) if linkdown is not None else []

    def routes(self) -> list[dict[str, Json]]:
        """The FIB, plus the routes kept aside while their interface's link is down, marked
        ``"linkdown": true`` (absent on usable routes), in one listing sorted as the FIB."""
        usable = [(r, False) for r in self.router.fib.routes()]
        down = [(r, True) for r in self._linkdown_routes()]
        listing = []
        for route, linkdown in sorted(
                usable + down, key=lambda item: (item[0].prefix.version,
                                                 item[0].prefix.network_address,
                                                 item[0].prefix.prefixlen, item[1])):
            entry = self._route_json(route)
            if linkdown:
                entry["linkdown"] = True
            listing.append(entry)
        return listing

    def neighbors(self) -> list[dict[str, Json]]:
        return [
            {
                "interface": self._ifname(e.ifindex),
                "address": _ip_text(e.addr),
                "mac": _mac_text(e.mac),
                "state": "PERMANENT" if e.permanent else e.state.name,
                "is_router": e.is_router,
                "probes": e.probes,
                "queued": len(e.queue),
            }
            for e in sorted(self.router.neighbors.entries(),
                            key=lambda e: (len(e.addr), e.addr, e.ifindex))
        ]

    # --- sysctl

    def sysctl_get(self, request: dict[str, Json]) -> Json:
        name = str(request.get("name"))
        return {"name": name, "value": self.router.sysctl.get(name)}

    def sysctl_set(self, request: dict[str, Json]) -> Json:
        name = str(request.get("name"))
        value = request.get("value")
        old = self.router.sysctl.set(name, value)
        return {"name": name, "old": old, "value": self.router.sysctl.get(name)}

    # --- routes

    def route_add(self, request: dict[str, Json]) -> Json:
        route = self.parse_route(request)
        self.router.add_route(route)
        for r in self.router.fib.routes():
            if r.prefix == route.prefix:
                return self._route_json(r)
        for r in self._linkdown_routes():
            if r.prefix == route.prefix:
                return {**self._route_json(r), "linkdown": True}
        raise ControlError(f"route {route.prefix} was not installed")

    def parse_route(self, request: dict[str, Json]) -> RouteConfig:
        """A RouteConfig from a route-add request, checked like the config file's routes."""
        try:
            prefix = ipaddress.ip_network(str(request.get("prefix")))
        except ValueError as e:
            raise ControlError(f"bad prefix: {e} (host bits set?)") from None
        rtype = str(request.get("type") or "unicast")
        if rtype not in ROUTE_TYPES:
            raise ControlError(f"route type must be one of {', '.join(ROUTE_TYPES)}")
        via_text = request.get("via")
        dev = request.get("dev")
        names = {i.name for i in self.router.interfaces.values()}
        if rtype != "unicast":
            if via_text is not None or dev is not None:
                raise ControlError(f"a {rtype} route takes neither via nor dev")
            return RouteConfig(prefix, None, None, rtype)
        if via_text is None and dev is None:
            raise ControlError("a route needs via GATEWAY, dev INTERFACE, blackhole or reject")
        via: IPv4Address | IPv6Address | None = None
        if via_text is not None:
            text = str(via_text)
            if "%" in text:
                text, scope = text.split("%", 1)
                if dev is not None and dev != scope:
                    raise ControlError(f"via {via_text} names {scope} but dev is {dev}")
                dev = scope
            try:
                via = ipaddress.ip_address(text)
            except ValueError as e:
                raise ControlError(f"bad gateway: {e}") from None
            if via.version != prefix.version:
                raise ControlError(f"IPv{via.version} gateway for an IPv{prefix.version} prefix")
            if via.is_multicast or via.is_unspecified:
                raise ControlError(f"{via} cannot be a gateway")
            if isinstance(via, IPv6Address) and via.is_link_local and dev is None:
                raise ControlError(f"link-local gateway {via} needs %INTERFACE or dev INTERFACE")
        if dev is not None and dev not in names:
            raise ControlError(f"no interface {dev!r} (have: {', '.join(sorted(names))})")
        return RouteConfig(prefix, via, None if dev is None else str(dev), "unicast")

    def route_del(self, request: dict[str, Json]) -> Json:
        try:
            prefix = ipaddress.ip_network(str(request.get("prefix")))
        except ValueError as e:
            raise ControlError(f"bad prefix: {e}") from None
        if not any(r.prefix == prefix
                   for r in [*self.router.fib.routes(), *self._linkdown_routes()]):
            raise ControlError(f"no route for {prefix}")
        self.router.delete_route(prefix)
        return {"prefix": str(prefix)}

    # --- trace

    def trace_start(self, request: dict[str, Json]) -> Json:
        count = request.get("count", 10)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
            raise ControlError("trace count must be an integer 1..1000")
        if (self.trace is not None and not self.trace.done
                and time.monotonic() - self.trace.last_read < STALE_TRACE):
            raise ControlError("a trace is already running (another routerctl trace?)")
        wanted = request.get("filter") or []
        if not isinstance(wanted, list) or len(wanted) > MAX_TRACE_ADDRESSES:
            raise ControlError(f"trace filter must be a list of at most {MAX_TRACE_ADDRESSES} "
                               "addresses")
        addresses = []
        for item in wanted:
            try:
                addresses.append(str(ipaddress.ip_address(str(item))))
            except ValueError:
                raise ControlError(f"trace filter: {item!r} is not an IP address") from None
        tracer = self.router.tracer
        tracer.addresses = addresses
        newest = tracer.records(1)
        self._sessions += 1
        self.trace = TraceSession(self._sessions, count, newest[0].packet_id if newest else 0,
                                  time.monotonic(), addresses=addresses)
        tracer.enabled = True
        return {"session": self.trace.session}

    def _session(self, request: dict[str, Json]) -> TraceSession:
        trace = self.trace
        if trace is None or request.get("session") != trace.session:
            raise ControlError("that trace session has ended")
        return trace

    def traced(self) -> list[TraceRecord]:
        """The current session's records so far (at most its count), oldest first."""
        trace = self.trace
        if trace is None:
            return []
        recs = [r for r in self.router.tracer.records() if r.packet_id > trace.baseline]
        return recs[: trace.count]

    def trace_poll(self) -> None:
        """Called by the daemon after each batch: stop tracing once the count is reached."""
        trace = self.trace
        if trace is not None and not trace.done and len(self.traced()) >= trace.count:
            trace.done = True
            self.router.tracer.enabled = False

    @property
    def tracing(self) -> bool:
        return self.trace is not None and not self.trace.done

    def trace_read(self, request: dict[str, Json]) -> Json:
        trace = self._session(request)
        trace.last_read = time.monotonic()
        self.trace_poll()
        after = request.get("after", 0)
        after = after if isinstance(after, int) else 0
        records = [
            {
                "packet_id": r.packet_id,
                "ifindex": r.ifindex,
                "interface": self._ifname(r.ifindex),
                "path": r.path,
                "flow": r.flow,
                "stages": [{"stage": s.stage, "detail": s.detail, "time": s.time}
                           for s in r.stages],
            }
            for r in self.traced()
            if r.packet_id > after
        ]
        return {"records": records, "done": trace.done}

    def trace_stop(self, request: dict[str, Json]) -> Json:
        trace = self._session(request)
        trace.done = True
        self.router.tracer.enabled = False
        self.router.tracer.addresses = []
        self.trace = None
        return {}

    def do_reload(self, request: dict[str, Json]) -> Json:
        """As SIGHUP: the answer says what changed; a refused reload is an error listing the
        problems (the running configuration is unchanged)."""
        if self.reload is None:
            raise ControlError("this router cannot reload its configuration")
        result = self.reload()
        if not result.get("applied"):
            raise ControlError("\n  ".join([str(result.get("summary")),
                                             *map(str, result.get("problems") or [])]))
        return result

    def do_status(self, request: dict[str, Json]) -> Json:
        return {"pid": os.getpid(), **self.status()}

    _OPS: dict[str, Callable[[ControlCommands, dict[str, Json]], Json]] = {
        "status": do_status,
        "show": show,
        "sysctl-get": sysctl_get,
        "sysctl-set": sysctl_set,
        "route-add": route_add,
        "route-del": route_del,
        "trace-start": trace_start,
        "trace-read": trace_read,
        "trace-stop": trace_stop,
        "reload": do_reload,
    }
