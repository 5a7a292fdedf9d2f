"""Link impairments, applied inside the guests: tc-netem(8) on the egress of each sender.

A topology's impairment says what a link delivers at an endpoint (orchestrate.topology.impairment:
"what that endpoint receives"; link-level values apply at every endpoint, so both directions).
Every guest kernel of the image has sch_netem, so vrlab shapes each interface's egress in its
own guest with `tc qdisc replace dev IF root netem ...`, run over SSH once the node is ready
(and after a snapshot restore, since that happens before ready). Why not on the host: see
docs/DESIGN.md "Link impairments".

The mapping from "what an endpoint receives" to "what a sender's egress does":

- point-to-point: what A receives is what B sends, so A's receive impairment goes on B's
  egress. Both ends may differ (`--one-way`, per-endpoint values).
- LAN segment (three or more endpoints): what A receives comes from every other member's
  egress, and each member's egress reaches every other member. A link-level impairment is the
  same at every endpoint, so it goes on every member's egress: what each member receives from
  any other is impaired once (delay 20ms: +40 ms round trip, as on a point-to-point link). A
  per-endpoint value on a LAN cannot be done faithfully this way (one member's egress would
  impair what all the others receive too), so the topology refuses it, placed
  (`lan_endpoint_problem`).

vrlab-router nodes send from a TX ring that bypasses the qdisc by default
(PACKET_QDISC_BYPASS); the orchestrator sets `qdisc_bypass: false` in their router config on
every interface of an impaired link, so their frames (fast and slow path share the ring) go
through the netem qdisc like a kernel's.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrate.topology.impairment import LAN_PER_ENDPOINT
from orchestrate.topology.model import Impairment

if TYPE_CHECKING:
    from orchestrate.lab import Lab
    from orchestrate.links import NicSpec

NETEM_LIMIT = 10_000
"""Packets netem may hold while it delays them; 1000 (tc's default) caps a 20 ms link at 50k
packets/s, which is more than a TCG guest sends, but a rate limit queues far longer."""


class NetemError(ValueError):
    """An impairment that cannot be mapped onto the senders' egress."""


def tc_args(imp: Impairment) -> list[str]:
    """netem's arguments for `tc qdisc replace dev IF root netem ARGS` (tc-netem(8) units)."""
    args: list[str] = ["limit", str(NETEM_LIMIT)]
    if imp.delay is not None:
        args += ["delay", f"{imp.delay:g}ms"]
        if imp.jitter:
            args.append(f"{imp.jitter:g}ms")
    if imp.loss:
        args += ["loss", f"{imp.loss:g}%"]
    if imp.duplicate:
        args += ["duplicate", f"{imp.duplicate:g}%"]
    if imp.reorder:
        args += ["reorder", f"{imp.reorder:g}%"]
    if imp.corrupt:
        args += ["corrupt", f"{imp.corrupt:g}%"]
    if imp.rate:
        args += ["rate", f"{imp.rate}bit"]
    return args


def tc_command(ifname: str, imp: Impairment | None) -> str:
    """The shell command that gives `ifname`'s egress `imp` (None: back to the default qdisc).

    `replace` is idempotent; deleting the root qdisc when there is none fails, so that one is
    allowed to fail (the result is the same: no netem)."""
    if imp:
        return shlex.join(["tc", "qdisc", "replace", "dev", ifname, "root", "netem",
                           *tc_args(imp)])
    return f"tc qdisc del dev {shlex.quote(ifname)} root 2>/dev/null || true"


def egress(receives: Sequence[Impairment | None]) -> list[Impairment | None]:
    """Each endpoint's egress netem, given what each endpoint of one link receives (same order).

    NetemError on a LAN whose endpoints would receive different impairments."""
    if len(receives) == 2:
        return [receives[1], receives[0]]
    if any(r != receives[0] for r in receives[1:]):
        raise NetemError(LAN_PER_ENDPOINT)
    return list(receives)


def changed(nics: Sequence[NicSpec], target: NicSpec, values: dict[str, str] | None, *,
            one_way: bool) -> dict[tuple[str, str], Impairment | None]:
    """`vrlab link set`: the new egress netem of each sender that changes, keyed by
    (node, ifname). `nics` are every endpoint of `target`'s link; `values` (topology keys and
    units) are merged over what each sender's egress has now; None clears. Both directions:
    every member's egress. One way (what `target` receives): its peer's egress; NetemError on
    a LAN, or for values netem refuses (jitter without delay...)."""
    from orchestrate.topology.impairment import parse_impairment

    if one_way:
        if len(nics) != 2:
            raise NetemError(LAN_PER_ENDPOINT + " (--one-way)")
        senders = [n for n in nics if (n.node, n.ifname) != (target.node, target.ifname)]
    else:
        senders = list(nics)
    out: dict[tuple[str, str], Impairment | None] = {}
    for nic in senders:
        if values is None:
            out[(nic.node, nic.ifname)] = None
            continue
        new, issues = parse_impairment(values, parse_impairment(nic.netem or {})[0])
        if issues:
            raise NetemError("; ".join(message for _, message, _ in issues))
        out[(nic.node, nic.ifname)] = new if new else None
    return out


def guest_script(shaping: Sequence[tuple[str, Impairment | None]]) -> str | None:
    """One node's shaping, (ifname, egress netem or None to remove it) pairs, as one shell
    command (None: nothing to do)."""
    commands = [tc_command(ifname, imp) for ifname, imp in shaping]
    return " && ".join(commands) if commands else None


def recorded(nics: Sequence[NicSpec]) -> list[tuple[str, Impairment | None]]:
    """The shaping a node's NICs were planned (or last set) with: the ones that have netem."""
    from orchestrate.topology.impairment import parse_impairment

    return [(n.ifname, parse_impairment(n.netem)[0]) for n in nics if n.netem]


def apply(lab: Lab, node: str,
          shaping: Sequence[tuple[str, Impairment | None]] | None = None) -> None:
    """Run the node's tc commands in its guest (over SSH); NetemError with tc's words if the
    guest refuses. `shaping` defaults to the node's recorded NICs (`recorded`)."""
    script = guest_script(recorded(lab.spec(node).nics) if shaping is None else shaping)
    if script is None:
        return
    result = lab.node(node).exec(script, timeout=60.0)
    if not result.ok:
        raise NetemError(f"{node}: {script}: exit {result.exit_status}: "
                         f"{(result.stderr or result.stdout).strip()}")
