"""`vrlab ui`: the lab in a browser, served by aiohttp on loopback with a secret token.

Security model (as Jupyter's): the server binds 127.0.0.1 only and every request must carry
the token, either as `?token=` (the URL `vrlab ui` prints) or as the cookie the first such
request sets; anything else gets 403. The token is 32 random bytes (`secrets`), compared in
constant time.

What the page gets (all JSON under /api/, plus one server-sent event stream):

- ``GET /api/lab``: nodes (role, state, interfaces and addresses), links (ends, kind), and a
  layout (Graphviz `dot -Tplain` positions, or a circle when dot is missing);
- ``GET /api/events``: every `interval` seconds, node states and per-link packet and byte
  counters and rates. A link's counters are the sum of what its ends transmitted, read in
  each node from /sys/class/net/IF/statistics over the lab's SSH (every frame on a link was
  transmitted by exactly one end; the routers' virtio driver counts the frames their rings
  send too);
- ``GET /api/node/NAME``: a router's routes, neighbors, counters and sysctls (`routerctl show
  ... --json`), a host's addresses, routes and neighbors (`ip -j`);
- ``POST /api/trace``: runs `vrlab trace` (orchestrate.trace.live) and answers the journey as
  JSON, its text timeline and its SVG picture;
- ``POST /api/capture`` / ``POST /api/capture/ID/stop`` / ``GET /api/capture/ID.pcap``: a
  capture of one interface, and its pcap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from orchestrate.trace.journey import LabMap, TraceError

STATIC = Path(__file__).parent / "static"
COOKIE = "vrlab_ui_token"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class UiError(Exception):
    """The UI cannot start (a non-loopback address, no such lab)."""


def layout(labmap: LabMap) -> dict[str, tuple[float, float]]:
    """Node positions in 0..1 (both axes): Graphviz's when `dot` is there, else a circle."""
    nodes = list(labmap.roles)
    dot = shutil.which("dot")
    if dot is not None:
        lines = ["graph g {", "  rankdir=LR; nodesep=0.8; ranksep=1.2;"]
        lines += [f'  "{n}";' for n in nodes]
        for link, ports in sorted(labmap.links().items()):
            if len(ports) == 2:
                lines.append(f'  "{ports[0].node}" -- "{ports[1].node}";')
            else:
                lines.append(f'  "lan{link}" [shape=point];')
                lines += [f'  "{p.node}" -- "lan{link}";' for p in ports]
        lines.append("}")
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            out = subprocess.run([dot, "-Tplain"], input="\n".join(lines), text=True,
                                 capture_output=True, timeout=20, check=True).stdout
            pos: dict[str, tuple[float, float]] = {}
            width = height = 1.0
            for line in out.splitlines():
                parts = line.split()
                if parts[:1] == ["graph"]:
                    width, height = float(parts[2]) or 1.0, float(parts[3]) or 1.0
                elif parts[:1] == ["node"]:
                    pos[parts[1].strip('"')] = (float(parts[2]) / width,
                                                1.0 - float(parts[3]) / height)
            if all(n in pos for n in nodes):
                return pos
    count = max(1, len(nodes))
    return {n: (0.5 + 0.4 * math.cos(2 * math.pi * i / count),
                0.5 + 0.4 * math.sin(2 * math.pi * i / count)) for i, n in enumerate(nodes)}


@dataclass
class Capture:
    ident: str
    node: str
    ifname: str
    path: Path
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class LabView:
    """The server's state for one lab: its map, the counter poller, running captures."""

    def __init__(self, lab: Any, interval: float = 1.0) -> None:
        from orchestrate.trace.live import lab_map

        self.lab = lab
        self.labmap = lab_map(lab)
        self.interval = interval
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.positions = layout(self.labmap)
        self.captures: dict[str, Capture] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="vrlab-ui-"))
        self._last: dict[int, tuple[float, int, int]] = {}
        self.trace_lock = threading.Lock()

    # -- the topology ----------------------------------------------------------------------

    def states(self) -> dict[str, str]:
        try:
            return {s.name: s.state for s in self.lab.status()}
        except Exception as exc:  # a lab taken down under us
            return {n: f"unknown ({exc})" for n in self.labmap.roles}

    def topology(self) -> dict[str, Any]:
        states = self.states()
        nodes = []
        for name, role in self.labmap.roles.items():
            x, y = self.positions.get(name, (0.5, 0.5))
            nodes.append({
                "name": name, "role": role, "state": states.get(name, "absent"), "x": x, "y": y,
                "interfaces": [{"name": p.ifname, "mac": p.mac, "link": p.link,
                                "addresses": [str(a) for i, a in self.labmap.addresses[name]
                                              if i == p.ifname]}
                               for p in self.labmap.ports if p.node == name],
            })
        links = [{"index": i, "name": self.labmap.link_name(i), "kind": ports[0].kind,
                  "ends": [f"{p.node}:{p.ifname}" for p in ports]}
                 for i, ports in sorted(self.labmap.links().items())]
        return {"lab": self.labmap.name, "nodes": nodes, "links": links}

    # -- link counters ---------------------------------------------------------------------

    def _node_counters(self, node: str) -> dict[str, tuple[int, int]]:
        ifnames = [p.ifname for p in self.labmap.ports if p.node == node and p.link >= 0]
        if not ifnames:
            return {}
        cmd = "; ".join(f"echo {i} $(cat /sys/class/net/{i}/statistics/tx_packets "
                        f"/sys/class/net/{i}/statistics/tx_bytes 2>/dev/null)" for i in ifnames)
        result = self.lab.node(node).exec(cmd, timeout=10)
        out: dict[str, tuple[int, int]] = {}
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                out[parts[0]] = (int(parts[1]), int(parts[2]))
        return out

    def link_counters(self) -> dict[int, dict[str, float]]:
        """Per link: packets and bytes so far (sum of the ends' transmit counters) and the
        rates since the previous call."""
        states = self.states()
        running = [n for n in self.labmap.roles if states.get(n) == "running"]

        def safe(node: str) -> dict[str, tuple[int, int]]:
            try:
                return self._node_counters(node)
            except Exception:
                return {}

        per_node = dict(zip(running, self.pool.map(safe, running), strict=True))
        now = time.monotonic()
        out: dict[int, dict[str, float]] = {}
        for link, ports in self.labmap.links().items():
            packets = sum(per_node.get(p.node, {}).get(p.ifname, (0, 0))[0] for p in ports)
            nbytes = sum(per_node.get(p.node, {}).get(p.ifname, (0, 0))[1] for p in ports)
            pps = bps = 0.0
            if link in self._last:
                t, p0, b0 = self._last[link]
                dt = max(now - t, 1e-3)
                pps, bps = max(0, packets - p0) / dt, max(0, nbytes - b0) / dt
            self._last[link] = (now, packets, nbytes)
            out[link] = {"packets": packets, "bytes": nbytes, "pps": round(pps, 2),
                         "bps": round(bps, 1)}
        return out

    # -- a node's tables -------------------------------------------------------------------

    def node_detail(self, name: str) -> dict[str, Any]:
        if name not in self.labmap.roles:
            raise KeyError(name)
        role = self.labmap.roles[name]
        if role == "router":
            wanted = {"routes": "routerctl show routes --json",
                      "neighbors": "routerctl show neighbors --json",
                      "counters": "routerctl show stats --json",
                      "sysctl": "routerctl show sysctl --json"}
        else:
            wanted = {"addresses": "ip -j addr show", "routes": "ip -j route show; ip -j -6 "
                      "route show", "neighbors": "ip -j neigh show"}
        out: dict[str, Any] = {"name": name, "role": role}
        node = self.lab.node(name)
        for key, cmd in wanted.items():
            try:
                result = node.exec(cmd, timeout=20)
            except Exception as exc:
                out[key] = {"error": str(exc)}
                continue
            if result.exit_status != 0:
                out[key] = {"error": result.stderr.strip() or f"exit {result.exit_status}"}
                continue
            try:  # one document (routerctl ... --json), or one per line (ip -j; ip -j -6)
                docs = [json.loads(result.stdout)]
            except ValueError:
                docs = []
                for chunk in result.stdout.strip().splitlines():
                    with contextlib.suppress(ValueError):
                        docs.append(json.loads(chunk))
            value: Any = docs[0] if len(docs) == 1 else [x for d in docs for x in
                                                         (d if isinstance(d, list) else [d])]
            if key == "counters" and isinstance(value, dict):
                value = {k: v for k, v in value.get("counters", value).items() if v}
            out[key] = value
        return out

    # -- captures --------------------------------------------------------------------------

    def start_capture(self, node: str, ifname: str) -> Capture:
        if self.labmap.port(node, ifname) is None:
            raise KeyError(f"{node}:{ifname}")
        ident = secrets.token_hex(6)
        cap = Capture(ident, node, ifname, self.tmp / f"{node}-{ifname}-{ident}.pcap")
        started = threading.Event()

        def body() -> None:
            try:
                with self.lab.capture(node, ifname, cap.path):
                    started.set()
                    cap.stop.wait(600)  # bounded: a forgotten capture stops after 10 min
            except Exception as exc:
                cap.error = str(exc)
            finally:
                started.set()
                cap.done.set()

        threading.Thread(target=body, daemon=True, name=f"capture-{ident}").start()
        started.wait(30)
        if cap.error:
            raise RuntimeError(cap.error)
        self.captures[ident] = cap
        return cap

    def close(self) -> None:
        for cap in self.captures.values():
            cap.stop.set()
        for cap in self.captures.values():
            cap.done.wait(10)
        self.pool.shutdown(wait=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
        with contextlib.suppress(Exception):
            self.lab.close()


def make_app(view: LabView, token: str) -> web.Application:
    """The aiohttp application (token checked on every request)."""

    @web.middleware
    async def require_token(request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.Response(status=403, text="403: forbidden: this vrlab ui wants the token "
                                "from the URL it printed\n")
        response = await handler(request)
        if request.query.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    app = web.Application(middlewares=[require_token])
    loop_runs = asyncio.get_event_loop

    async def in_thread(fn: Any, *args: Any) -> Any:
        return await loop_runs().run_in_executor(view.pool, fn, *args)

    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ("app.js", "app.css"):
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name)

    async def lab(request: web.Request) -> web.Response:
        return web.json_response(await in_thread(view.topology))

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            while True:
                links = await in_thread(view.link_counters)
                states = await in_thread(view.states)
                data = json.dumps({"time": time.time(), "states": states,
                                   "links": {str(k): v for k, v in links.items()}})
                await response.write(f"data: {data}\n\n".encode())
                await asyncio.sleep(view.interval)
        except ConnectionResetError:  # the page went away
            pass
        return response

    async def node(request: web.Request) -> web.Response:
        try:
            detail = await in_thread(view.node_detail, request.match_info["name"])
        except KeyError:
            raise web.HTTPNotFound(text=f"no node {request.match_info['name']}") from None
        return web.json_response(detail)

    async def trace(request: web.Request) -> web.Response:
        from orchestrate.trace.live import TraceRequest, trace_lab
        from orchestrate.trace.render import to_svg, to_text

        body = await request.json()
        try:
            req = TraceRequest(
                None, body.get("from"), body.get("to"),
                int(body["family"]) if body.get("family") else None,
                str(body.get("proto") or "icmp"), int(body.get("size") or 56),
                int(body.get("ttl") or 64), bool(body.get("df")), body.get("watch") or None,
                float(body.get("timeout") or 5.0))
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": f"bad trace request: {exc}"}, status=400)

        def work() -> dict[str, Any]:
            if not view.trace_lock.acquire(timeout=60):
                raise TraceError("another trace is running")
            try:
                journey, report = trace_lab(view.lab, req)
            finally:
                view.trace_lock.release()
            return {"journey": journey.to_json(), "text": to_text(journey),
                    "svg": to_svg(journey), "problems": report.get("problems", [])}

        try:
            return web.json_response(await in_thread(work))
        except TraceError as exc:
            return web.json_response({"error": str(exc)}, status=400 if exc.status == 2 else 409)

    async def capture_start(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            cap = await in_thread(view.start_capture, str(body.get("node")),
                                  str(body.get("ifname")))
        except KeyError as exc:
            return web.json_response({"error": f"no interface {exc}"}, status=404)
        except RuntimeError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response({"id": cap.ident, "node": cap.node, "ifname": cap.ifname})

    def _capture(request: web.Request) -> Capture:
        cap = view.captures.get(request.match_info["ident"])
        if cap is None:
            raise web.HTTPNotFound(text="no such capture")
        return cap

    async def capture_stop(request: web.Request) -> web.Response:
        cap = _capture(request)
        cap.stop.set()
        await in_thread(cap.done.wait, 15)
        from orchestrate.packets import read_pcap

        packets = len(read_pcap(cap.path)) if cap.path.exists() else 0
        return web.json_response({"id": cap.ident, "packets": packets,
                                  "download": f"/api/capture/{cap.ident}.pcap"})

    async def capture_file(request: web.Request) -> web.StreamResponse:
        cap = _capture(request)
        if not cap.done.is_set() or not cap.path.exists():
            raise web.HTTPConflict(text="stop the capture first")
        return web.FileResponse(cap.path, headers={
            "Content-Type": "application/vnd.tcpdump.pcap",
            "Content-Disposition": f'attachment; filename="{cap.node}-{cap.ifname}.pcap"'})

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/lab", lab)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/node/{name}", node)
    app.router.add_post("/api/trace", trace)
    app.router.add_post("/api/capture", capture_start)
    app.router.add_post("/api/capture/{ident}/stop", capture_stop)
    app.router.add_get("/api/capture/{ident}.pcap", capture_file)
    return app


async def serve(view: LabView, host: str, port: int, token: str,
                ready: Any = None) -> None:
    """Serve until cancelled; `ready(url)` is called once the socket listens."""
    if host not in LOOPBACK:
        raise UiError(f"--host {host}: vrlab ui listens on loopback only "
                      "(127.0.0.1 or ::1); use an SSH tunnel to reach it from elsewhere")
    runner = web.AppRunner(make_app(view, token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    url = f"http://{'[::1]' if host == '::1' else '127.0.0.1'}:{bound}/?token={token}"
    if ready is not None:
        ready(url)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await runner.cleanup()


def new_token() -> str:
    return secrets.token_urlsafe(32)
