"""`vrlab ui`'s server without VMs: the token is required everywhere, the lab's topology and
live link counters come out as JSON / server-sent events, node tables, captures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from orchestrate.ui.server import LabView, UiError, layout, make_app, serve

TOKEN = "s3cret-token"
NODES: dict[str, Any] = {
    "h1": {"role": "host", "addresses": ["eth1 198.51.100.2/26"],
           "nics": [{"ifname": "eth1", "mac": "52:54:00:00:00:01", "link": 0, "kind": "udp"}]},
    "r1": {"role": "router", "addresses": ["r1-h1 198.51.100.1/26", "r1-h2 198.51.100.65/26"],
           "nics": [{"ifname": "r1-h1", "mac": "52:54:00:00:00:11", "link": 0, "kind": "udp"},
                    {"ifname": "r1-h2", "mac": "52:54:00:00:00:12", "link": 1, "kind": "udp"}]},
    "h2": {"role": "host", "addresses": ["eth1 198.51.100.66/26"],
           "nics": [{"ifname": "eth1", "mac": "52:54:00:00:00:02", "link": 1, "kind": "udp"}]},
}


@dataclass
class Result:
    exit_status: int
    stdout: str
    stderr: str = ""


@dataclass
class Status:
    name: str
    state: str


class FakeLab:
    """Counters that grow by 10 packets / 1000 bytes per read on every interface."""

    name = "line"

    def __init__(self, tmp: Path) -> None:
        self.record = type("R", (), {"data": {"nodes": NODES}})()
        self.reads = 0
        self.tmp = tmp
        self.states = {n: "running" for n in NODES}

    def status(self) -> list[Status]:
        return [Status(n, s) for n, s in self.states.items()]

    def node(self, name: str) -> Any:
        lab = self

        class Node:
            def exec(self, cmd: str, timeout: float = 60) -> Result:
                if cmd.startswith("echo") or "statistics" in cmd:
                    lab.reads += 1
                    names = re.findall(r"echo (\S+) ", cmd)
                    n = lab.reads
                    return Result(0, "".join(f"{i} {10 * n} {1000 * n}\n" for i in names))
                if cmd == "routerctl show routes --json":  # indented, as routerctl prints
                    return Result(0, json.dumps([{"destination": "198.51.100.0/26"}], indent=2))
                if cmd.startswith("ip -j route"):  # one document per line
                    return Result(0, '[{"dst": "default"}]\n[{"dst": "2001:db8:1::/64"}]\n')
                if cmd == "routerctl show stats --json":
                    return Result(0, json.dumps({"counters": {"ip.forward": 5, "ip.badsum": 0}}))
                return Result(0, "[]")

        return Node()

    @contextlib.contextmanager
    def capture(self, node: str, ifname: str, path: Path) -> Iterator[Path]:
        from orchestrate.packets import PCAP_GLOBAL_HEADER

        path.write_bytes(PCAP_GLOBAL_HEADER)
        yield path

    def close(self) -> None:
        pass


def run_client(view: LabView, body: Any) -> Any:
    async def go() -> Any:
        async with TestClient(TestServer(make_app(view, TOKEN))) as client:
            return await body(client)

    return asyncio.run(go())


@pytest.fixture
def view(tmp_path: Path) -> Iterator[LabView]:
    v = LabView(FakeLab(tmp_path), interval=0.2)
    yield v
    v.close()


def test_token_required_everywhere(view: LabView) -> None:
    async def body(client: TestClient) -> None:
        for path in ("/", "/api/lab", "/api/events", "/static/app.js", "/api/node/r1"):
            assert (await client.get(path)).status == 403
            assert (await client.get(path + "?token=wrong")).status == 403
        ok = await client.get("/?token=" + TOKEN)
        assert ok.status == 200 and "<svg id=\"graph\"" in await ok.text()
        # the page's own requests then ride on the cookie the first request set
        lab = await client.get("/api/lab")
        assert lab.status == 200

    run_client(view, body)


def test_topology_counters_and_node_tables(view: LabView) -> None:
    async def body(client: TestClient) -> None:
        lab = await (await client.get(f"/api/lab?token={TOKEN}")).json()
        assert [n["name"] for n in lab["nodes"]] == ["h1", "r1", "h2"]
        assert {n["state"] for n in lab["nodes"]} == {"running"}
        assert [link["ends"] for link in lab["links"]] == [["h1:eth1", "r1:r1-h1"],
                                                          ["r1:r1-h2", "h2:eth1"]]
        assert all(0.0 <= n["x"] <= 1.0 and 0.0 <= n["y"] <= 1.0 for n in lab["nodes"])
        response = await client.get("/api/events")
        first = json.loads((await response.content.readline()).decode()[len("data: "):])
        await response.content.readline()
        second = json.loads((await response.content.readline()).decode()[len("data: "):])
        response.close()
        assert second["links"]["0"]["packets"] > first["links"]["0"]["packets"]
        assert second["links"]["0"]["pps"] > 0
        r1 = await (await client.get("/api/node/r1")).json()
        assert r1["routes"] == [{"destination": "198.51.100.0/26"}]
        assert r1["counters"] == {"ip.forward": 5}  # zero counters left out
        h1 = await (await client.get("/api/node/h1")).json()
        assert h1["routes"] == [{"dst": "default"}, {"dst": "2001:db8:1::/64"}]
        assert (await client.get("/api/node/nope")).status == 404

    run_client(view, body)


def test_capture_start_stop_download(view: LabView) -> None:
    async def body(client: TestClient) -> None:
        await client.get(f"/?token={TOKEN}")
        bad = await client.post("/api/capture", json={"node": "r1", "ifname": "eth9"})
        assert bad.status == 404
        started = await (await client.post("/api/capture",
                                           json={"node": "r1", "ifname": "r1-h2"})).json()
        early = await client.get(f"/api/capture/{started['id']}.pcap")
        assert early.status == 409
        stopped = await (await client.post(f"/api/capture/{started['id']}/stop")).json()
        assert stopped["packets"] == 0
        pcap = await client.get(stopped["download"])
        assert pcap.status == 200 and (await pcap.read())[:4] == b"\xd4\xc3\xb2\xa1"
        assert "r1-r1-h2.pcap" in pcap.headers["Content-Disposition"]

    run_client(view, body)


def test_trace_request_errors_are_json(view: LabView) -> None:
    async def body(client: TestClient) -> None:
        await client.get(f"/?token={TOKEN}")
        r = await client.post("/api/trace", json={"from": "r1", "to": "h2"})
        assert r.status == 400
        assert "is a router" in (await r.json())["error"]

    run_client(view, body)


def test_only_loopback(view: LabView) -> None:
    with pytest.raises(UiError, match="loopback only"):
        asyncio.run(serve(view, "0.0.0.0", 0, TOKEN))


def test_layout_places_every_node(view: LabView) -> None:
    pos = layout(view.labmap)
    assert set(pos) == {"h1", "r1", "h2"}
    assert len({(round(x, 3), round(y, 3)) for x, y in pos.values()}) == 3
