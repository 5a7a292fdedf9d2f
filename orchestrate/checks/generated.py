"""Checks vrlab writes itself from the topology: `{kind: reachability}`.

`reachability` becomes, for each ordered pair of hosts and each family both have an address
of, a ping (`count` echoes, default 1), and for each unordered pair a traceroute whose
expected hops are the path the routing tables give (orchestrate.topology.routing.path), hop
by hop. Options: `families` ([4, 6] by default: those the hosts have), `nodes` (the hosts to
include; default every host), `traceroute` (default true).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appliance.yamlsource import Document, KeyPath, Problem
from orchestrate.checks.schema import ValidCheck, validate_check
from orchestrate.topology.routing import path

if TYPE_CHECKING:
    from orchestrate.topology import Topology


def validate_item(item: dict[Any, Any], topology: Topology, doc: Document, where: KeyPath
                  ) -> tuple[list[Problem], list[ValidCheck]]:
    """One `tests:` item: its problems, or the checks it stands for (one, or generated)."""
    problems, valid = validate_check(item, topology, doc, where)
    if problems or valid is None:
        return problems, []
    if valid.kind == "reachability":
        issues, checks = reachability(valid.params, topology)
        return [doc.problem(where, message, hint) for message, hint in issues], checks
    return [], [valid]


def reachability(params: dict[str, Any], topology: Topology
                 ) -> tuple[list[tuple[str, str]], list[ValidCheck]]:
    """The generated checks, or (message, hint) for each pair that has no path."""
    hosts = params.get("nodes") or [n.name for n in topology.hosts()]
    families = params.get("families", [4, 6])
    common: dict[str, Any] = {k: params[k] for k in ("attempts", "interval", "timeout")
                              if k in params}
    count = params.get("count", 1)
    checks: list[ValidCheck] = []
    issues: list[tuple[str, str]] = []
    for family in families:
        have = [h for h in hosts if topology.nodes[h].first_address(family) is not None]
        for i, a in enumerate(have):
            for j, b in enumerate(have):
                if a == b:
                    continue
                ping: dict[str, Any] = {"from": a, "to": b, "family": family, "count": count,
                                        **common}
                checks.append(ValidCheck("ping", f"reachability IPv{family} ping {a} -> {b}",
                                         ping))
                if j < i or not params.get("traceroute", True):
                    continue
                target = topology.nodes[b].first_address(family)
                assert target is not None
                hops = path(topology, a, target)
                if hops is None:
                    issues.append((f"no IPv{family} path from {a} to {b} in the routing tables",
                                   "routing: auto computes one; or write the routes"))
                    continue
                trace: dict[str, Any] = {"from": a, "to": b, "family": family, "hops": hops,
                         "max_hops": max(8, len(hops) + 2), **common}
                checks.append(ValidCheck(
                    "traceroute", f"reachability IPv{family} traceroute {a} -> {b}: "
                    + " ".join(hops), trace))
    if not checks and not issues:
        issues.append(("reachability needs two hosts with addresses of a family",
                       "add hosts, or list them in nodes:"))
    return issues, checks
