"""The daemon's reload (SIGHUP, `routerctl reload`): the configuration file read again and
the difference applied in place, interfaces included.

The router core plans and applies the change (`appliance.control.reload`); this part does
what only the daemon can: it finds the links of interfaces the new file adds (they must
exist and not be a loopback, as at start), takes them from the kernel and opens their rings
*before* the router uses them (their announcements leave at once), and after the router has
let an interface go it detaches the fast path from its ring, closes it and gives the kernel
its receive path back. On any problem nothing changes: rings opened for the attempt are
closed again and the running configuration stays.

`Reconfigure` is one of the parts `Daemon` is made of; its state is declared here and set
by `Daemon.__init__`.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Sequence
from typing import Any

from appliance.config import ConfigError, RouterConfig, load_router_config
from appliance.control.reload import ReloadRefused, apply_reload, plan_reload
from appliance.core.router import Action, LinkInfo, Router
from appliance.dataplane.ring import RingError, RingSocket
from appliance.dataplane.tablesync import FastPathLike
from appliance.host import kernel

__all__ = ["Reconfigure"]


class Reconfigure:
    """Reload and the interfaces that come and go with it."""

    config: RouterConfig
    config_path: str | None
    router: Router | None
    rings: dict[int, RingSocket]
    ring_fds: set[int]
    ring_poller: select.poll
    fp: FastPathLike | None
    attached: bool
    log: Callable[[str], None]

    def send(self, actions: Sequence[Action]) -> None:
        raise NotImplementedError

    def flush(self) -> bool:
        raise NotImplementedError

    def sync_tables(self) -> None:
        raise NotImplementedError

    # --- rings of interfaces taken at run time ---------------------------------------

    def add_ring(self, ring: RingSocket) -> None:
        """Poll `ring` and hand it to the fast path (when the fast path holds the rings)."""
        self.rings[ring.ifindex] = ring
        self.ring_fds.add(ring.fd)
        self.ring_poller.register(ring.fd, select.POLLIN)
        if self.attached and self.fp is not None:
            self.fp.attach(ring)

    def open_interface(self, name: str, mtu: int | None, ifindex: int,
                       qdisc_bypass: bool = True) -> RingSocket:
        """Take `name` from the kernel and open its ring; raises KernelError, RingError or
        OSError (the caller closes what it opened)."""
        kernel.take_interfaces([name], {name: mtu}, self.log)
        ring = RingSocket.open(name, qdisc_bypass=qdisc_bypass)
        if ring.ifindex != ifindex:
            ring.close()
            raise RingError(f"replaced meanwhile (ifindex {ifindex}, now {ring.ifindex})")
        self.add_ring(ring)
        return ring

    def close_interface(self, ifindex: int) -> None:
        """Stop using the ring of `ifindex` and give the kernel the interface back."""
        ring = self.rings.pop(ifindex, None)
        if ring is None:
            return
        if self.attached and self.fp is not None:
            self.fp.detach(ifindex)
        self.ring_fds.discard(ring.fd)
        self.ring_poller.unregister(ring.fd)
        name = ring.name
        ring.close()
        kernel.release_stack([name], self.log)

    # --- reload ------------------------------------------------------------------------

    def reload(self, now: float) -> dict[str, Any]:
        """Re-read the configuration file and apply the difference. On any problem the
        running configuration is left exactly as it was. Everything is logged; the answer
        (for `routerctl reload`) is ``{applied, summary, problems, restart}``."""
        assert self.router is not None
        path = self.config_path
        log = self.log

        def refused(problems: list[str], why: str, restart: bool = False) -> dict[str, Any]:
            for problem in problems:
                log(f"reload: {problem}")
            log(f"reload refused: {why}; the running configuration is unchanged")
            return {"applied": False, "summary": f"reload refused: {why}",
                    "problems": problems, "restart": restart}

        if path is None:
            return refused([], "no configuration file to re-read")
        log(f"reload: reading {path}")
        try:
            new = load_router_config(path)
        except ConfigError as e:  # each problem already says file:line:col
            return refused(e.problems, f"{len(e.problems)} problem(s) in {path}")
        running = {i.name for i in self.config.interfaces}
        added = [ic for ic in new.interfaces if ic.name not in running]
        problems = [f"{path}: {p}" for p in kernel.preflight([ic.name for ic in added])]
        if problems:
            return refused(problems, f"{len(problems)} problem(s) in {path}")
        links = {}
        for ic in added:
            link = kernel.link_info(ic.name)
            links[ic.name] = LinkInfo(link.ifindex, link.mac, link.mtu)
        try:
            plan = plan_reload(self.router, self.config, new, links)
        except ReloadRefused as e:
            problems = [f"{path}: {problem}" for problem in e.problems]
            if e.restart:
                return refused(problems, "restart needed for this change", restart=True)
            return refused(problems, f"{len(e.problems)} problem(s) in {path}")
        opened: list[int] = []
        try:
            for ic in added:
                self.open_interface(ic.name, ic.mtu, links[ic.name].ifindex,
                                    ic.qdisc_bypass)
                opened.append(links[ic.name].ifindex)
        except (kernel.KernelError, RingError, OSError) as e:
            for ifindex in opened:
                self.close_interface(ifindex)
            return refused([f"{ic.name}: cannot take it: {e}"], "an added interface failed")
        gone = [self.router.by_name[name].ifindex for name in plan.interfaces_removed]
        result = apply_reload(self.router, plan, now)
        self.config = new
        for ifindex in gone:
            self.close_interface(ifindex)
        for ic in new.interfaces:  # the transmit path can change under running rings
            iface = self.router.by_name.get(ic.name)
            ring = self.rings.get(iface.ifindex) if iface is not None else None
            if ring is not None and ring.qdisc_bypass() != ic.qdisc_bypass:
                ring.set_qdisc_bypass(ic.qdisc_bypass)
                log(f"reload: {ic.name}: qdisc_bypass {str(ic.qdisc_bypass).lower()}")
        for warning in result.warnings:
            log(f"reload: {warning}")
        self.send(result.actions)
        self.flush()
        self.sync_tables()
        summary = f"reload applied ({path}): {result.summary()}"
        log(summary)
        return {"applied": True, "summary": summary, "problems": result.warnings,
                "restart": False}
