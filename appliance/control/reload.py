"""Applying a changed router configuration to a running Router (the daemon's SIGHUP).

As routing daemons do on `kill -HUP`: the file is read and checked again; if anything is
wrong, every problem is reported and the running configuration stays exactly as it was.
Otherwise only the difference is applied, in place, without touching the rings:

- static routes added / removed (a route whose gateway or type changed is removed, then
  added); connected and local routes follow the interface addresses;
- interface addresses added / removed (with their connected and local routes; static
  routes whose gateway was only reachable through a removed address go too, as on Linux);
- static neighbors (`neighbors:`) added / removed;
- sysctls changed (a knob no longer in the file returns to its default); knobs the file did
  not change keep their running values (`routerctl sysctl -w` survives a reload);
- the hostname.

- interfaces added (the caller gives their links and opens their rings; their addresses,
  routes and neighbors follow) or removed (every route out of them withdrawn, their
  neighbors flushed; the caller closes their rings).

What cannot change without a restart is refused with "restart needed": an interface's MTU
(the ring slot size follows it) and its link-local address (the routes and neighbors learned
through it). Routes added with `routerctl route add` are not in the file and are left alone.

    plan = plan_reload(router, old_config, new_config, new_links)  # ReloadRefused if not
    result = apply_reload(router, plan, now)              # frames to send, lines to log
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Interface, IPv6Interface

from appliance.config import (
    ConfigError,
    InterfaceConfig,
    NeighborConfig,
    RouteConfig,
    RouterConfig,
)
from appliance.core.router import Action, LinkInfo, Router
from appliance.core.sysctl import KNOBS, SysctlError

__all__ = ["ReloadPlan", "ReloadRefused", "ReloadResult", "apply_reload", "plan_reload"]

Address = IPv4Interface | IPv6Interface


class ReloadRefused(Exception):
    """The new configuration cannot be applied; `.problems` says why (each one line)."""

    def __init__(self, problems: list[str], restart: bool = False) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.restart = restart
        """True when the change itself is fine but needs a restart."""


@dataclass
class ReloadPlan:
    """The difference between the running configuration and the new one."""

    new: RouterConfig
    hostname: str | None = None
    interfaces_removed: list[str] = field(default_factory=list)
    interfaces_added: list[tuple[InterfaceConfig, LinkInfo]] = field(default_factory=list)
    addresses_removed: list[tuple[str, Address]] = field(default_factory=list)
    addresses_added: list[tuple[str, Address]] = field(default_factory=list)
    routes_removed: list[RouteConfig] = field(default_factory=list)
    routes_added: list[RouteConfig] = field(default_factory=list)
    neighbors_removed: list[NeighborConfig] = field(default_factory=list)
    neighbors_added: list[NeighborConfig] = field(default_factory=list)
    sysctl: dict[str, int] = field(default_factory=dict)
    """Knobs to set: the new file's value, or the default for a knob the file dropped."""

    @property
    def empty(self) -> bool:
        return not (self.hostname is not None or self.interfaces_removed
                    or self.interfaces_added or self.addresses_removed
                    or self.addresses_added or self.routes_removed or self.routes_added
                    or self.neighbors_removed or self.neighbors_added or self.sysctl)


@dataclass
class ReloadResult:
    actions: list[Action] = field(default_factory=list)
    """Frames to send (announcements of new addresses, packets released to new neighbors)."""
    changes: list[str] = field(default_factory=list)
    """What was done, one short item each, for the summary line."""
    warnings: list[str] = field(default_factory=list)
    """Side effects worth a log line of their own (a route that went with its address)."""

    def summary(self) -> str:
        return "; ".join(self.changes) if self.changes else "no changes"


def _route_text(rc: RouteConfig) -> str:
    if rc.type != "unicast":
        return f"{rc.prefix} {rc.type}"
    if rc.via is not None:
        scope = f"%{rc.via_interface}" if rc.via_interface is not None else ""
        return f"{rc.prefix} via {rc.via}{scope}"
    return f"{rc.prefix} dev {rc.via_interface}"


def _restart_needed(old: RouterConfig, new: RouterConfig) -> list[str]:
    problems = []
    old_ifs = {i.name: i for i in old.interfaces}
    new_ifs = {i.name: i for i in new.interfaces}
    for name in sorted(set(old_ifs) & set(new_ifs)):
        a, b = old_ifs[name], new_ifs[name]
        if a.mtu != b.mtu:
            problems.append(f"interface {name}: mtu {a.mtu or 'default'} -> "
                            f"{b.mtu or 'default'}: restart needed (ring slots follow the MTU)")
        if a.link_local != b.link_local:
            problems.append(f"interface {name}: link_local {a.link_local or 'EUI-64'} -> "
                            f"{b.link_local or 'EUI-64'}: restart needed")
    return problems


def plan_reload(router: Router, old: RouterConfig, new: RouterConfig,
                new_links: Mapping[str, LinkInfo] | None = None) -> ReloadPlan:
    """What applying `new` over `old` would change on `router`; raises ReloadRefused with
    every problem when it cannot be applied (a restart needed, an added interface with no
    link in `new_links`, or a route/neighbor the new configuration itself makes impossible:
    a gateway off every subnet, ...)."""
    restart = _restart_needed(old, new)
    if restart:
        raise ReloadRefused(restart, restart=True)
    old_ifs = {i.name: i for i in old.interfaces}
    new_links = new_links or {}
    added = [ic for ic in new.interfaces if ic.name not in old_ifs]
    missing = [f"interface {ic.name} added: no such interface" for ic in added
               if ic.name not in new_links]
    if missing:
        raise ReloadRefused(missing)
    # Check the new configuration as a whole the way start-up does: a Router built from it
    # on the same links (never used, never sends anything).
    links = {iface.name: LinkInfo(iface.ifindex, iface.mac, iface.mtu)
             for iface in router.interfaces.values()}
    links.update((ic.name, new_links[ic.name]) for ic in added)
    try:
        Router(new, links)
    except ConfigError as e:
        raise ReloadRefused(e.problems) from None

    plan = ReloadPlan(new)
    if new.hostname != old.hostname:
        plan.hostname = new.hostname
    new_names = {i.name for i in new.interfaces}
    plan.interfaces_removed = [i.name for i in old.interfaces if i.name not in new_names]
    plan.interfaces_added = [(ic, new_links[ic.name]) for ic in added]
    for iface in new.interfaces:
        if iface.name not in old_ifs:
            continue  # its addresses come with it
        before = old_ifs[iface.name].addresses
        plan.addresses_removed += [(iface.name, a) for a in before if a not in iface.addresses]
        plan.addresses_added += [(iface.name, a) for a in iface.addresses if a not in before]
    plan.routes_removed = [r for r in old.routes if r not in new.routes]
    plan.routes_added = [r for r in new.routes if r not in old.routes]
    plan.neighbors_removed = [n for n in old.neighbors if n not in new.neighbors]
    plan.neighbors_added = [n for n in new.neighbors if n not in old.neighbors]
    for name in sorted(set(old.sysctl) | set(new.sysctl)):
        default = KNOBS[name].default
        if old.sysctl.get(name, default) != new.sysctl.get(name, default):
            plan.sysctl[name] = new.sysctl.get(name, default)
    return plan


def apply_reload(router: Router, plan: ReloadPlan, now: float) -> ReloadResult:
    """Apply `plan` (from `plan_reload`) to `router`: removals first, so that a changed
    route or address is replaced rather than refused. Router.config becomes the new one."""
    result = ReloadResult()
    changes = result.changes

    def attempt(what: str, exc: Exception) -> None:
        # plan_reload checked the whole configuration; this is a run-time conflict (a route
        # added by routerctl meanwhile, say): say so and carry on with the rest.
        result.warnings.append(f"{what}: {exc}")

    for rc in plan.routes_removed:
        try:
            if router.delete_route(rc.prefix) is not None:
                changes.append(f"route -{_route_text(rc)}")
        except ConfigError as e:
            attempt(f"route -{rc.prefix}", e)
    for nc in plan.neighbors_removed:
        if router.delete_static_neighbor(nc):
            changes.append(f"neighbor -{nc.address} on {nc.interface}")
    for name in plan.interfaces_removed:
        change = router.remove_interface(name)
        changes.append(f"interface -{name}")
        result.warnings.append(f"{name} removed: {change.routes} routes withdrawn, "
                               f"{change.neighbors} neighbors flushed, {change.dropped} "
                               "queued packets dropped")
    for name, address in plan.addresses_removed:
        try:
            gone = router.remove_address(router.by_name[name].ifindex, address)
        except ConfigError as e:
            attempt(f"address -{address} on {name}", e)
            continue
        changes.append(f"address -{address} on {name}")
        for route in gone:
            result.warnings.append(f"route {route.prefix} via {route.gateway} removed: its "
                                   f"gateway is no longer on a subnet of {name}")
    def add(what: str, change: Callable[[], list[Action] | None]) -> None:
        try:
            actions = change()
        except ConfigError as e:
            attempt(what, e)
            return
        result.actions += actions or []
        changes.append(what)

    for ic, link in plan.interfaces_added:
        add(f"interface +{ic.name}", partial(router.add_interface, ic, link, now))
    for name, address in plan.addresses_added:
        add(f"address +{address} on {name}",
            partial(router.add_address, router.by_name[name].ifindex, address, now))
    for rc in plan.routes_added:
        add(f"route +{_route_text(rc)}", partial(router.add_route, rc))
    for nc in plan.neighbors_added:
        add(f"neighbor +{nc.address} on {nc.interface}",
            partial(router.add_static_neighbor, nc, now))
    for name, value in plan.sysctl.items():
        try:
            old = router.sysctl.set(name, value)
        except SysctlError as e:
            attempt(f"sysctl {name}", e)
            continue
        if old != value:
            changes.append(f"sysctl {name} {old} -> {value}")
    if plan.hostname is not None:
        changes.append(f"hostname {router.hostname} -> {plan.hostname}")
        router.hostname = plan.hostname
    router.config = plan.new
    return result
