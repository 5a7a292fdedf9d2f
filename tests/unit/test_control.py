"""The control socket: protocol framing, the 0600 socket, and what each op does to a router."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import stat
import threading
from collections.abc import Iterator
from ipaddress import IPv4Interface, IPv6Interface, ip_network
from pathlib import Path
from typing import Any

import pytest

from appliance.config import RouteConfig
from appliance.control.server import ControlClient, ControlCommands, ControlError, ControlServer
from appliance.core.fib import Fib, Route, RouteOrigin, RouteType
from appliance.core.interfaces import Interface
from appliance.core.neighbor import NeighborCache
from appliance.core.stats import Stats
from appliance.core.sysctl import Sysctl
from appliance.core.trace import Tracer


class FakeRouter:
    """The parts of Router the control commands read, built from the real pieces."""

    def __init__(self) -> None:
        self.interfaces = {
            3: Interface(3, "r-h1", bytes.fromhex("020000000101"), 1500,
                         [IPv4Interface("192.0.2.1/26")], [IPv6Interface("2001:db8:1::1/64")]),
            4: Interface(4, "r-h2", bytes.fromhex("020000000201"), 1280,
                         [IPv4Interface("198.51.100.1/26")], []),
        }
        self.fib = Fib()
        for iface in self.interfaces.values():
            nets = [a.network for a in iface.ipv4] + [a.network for a in iface.ipv6]
            for net in nets:
                self.fib.add(Route(net, ifindex=iface.ifindex, origin=RouteOrigin.CONNECTED))
        self.neighbors = NeighborCache()
        self.stats = Stats()
        self.sysctl = Sysctl()
        self.tracer = Tracer()
        self.added: list[RouteConfig] = []

    def add_route(self, rc: RouteConfig) -> None:
        self.added.append(rc)
        if rc.type != "unicast":
            self.fib.add(Route(rc.prefix, RouteType(rc.type)))
            return
        ifindex = next((i.ifindex for i in self.interfaces.values()
                        if i.name == rc.via_interface), 3)
        self.fib.add(Route(rc.prefix, ifindex=ifindex, gateway=rc.via))

    def delete_route(self, prefix: Any) -> None:
        self.fib.delete(prefix)


@pytest.fixture
def router() -> FakeRouter:
    return FakeRouter()


@pytest.fixture
def commands(router: FakeRouter) -> ControlCommands:
    return ControlCommands(router, status=lambda: {"hostname": "r"})  # type: ignore[arg-type]


@contextlib.contextmanager
def serving(path: Path, dispatch: Any) -> Iterator[ControlServer]:
    """A ControlServer with a poll loop in a thread, as the daemon runs it."""
    server = ControlServer(str(path), dispatch, log=lambda msg: None)
    poller = select.poll()
    server.attach(poller)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            for fd, events in poller.poll(50):
                server.handle(fd, events)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)
        server.close()


# ---------------------------------------------------------------------------- socket


def test_socket_is_mode_0600_and_removed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    with serving(path, lambda req: "pong") as server:
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert server.path == str(path)
    assert not path.exists()


def test_request_response_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    with serving(path, lambda req: {"echo": req}), ControlClient(str(path)) as client:
        assert client.request("status") == {"echo": {"op": "status"}}
        # Several requests on one connection, answered in order.
        assert client.request("show", what="routes") == {
            "echo": {"op": "show", "what": "routes"}}


def test_errors_come_back_as_control_errors(tmp_path: Path) -> None:
    def dispatch(req: dict[str, Any]) -> Any:
        raise ValueError("no such thing")

    path = tmp_path / "ctl.sock"
    with serving(path, dispatch), ControlClient(str(path)) as client, \
            pytest.raises(ControlError, match="no such thing"):
        client.request("show", what="x")


def test_internal_errors_do_not_kill_the_server(tmp_path: Path) -> None:
    calls = []

    def dispatch(req: dict[str, Any]) -> Any:
        calls.append(req["op"])
        if req["op"] == "boom":
            raise RuntimeError("bug")
        return "fine"

    path = tmp_path / "ctl.sock"
    with serving(path, dispatch), ControlClient(str(path)) as client:
        with pytest.raises(ControlError, match="internal error"):
            client.request("boom")
        assert client.request("status") == "fine"
    assert calls == ["boom", "status"]


def test_garbage_and_pipelined_lines(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    with serving(path, lambda req: req["op"]):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(b'not json\n[1,2]\n{"op":"a"}\n{"op":"b"}\n')
        s.shutdown(socket.SHUT_WR)
        data = b""
        for _ in range(100):  # bounded: the server closes after answering
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
    answers = [json.loads(line) for line in data.splitlines()]
    assert [a["ok"] for a in answers] == [False, False, True, True]
    assert "not JSON" in answers[0]["error"]
    assert [a.get("result") for a in answers[2:]] == ["a", "b"]


def test_stale_socket_is_replaced_live_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on: what a SIGKILLed daemon leaves
    with serving(path, lambda req: "new") as server, ControlClient(str(path)) as client:
        assert client.request("status") == "new"
        with pytest.raises(ControlError, match="already answering"):
            ControlServer(server.path, lambda req: None)
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(str(regular), lambda req: None)
    assert regular.read_text() == "x"


def test_client_says_when_no_daemon(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="is vrlab-router running"):
        ControlClient(str(tmp_path / "missing.sock"))


# ---------------------------------------------------------------------------- commands


def test_show_interfaces_routes_sysctl(commands: ControlCommands) -> None:
    ifs = commands({"op": "show", "what": "interfaces"})
    assert [i["name"] for i in ifs] == ["r-h1", "r-h2"]
    assert ifs[0]["mac"] == "02:00:00:00:01:01"
    assert ifs[0]["ipv4"] == ["192.0.2.1/26"] and ifs[0]["ipv6"] == ["2001:db8:1::1/64"]
    assert ifs[1]["mtu"] == 1280
    routes = commands({"op": "show", "what": "routes"})
    assert {"prefix": "192.0.2.0/26", "type": "unicast", "gateway": None,
            "interface": "r-h1", "origin": "connected"} in routes
    sysctl = {s["name"]: s["value"] for s in commands({"op": "show", "what": "sysctl"})}
    assert sysctl["net.inet.ip.forwarding"] == 1
    with pytest.raises(ControlError, match="show what"):
        commands({"op": "show", "what": "everything"})


def test_show_stats_has_counters_and_netstat_text(router: FakeRouter,
                                                  commands: ControlCommands) -> None:
    router.stats.bump("ip.badsum", 3)
    stats = commands({"op": "show", "what": "stats"})
    assert stats["counters"]["ip.badsum"] == 3
    assert "3 bad header checksums" in stats["text"]


def test_show_neighbors(router: FakeRouter, commands: ControlCommands) -> None:
    addr = bytes([198, 51, 100, 2])
    router.neighbors.resolve(4, addr, b"queued packet", 0.0)
    [entry] = commands({"op": "show", "what": "neighbors"})
    assert entry["address"] == "198.51.100.2"
    assert entry["interface"] == "r-h2"
    assert entry["state"] == "INCOMPLETE" and entry["mac"] is None and entry["queued"] == 1


def test_sysctl_get_set(router: FakeRouter, commands: ControlCommands) -> None:
    assert commands({"op": "sysctl-set", "name": "net.inet.ip.redirect", "value": "0"}) == {
        "name": "net.inet.ip.redirect", "old": 1, "value": 0}
    assert router.sysctl.get("net.inet.ip.redirect") == 0
    assert commands({"op": "sysctl-get", "name": "net.inet.ip.redirect"})["value"] == 0
    with pytest.raises(ValueError, match="unknown sysctl"):
        commands({"op": "sysctl-set", "name": "net.inet.ip.nope", "value": 1})
    with pytest.raises(ValueError, match="out of range"):
        commands({"op": "sysctl-set", "name": "net.inet.ip.ttl", "value": 300})


def test_route_add_forms(router: FakeRouter, commands: ControlCommands) -> None:
    r = commands({"op": "route-add", "prefix": "203.0.113.0/24", "via": "198.51.100.2"})
    assert r["gateway"] == "198.51.100.2"
    commands({"op": "route-add", "prefix": "2001:db8:9::/48", "via": "fe80::2%r-h2"})
    commands({"op": "route-add", "prefix": "192.0.2.128/25", "dev": "r-h2"})
    commands({"op": "route-add", "prefix": "192.0.2.64/26", "type": "reject"})
    assert [(rc.via_interface, rc.type) for rc in router.added] == [
        (None, "unicast"), ("r-h2", "unicast"), ("r-h2", "unicast"), (None, "reject")]
    assert str(router.added[1].via) == "fe80::2"
    assert router.fib.get(ip_network("192.0.2.64/26")).type is RouteType.REJECT  # type: ignore[union-attr]


@pytest.mark.parametrize(("request_args", "message"), [
    ({"prefix": "192.0.2.1/24", "via": "198.51.100.2"}, "host bits"),
    ({"prefix": "192.0.2.0/24"}, "needs via"),
    ({"prefix": "192.0.2.0/24", "via": "2001:db8::1"}, "IPv6 gateway for an IPv4"),
    ({"prefix": "2001:db8::/32", "via": "fe80::1"}, "needs %INTERFACE"),
    ({"prefix": "192.0.2.0/24", "dev": "eth9"}, "no interface 'eth9'"),
    ({"prefix": "192.0.2.0/24", "type": "blackhole", "via": "198.51.100.2"}, "neither"),
    ({"prefix": "192.0.2.0/24", "type": "drop"}, "route type"),
])
def test_route_add_refuses(router: FakeRouter, commands: ControlCommands,
                           request_args: dict[str, Any], message: str) -> None:
    with pytest.raises(ControlError, match=message):
        commands({"op": "route-add", **request_args})
    assert router.added == []


def test_route_del(router: FakeRouter, commands: ControlCommands) -> None:
    commands({"op": "route-add", "prefix": "203.0.113.0/24", "via": "198.51.100.2"})
    assert commands({"op": "route-del", "prefix": "203.0.113.0/24"}) == {
        "prefix": "203.0.113.0/24"}
    assert ip_network("203.0.113.0/24") not in router.fib
    with pytest.raises(ControlError, match="no route"):
        commands({"op": "route-del", "prefix": "203.0.113.0/24"})


def test_trace_session_stops_after_count(router: FakeRouter, commands: ControlCommands) -> None:
    old = router.tracer.begin(3, 0.0)  # a record from before the session: not part of it
    old.add("rx")
    session = commands({"op": "trace-start", "count": 2})["session"]
    assert router.tracer.enabled and commands.tracing
    with pytest.raises(ControlError, match="already running"):
        commands({"op": "trace-start", "count": 1})
    for i in range(3):
        rec = router.tracer.begin(3, float(i))
        rec.add("rx", "r-h1")
        rec.add("fib", "192.0.2.0/26 connected")
        commands.trace_poll()
    assert not router.tracer.enabled and not commands.tracing
    result = commands({"op": "trace-read", "session": session, "after": 0})
    assert result["done"]
    assert [r["packet_id"] for r in result["records"]] == [old.packet_id + 1, old.packet_id + 2]
    assert [s["stage"] for s in result["records"][0]["stages"]] == ["rx", "fib"]
    assert result["records"][0]["interface"] == "r-h1"
    after = result["records"][0]["packet_id"]
    again = commands({"op": "trace-read", "session": session, "after": after})
    assert len(again["records"]) == 1
    commands({"op": "trace-stop", "session": session})
    with pytest.raises(ControlError, match="ended"):
        commands({"op": "trace-read", "session": session})


def test_unknown_op(commands: ControlCommands) -> None:
    with pytest.raises(ControlError, match="unknown op"):
        commands({"op": "reboot"})
    assert commands({"op": "status"})["hostname"] == "r"
