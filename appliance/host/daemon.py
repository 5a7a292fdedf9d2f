"""vrlab-router: the appliance daemon. Rings in, the router core in the middle, rings out.

    vrlab-router --config router.yaml [--control /run/vrlab-router.sock]
                 [--fastpath auto|c|python|off | --no-fastpath]

Start-up, in order (each step logs to stderr; any failure exits non-zero before "ready"):

1. load and check the configuration (`appliance.config`; problems placed at file:line:col);
2. check the interfaces exist and are not a loopback, and build the whole `Router` (routes,
   neighbors, sysctls) from the config and each link's ifindex/MAC/MTU as they are. Any
   problem up to here exits 2 with the kernel untouched;
3. remove what a run killed without its clean stop left behind (stale control socket, the
   `vrlab-detach` bridge), saying so;
4. take the data interfaces away from the kernel (`appliance.host.kernel`: kernel IPv6 off,
   forwarding off, kernel addresses removed, GRO off, MTU, link up), then open one
   TPACKET_V2 ring socket per interface (`appliance.dataplane.ring`), and send the router's
   start-up announcements (gratuitous ARP, DAD, unsolicited NA);
5. pick the fast path (`--fastpath auto`: the C extension when built, else its Python twin;
   `--no-fastpath`: every frame through the slow path), upload the tables, attach the rings;
6. create the control socket (mode 0600) and print ``vrlab-router: ready`` on stdout. The
   orchestrator waits for that line or for the socket: both mean every interface is open.

The loop: wait for the rings, the control socket, link notifications and a signal wake-up
pipe, with a timeout to the next timer. With the fast path attached the wait is its
`serve()` call: it sleeps in epoll_wait on the rings and on an epoll of the daemon's other
descriptors (after `--busy-poll` microseconds of polling, if given), forwards straight from
RX ring to TX ring whatever comes, and returns only when Python has work: punts (which go to
`Router.receive`), a descriptor of its own ready, or the timer. A forwarded frame never runs
Python: under TCG one Python loop iteration costs a router VM's vCPU a few hundred
microseconds, and it was paid on each wake-up, twice per forwarded echo (docs/DESIGN.md,
"Forwarding in a router VM"). While a trace runs or with no fast path, the loop polls the
rings itself and calls the batch (or the rings) on each wake-up. The router's `Transmit`
actions go back onto the TX rings. Whenever `Router.generation` moved, the changed tables are
re-uploaded before the next batch, so the fast path never forwards on a stale route or
neighbor. `Router.tick` runs when `Router.next_timer` says a neighbor timer or a reassembly
timeout is due (no sooner than `TICK` after the last tick), and at least every `IDLE_TICK`;
every `TICK` while a trace runs.

While a trace runs (`routerctl trace`, or `vrlab trace` through it) the fast path stays
attached: it records the frames the trace wants (its addresses, or every IP frame) in its own
ring, which the loop drains into the router's tracer (`appliance.dataplane.tracering`), so a
traced packet takes the path it would have taken anyway and its trace says "fast path". The
frames the fast path punts are traced by the slow path, starting with the punt reason.

Link state: an rtnetlink socket on the link group (`appliance.host.linkwatch`) is part of the same
poll. A data interface losing carrier (or set administratively down) is marked down in the
router (`Router.set_link`): its routes are withdrawn from forwarding, its dynamic neighbors
flushed, the fast path's tables re-synced at once; when it comes back the routes return and
the interface announces itself again. Each change is one log line.

SIGHUP: re-read the configuration file. If it has problems, each is logged (with its place)
and the running configuration stays as it was; if it needs a restart (an MTU or link-local
address changed) that is logged and nothing changes; otherwise the difference is applied in
place (`appliance.control.reload`, interfaces added and removed included: their rings are
opened and closed by `appliance.host.reconfigure`) and one line sums it up.

SIGTERM / SIGINT: detach and close the rings, close and remove the control socket, exit 0.
Kernel settings are not restored: the interfaces stay the router's until the machine or
namespace goes away, which is what an appliance wants.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from appliance.config import ConfigError, RouterConfig, load_router_config
from appliance.control.server import DEFAULT_SOCKET, ControlCommands, ControlError, ControlServer
from appliance.core.router import Action, LinkInfo, Router, Transmit
from appliance.core.trace import Tracer
from appliance.dataplane import twin
from appliance.dataplane.ring import RingError, RingSocket
from appliance.dataplane.tablesync import FastPathLike, TableSync, have_c, new_fastpath
from appliance.dataplane.tracering import fast_records, trace_addresses
from appliance.host import kernel
from appliance.host.linkwatch import LinkEvent, LinkWatch
from appliance.host.reconfigure import Reconfigure

TICK = 0.1
"""Shortest time between Router.tick calls. The tick runs when `Router.next_timer` says a
timer is due (neighbor retransmissions are 1 s apart by default), but not sooner than TICK
after the last one; every TICK while a trace runs (its records are drained on each wake)."""
IDLE_TICK = 1.0
"""Seconds between Router.tick calls when no timer is due before then (counters are folded
and the kernel checked on the tick). Measured with TICK always (10 wake-ups a second): an idle
router VM cost its host 2.7% of a CPU under TCG against 0.4-0.5% for an idle host VM, so
38 idle routers held about one of the machine's two CPUs while a 40-node lab came up."""
BUDGET = 256
"""Frames per fast-path poll() call and per ring per slow-path pass."""
SERVE_BUDGET = 1 << 20
"""Frames one serve() call may forward before it returns to Python. serve() returns for a
punt, the daemon's own descriptors and the tick anyway; with BUDGET here, a TCP
transfer through a router VM under TCG sent the loop back to Python every 256 frames, and
Python's loop was 46% of the router's user-mode samples (bench vm-forward)."""
BACKLOG_WAIT = 0.001
"""Longest sleep of the Python loop while a kick has left frames on a TX ring (the C serve()'s
BACKLOG_WAIT_MS): the kernel says nothing when the send buffer has room again."""
KERNEL_CHECK = 30.0
"""Seconds between checks that the kernel has not taken an interface back (0: never)."""
SWITCH_INTERVAL = 0.001
"""sys.setswitchinterval: how long the kernel check's thread keeps the GIL when the loop wants
it back (CPython's default, 5 ms, would be the most a frame waits for it)."""
MAX_TRACEBACKS = 5
"""Slow-path exceptions logged in full; later ones are only counted."""


def log(message: str) -> None:
    # Whoever started us may have closed stderr (an orchestrator that stopped reading):
    # losing a log line must not stop the router.
    with contextlib.suppress(OSError, ValueError):
        print(f"vrlab-router: {message}", file=sys.stderr, flush=True)


def load_fastpath(mode: str) -> tuple[FastPathLike | None, str]:
    """The fast path for `mode` (auto, c, python, off) and a line saying which it is."""
    if mode == "off":
        return None, "off: every frame goes through the Python slow path"
    if mode == "c" and not have_c():
        raise SystemExit("vrlab-router: --fastpath c, but the C extension is not built "
                         "(run `make build`)")
    fp = new_fastpath(mode)
    if isinstance(fp, twin.FastPath):
        why = "; the C extension is not built" if mode == "auto" else ""
        return fp, f"Python twin (appliance.dataplane.twin{why})"
    return fp, "C (appliance.dataplane._fastpath: batch calls on the rings)"


# ---------------------------------------------------------------------------- the daemon


class Daemon(Reconfigure):
    """One router: its rings, its Router, its fast path and its control socket."""

    def __init__(self, config: RouterConfig, control_path: str, fastpath_mode: str,
                 kernel_check: float = KERNEL_CHECK, wait_interfaces: float = 0.0,
                 config_path: str | None = None, busy_poll: float = 0.0) -> None:
        self.config = config
        self.busy_poll = busy_poll
        """Seconds to keep polling the rings without sleeping after the last frame (0: sleep
        in poll(2) as soon as a round finds nothing)."""
        self.config_path = config_path
        """The file SIGHUP re-reads (None: reload is refused)."""
        self.linkwatch: LinkWatch | None = None
        self.reload_requested = False
        self.wait_interfaces = wait_interfaces
        self.kernel_check = kernel_check
        self._kernel_problem = ""
        self._kernel_thread: threading.Thread | None = None
        self._kernel_result: str | None = None
        """The kernel check's finding, set by its thread; None until it is in."""
        self.control_path = control_path
        self.fastpath_mode = fastpath_mode
        self.rings: dict[int, RingSocket] = {}
        self.ring_fds: set[int] = set()
        self.log = log
        self.router: Router | None = None
        self.fp: FastPathLike | None = None
        self.fastpath_text = ""
        self.tables: TableSync | None = None
        self.attached = False
        self.kernel_taken = False
        """Whether take_interfaces ran (close() hands the receive path back only then)."""
        self._fast_trace: tuple[str, ...] | None = None
        """The fast path's trace filter as last set (None: not tracing)."""
        self.control: ControlServer | None = None
        self.commands: ControlCommands | None = None
        self.poller = select.epoll()
        """The daemon's own descriptors: control socket and clients, link notifications, the
        signal wake-up pipe. Never the rings: its descriptor is what the fast path's serve()
        watches besides them, so it turns readable only when Python has work."""
        self.ring_poller = select.poll()
        """The rings and `poller`, for the loop without serve() (no fast path, or tracing)."""
        self.ring_poller.register(self.poller.fileno(), select.POLLIN)
        self.stopping = False
        self.started = time.monotonic()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._errors = 0
        self._dirty: set[int] = set()  # rings with frames queued (or left by a kick)
        self.backlog = False

    # --- start-up --------------------------------------------------------------------

    def start(self) -> None:
        """Start-up (module doc). Everything that can be checked is checked before the
        kernel is touched: a refused configuration (ConfigError, exit 2) leaves the
        interfaces, their addresses, MTUs and sysctls exactly as they were."""
        names = [i.name for i in self.config.interfaces]
        mtus = {i.name: i.mtu for i in self.config.interfaces}
        try:  # a daemon already answering there owns these interfaces: touch nothing
            stale_socket = ControlServer.ensure_free(self.control_path)
        except ControlError as e:
            raise SystemExit(f"vrlab-router: {e}") from None
        if stale_socket:
            log(f"removed the stale control socket {self.control_path} left by a previous run "
                "that did not stop cleanly")
        self.await_interfaces(names)
        where = self.config_path or "config"
        problems = kernel.preflight(names)
        if problems:
            raise ConfigError([f"{where}: {problem}" for problem in problems])
        # The whole router (interfaces, routes, neighbors, sysctls) is built from the links
        # as they are now; taking the interfaces changes only what the router does not read
        # (addresses, offloads, flags) and the MTU it was configured with.
        links: dict[str, LinkInfo] = {}
        for name in names:
            link = kernel.link_info(name)
            links[name] = LinkInfo(link.ifindex, link.mac, link.mtu)
        router = Router(self.config, links, tracer=Tracer(clock=time.monotonic))

        kernel.clear_leftovers(names, stale_socket, log)
        self.kernel_taken = True
        try:
            kernel.take_interfaces(names, mtus, log)
        except kernel.KernelError as e:
            raise SystemExit(f"vrlab-router: {e}") from None
        for name in names:
            log(kernel.describe(name))
        bypass = {i.name: i.qdisc_bypass for i in self.config.interfaces}
        for name in names:
            try:
                ring = RingSocket.open(name, qdisc_bypass=bypass[name])
            except (RingError, OSError) as e:
                raise SystemExit(f"vrlab-router: {name}: cannot open the packet rings: {e}"
                                 ) from None
            self.add_ring(ring)
            if not bypass[name]:
                log(f"{name}: sends through the qdisc (qdisc_bypass: false)")
            if ring.ifindex != links[name].ifindex:
                raise SystemExit(f"vrlab-router: {name}: replaced while the router started "
                                 f"(ifindex {links[name].ifindex}, now {ring.ifindex})")
        self.router = router
        states = self.watch_links()
        for iface in sorted(router.interfaces.values(), key=lambda i: i.ifindex):
            addrs = " ".join(str(a) for a in [*iface.ipv4, *iface.ipv6])
            mac = ":".join(f"{b:02x}" for b in iface.mac)
            log(f"{iface.name} open: ifindex {iface.ifindex} ether {mac} mtu {iface.mtu}: {addrs}")
            state = states.get(iface.ifindex)
            if state is not None and not state.up:
                change = router.set_link(iface.ifindex, False, time.monotonic())
                log(f"{iface.name}: link down at start ({state.describe()}): {change.routes} "
                    "routes out of it not used until it comes up")
        routes = list(router.fib.routes())
        by_origin: dict[str, int] = {}
        for r in routes:
            by_origin[r.origin.name.lower()] = by_origin.get(r.origin.name.lower(), 0) + 1
        log(f"{len(routes)} routes loaded ("
            + ", ".join(f"{n} {o}" for o, n in sorted(by_origin.items())) + ")")

        self.fp, self.fastpath_text = load_fastpath(self.fastpath_mode)
        log(f"fast path: {self.fastpath_text}")
        if self.fp is not None:
            self.tables = TableSync(self.fp, router)  # loads every table once
            self.attach()

        self.poller.register(self._wake_r.fileno(), select.POLLIN)
        if self.linkwatch is not None:
            self.poller.register(self.linkwatch.fileno(), select.POLLIN)

        self.send(router.start(time.monotonic()))
        self.flush()

        self.commands = ControlCommands(router, status=self.status,
                                        reload=lambda: self.reload(time.monotonic()))
        try:
            self.control = ControlServer(self.control_path, self.dispatch, log=log)
        except ControlError as e:
            raise SystemExit(f"vrlab-router: {e}") from None
        self.control.attach(self.poller)
        log(f"control socket {self.control_path} (mode 0600)")

    def watch_links(self) -> dict[int, LinkEvent]:
        """Subscribe to link changes (before reading the current state, so that no change
        falls in between) and return every interface's state now. Without rtnetlink the
        daemon still runs, with every interface taken as up."""
        try:
            self.linkwatch = LinkWatch()
            return self.linkwatch.snapshot()
        except OSError as e:
            log(f"WARNING: cannot follow link state over rtnetlink ({e}); every interface is "
                "taken as up")
            if self.linkwatch is not None:
                self.linkwatch.close()
                self.linkwatch = None
            return {}

    def await_interfaces(self, names: Sequence[str]) -> None:
        """Wait up to --wait-interfaces seconds for the interfaces to exist (a VM booting may
        start us before udev has named its NICs)."""
        deadline = time.monotonic() + self.wait_interfaces
        missing = [n for n in names if not _interface_exists(n)]
        if missing and self.wait_interfaces > 0:
            log(f"waiting up to {self.wait_interfaces:g}s for {', '.join(missing)}")
        while missing and time.monotonic() < deadline and not self.stopping:
            time.sleep(0.1)
            missing = [n for n in missing if not _interface_exists(n)]

    def attach(self) -> None:
        if self.fp is not None and not self.attached:
            for ring in self.rings.values():
                self.fp.attach(ring)
            self.attached = True

    def detach(self) -> None:
        if self.fp is not None and self.attached:
            for ifindex in self.rings:
                self.fp.detach(ifindex)
            self.attached = False

    # --- control ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        assert self.router is not None
        fastpath_counters = self.fp.counters() if self.fp is not None else {}
        # The kernel's PACKET_STATISTICS drop count resets when read, and two readers take
        # from it: the C fast path (while it owns the rings) and RingSocket (otherwise). Each
        # holds part of the total, so the total is their sum; per ring only the second part.
        ring_drops = {ring.name: ring.ring_drops() for ring in self.rings.values()}
        return {
            "hostname": self.router.hostname,
            "fastpath": self.fastpath_text,
            "interfaces": [i.name for i in self.router.interfaces.values()],
            "links_down": [i.name for i in self.router.interfaces.values() if not i.up],
            "uptime": round(time.monotonic() - self.started, 1),
            "generation": self.router.generation,
            "slowpath_errors": self._errors,
            "rx_ring_drops": sum(ring_drops.values())
            + int(fastpath_counters.get("rx_ring_drops", 0)),
            "ring_drops": ring_drops,
            "fastpath_counters": fastpath_counters,
        }

    def dispatch(self, request: dict[str, Any]) -> Any:
        assert self.commands is not None
        self.fold_counters()
        result = self.commands(request)
        self.sync_tables()
        return result

    def fold_counters(self) -> None:
        """Add what the fast path forwarded since last time to the router's Stats, so
        `routerctl show stats` counts every packet ("N forwarded (M fast forwarded)")."""
        if self.tables is not None and self.router is not None:
            self.tables.merge_counters(self.router.stats)

    def sync_tables(self) -> None:
        if self.tables is not None:
            self.tables.sync()

    # --- packets ---------------------------------------------------------------------

    def send(self, actions: Sequence[Action]) -> None:
        """Put the router's Transmit actions on the TX rings (a full ring drops, counted)."""
        assert self.router is not None
        stats = self.router.stats
        for action in actions:
            if not isinstance(action, Transmit):
                continue
            if self.attached and self.fp is not None:
                sent = self.fp.transmit(action.ifindex, action.frame)
            else:
                ring = self.rings.get(action.ifindex)
                sent = ring is not None and ring.send(action.frame)
                if sent:
                    self._dirty.add(action.ifindex)
            if sent:
                stats.bump("link.sent")
            else:
                stats.bump("ip6.odropped" if action.frame[12:14] == b"\x86\xdd"
                           else "ip.odropped")

    def flush(self) -> bool:
        """Kick the TX rings that have frames queued, and those a kick left frames on;
        returns (and keeps in `backlog`) whether a kick left frames, to be kicked again
        within BACKLOG_WAIT."""
        if self.attached and self.fp is not None:
            self._dirty.clear()
            self.backlog = self.fp.flush()
        else:
            self._dirty = {ifindex for ifindex in self._dirty
                           if ifindex in self.rings and self.rings[ifindex].flush()}
            self.backlog = bool(self._dirty)
        return self.backlog

    def slow(self, ifindex: int, frame: bytes, now: float, verdict: int | None = None) -> None:
        assert self.router is not None
        punt = None
        if verdict is not None and self.router.tracer.enabled:
            punt = twin.Verdict(verdict).name[5:].lower()  # PUNT_TTL -> ttl
        try:
            self.send(self.router.receive(ifindex, frame, now, punt))
        except Exception:  # a bug in the slow path must not stop the router
            self._errors += 1
            if self._errors <= MAX_TRACEBACKS:
                log(f"slow path error on a {len(frame)}-byte frame from ifindex {ifindex} "
                    f"({frame[:64].hex()}):\n{traceback.format_exc()}")

    def stale_neighbors_used(self, now: float) -> None:
        """Step the STALE neighbors the fast path forwarded to (STALE -> DELAY, RFC 4861
        §7.3.3); the next table sync gives it the DELAY entries. Issue 13: punting the first
        packet to a STALE neighbor instead cost a 1.4-15 ms slow-path trip every ~30 s."""
        assert self.router is not None and self.fp is not None
        for ifindex, addr in self.fp.stale_neighbors():
            self.send(self.router.neighbor_used(ifindex, addr, now))

    def pump(self, now: float, spin: float = 0.0) -> int:
        """One round: the fast path's batch (or the rings directly), then the punts; returns
        the number of frames taken off the rings. With `spin`, the fast path keeps polling
        (up to `spin` seconds) until its budget is met or a frame needs the slow path."""
        done = 0
        if self.attached and self.fp is not None:
            done, punts = self.fp.poll(BUDGET, spin)
            for ifindex, verdict, frame in punts:
                self.slow(ifindex, frame, now, verdict)
            self.stale_neighbors_used(now)
        else:
            for ifindex, ring in self.rings.items():
                frames = ring.recv_batch(BUDGET)
                done += len(frames)
                for frame in frames:
                    self.slow(ifindex, frame, now)
        self.flush()
        return done

    def tracing_changed(self) -> None:
        """Give the fast path the running trace's filter (or stop its recording)."""
        if self.commands is None or self.fp is None:
            return
        trace = self.commands.trace
        want = tuple(trace.addresses) if trace is not None and self.commands.tracing else None
        if want == self._fast_trace:
            return
        if want is None:
            self.fp.set_trace(b"")
            self.fp.trace_records()  # what it recorded after the session ended
        else:
            self.fp.set_trace(trace_addresses(list(want)), match_all=not want)
        self._fast_trace = want

    def drain_fast_trace(self) -> None:
        """Move the fast path's trace records into the router's tracer."""
        if self._fast_trace is None or self.fp is None or self.router is None:
            return
        blob = self.fp.trace_records()
        if blob and self.router.tracer.enabled:
            for record in fast_records(blob, self.router):
                self.router.tracer.add(record)

    # --- link state ------------------------------------------------------------------

    def link_events(self, now: float) -> None:
        """Apply the kernel's link notifications to the router (see the module doc)."""
        assert self.router is not None and self.linkwatch is not None
        try:
            events = self.linkwatch.read()
        except OSError as e:
            log(f"WARNING: reading link notifications failed: {e}")
            return
        for event in events:
            iface = self.router.interfaces.get(event.ifindex)
            if iface is None:
                continue
            if event.deleted:
                log(f"{iface.name}: interface removed from the system; drop it from the "
                    "configuration and reload (add it back the same way once it returns)")
            change = self.router.set_link(event.ifindex, event.up, now)
            if not change.changed:
                continue
            if change.up:
                log(f"{iface.name}: link up ({event.describe()}): {change.routes} routes "
                    f"restored, {len(change.actions)} announcements sent")
            else:
                log(f"{iface.name}: link down ({event.describe()}): {change.routes} routes "
                    f"withdrawn, {change.neighbors} neighbors flushed, {change.dropped} "
                    "queued packets dropped")
            self.send(change.actions)
            self.flush()
        self.sync_tables()

    def clear_ring_error(self, fd: int) -> None:
        """A packet socket whose interface was set administratively down holds ENETDOWN
        (poll keeps reporting POLLERR until it is read); read it so the loop does not spin.
        The kernel re-hooks the socket itself when the interface comes back up."""
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    # --- reload (SIGHUP) --------------------------------------------------------------

    def request_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload_requested = True

    # --- the loop --------------------------------------------------------------------

    def check_kernel(self) -> None:
        """Say so (once per change) if something gave the kernel an interface back: a DHCP
        client, networkd or a person adding an address or re-enabling IPv6.

        The check runs in a thread of its own and the loop logs its result (`kernel_checked`):
        it reads netlink, ethtool and sysctls in Python, which took 34-41 ms per run with two
        interfaces in a TCG router VM, and every frame that arrived meanwhile waited for it
        (the RTT spikes of issue 13, every 30 s). In its thread the fast path's serve() keeps
        forwarding: it needs the GIL only between sleeps, and the check gives it up at each
        system call and every `SWITCH_INTERVAL`."""
        # An interface set administratively down is the router's state to follow (a link
        # down), not the kernel taking it back: it is checked again once it is up.
        assert self.router is not None
        if self._kernel_thread is not None:
            return  # the last one is still running: one at a time
        up = {i.name for i in self.router.interfaces.values() if i.up}
        names = [i.name for i in self.config.interfaces if i.name in up]
        mtus = {i.name: i.mtu for i in self.config.interfaces}

        def check() -> None:
            try:
                kernel.check_interfaces(names, mtus)
                problem = ""
            except kernel.KernelError as e:
                problem = str(e)
            except Exception as e:  # reported by the loop, like a failed check
                problem = f"checking the interfaces failed: {e}"
            self._kernel_result = problem
            with contextlib.suppress(OSError):
                self._wake_w.send(b"k")  # the loop logs it now, not at its next timer

        self._kernel_thread = threading.Thread(target=check, name="kernel-check", daemon=True)
        self._kernel_thread.start()

    def kernel_checked(self) -> None:
        """Log the kernel check's result once it is in (and only when it changed)."""
        problem = self._kernel_result
        if problem is None or self._kernel_thread is None:
            return
        self._kernel_thread.join()
        self._kernel_thread = None
        self._kernel_result = None
        if problem != self._kernel_problem:
            log(f"WARNING: {problem}" if problem else "the kernel no longer owns any data "
                "interface")
            self._kernel_problem = problem

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> None:
        assert self.router is not None and self.control is not None
        router = self.router
        wake_fd = self._wake_r.fileno()
        link_fd = self.linkwatch.fileno() if self.linkwatch is not None else -1
        ring_fds = self.ring_fds  # grows and shrinks with reload (Reconfigure)
        next_tick = time.monotonic() + TICK
        last_tick = time.monotonic()
        last_fold = time.monotonic()
        last_check = time.monotonic()
        # Without serve() (no fast path, or tracing), NAPI's rule: while a round finds frames,
        # the next round starts at once (poll(2) only looks at the other descriptors, without
        # sleeping); a round that finds none goes back to sleeping in poll(2), after
        # `busy_poll` seconds of polling if that is set. serve() follows the same rule inside.
        last_work = -1.0
        found = False
        own_fd = self.poller.fileno()
        while not self.stopping:
            now = time.monotonic()
            busy = found or now - last_work < self.busy_poll
            # the tick: when a timer is due, at most every TICK, at least every IDLE_TICK
            tick_at = min(next_tick, max(router.next_timer(), last_tick + TICK))
            timeout = 0.0 if busy else max(0.0, tick_at - now)
            rings_ready = busy
            served = False
            punts: list[tuple[int, int, bytes]] = []
            if self.attached and self.fp is not None and self._fast_trace is None:
                # The fast path waits and forwards; back here only for Python's work.
                _, punts, events = self.fp.serve(SERVE_BUDGET, timeout, own_fd,
                                                  self.busy_poll)
                served = True
            else:
                if self.backlog:  # serve() does the same inside
                    timeout = min(timeout, BACKLOG_WAIT)
                events = self.ring_poller.poll(timeout * 1000.0)
                if self.backlog and not any(fd in ring_fds for fd, _ in events):
                    self.flush()  # (a ring with frames: this round's pump kicks)
            now = time.monotonic()
            links_ready = False
            own_events: list[tuple[int, int]] = []
            for fd, mask in events:
                if fd == own_fd:
                    own_events = self.poller.poll(0)
                elif fd in ring_fds:
                    rings_ready = True
                    if mask & select.POLLERR:
                        self.clear_ring_error(fd)
            for fd, mask in own_events:
                if fd == link_fd:
                    links_ready = True
                elif fd == wake_fd:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(64)
                elif self.control.owns(fd):
                    self.control.handle(fd, mask)
            if served:
                for ifindex, verdict, frame in punts:
                    self.slow(ifindex, frame, now, verdict)
                self.stale_neighbors_used(now)
                self.flush()
                rings_ready = False
            if links_ready:  # before the batch: no frame leaves by a link known to be down
                self.link_events(now)
            if self.reload_requested:
                self.reload_requested = False
                self.reload(now)
            self.tracing_changed()
            found = False
            if rings_ready:
                self.sync_tables()
                if self.pump(now, self.busy_poll):
                    found = True
                    last_work = now
            if now >= tick_at:
                self.send(router.tick(now))
                self.flush()
                last_tick = now
                tracing = self._fast_trace is not None or router.tracer.enabled
                next_tick = now + (TICK if tracing else IDLE_TICK)
                if now - last_fold >= 1.0:
                    self.fold_counters()
                    last_fold = now
                if self.kernel_check and now - last_check >= self.kernel_check:
                    self.check_kernel()
                    last_check = now
            self.kernel_checked()
            self.sync_tables()
            self.drain_fast_trace()
            if self.commands is not None:
                self.commands.trace_poll()

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        with contextlib.suppress(Exception):
            self.detach()
        for ring in self.rings.values():
            with contextlib.suppress(Exception):
                ring.close()
        # the kernel takes its receive path back (kernel.detach_stack in take_interfaces)
        if self.kernel_taken:
            kernel.release_stack([i.name for i in self.config.interfaces], log)
        self.rings.clear()
        self.poller.close()
        if self.linkwatch is not None:
            self.linkwatch.close()
            self.linkwatch = None
        self._wake_r.close()
        self._wake_w.close()


def _interface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vrlab-router",
        description="Run the vrlab IPv4/IPv6 router on the interfaces named in the config.")
    parser.add_argument("--config", required=True, help="router YAML (see DESIGN.md)")
    parser.add_argument("--control", default=DEFAULT_SOCKET,
                        help=f"control socket for routerctl (default {DEFAULT_SOCKET})")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--fastpath", choices=("auto", "c", "python", "off"), default="auto",
                       help="auto: the C extension if built, else its Python twin (default)")
    group.add_argument("--no-fastpath", dest="fastpath", action="store_const", const="off",
                       help="every frame through the Python slow path")
    parser.add_argument("--kernel-check", type=float, default=KERNEL_CHECK, metavar="SECONDS",
                        help="how often to check that the kernel has not taken an interface "
                             f"back, warning on stderr (default {KERNEL_CHECK:g}; 0 = never)")
    parser.add_argument("--wait-interfaces", type=float, default=0.0, metavar="SECONDS",
                        help="wait this long for missing interfaces to appear (default 0)")
    parser.add_argument("--busy-poll", type=float, default=0.0, metavar="MICROSECONDS",
                        help="keep polling the rings this long after the last frame instead "
                             "of sleeping (saves the receiving CPU a wake-up per frame; for a "
                             "core of its own, not a shared VM, where 2000 made every figure "
                             "of bench vm-forward worse: default 0)")
    return parser


def prepare_snapshot() -> None:
    """Start-up work that is the same on every router, done by a snapshot's VM before its save
    (`vrlab-router --preload`, images/overlay/usr/local/bin/vrlab-router) so that routers
    restored from it skip it. Measured in a restored router (cProfile, TCG): argparse's
    formatter imports shutil (and with it bz2, lzma), gettext and locale the first time a parser
    is built, ~0.2 s; creating the down bridge that `kernel.detach_stack` makes the data
    interfaces ports of, ~0.16 s. A bridge with no ports is not a leftover
    (`kernel.clear_leftovers`), and `detach_stack` uses one it finds."""
    from appliance.host.netlink import Netlink

    build_parser()
    try:
        socket.if_nametoindex(kernel.DETACH_BRIDGE)
    except OSError:
        with contextlib.suppress(OSError), Netlink() as nl:
            nl.add_bridge(kernel.DETACH_BRIDGE)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_router_config(args.config)
    except ConfigError as e:
        for problem in e.problems:
            print(f"vrlab-router: {problem}", file=sys.stderr)
        return 2
    log(f"{config.hostname}: starting (pid {os.getpid()}, config {args.config})")
    sys.setswitchinterval(SWITCH_INTERVAL)
    daemon = Daemon(config, args.control, args.fastpath, args.kernel_check,
                    args.wait_interfaces, config_path=args.config,
                    busy_poll=args.busy_poll / 1e6)
    handlers: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        handlers[sig] = signal.signal(sig, daemon.request_stop)
    handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, daemon.request_reload)
    old_wakeup = signal.set_wakeup_fd(daemon._wake_w.fileno(), warn_on_full_buffer=False)
    try:
        try:
            daemon.start()
        except ConfigError as e:  # the router refused the config given these links
            for problem in e.problems:
                print(f"vrlab-router: {problem}", file=sys.stderr)
            return 2
        if daemon.stopping:
            return 0
        with contextlib.suppress(OSError, ValueError):
            print("vrlab-router: ready", flush=True)
        log("ready")
        daemon.run()
        log("stopping on signal")
        return 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 1
        raise
    finally:
        signal.set_wakeup_fd(old_wakeup)
        daemon.close()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
