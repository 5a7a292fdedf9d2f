"""The checks schema: the `tests:` section of a topology, validated at load time
(orchestrate.checks.runner runs them against a lab).

Every check is a mapping with `kind` and the keys of that kind, plus the common keys `name`
(shown in results), `attempts` (default 3) and `interval` (seconds between attempts,
default 2): a check passes as soon as one attempt passes, within that bounded window.

- `ping`: `from` (node), `to` (a node -> its first address of the family; `node:ifname` ->
  that interface's address, or its link-local one when it has no global address of the
  family; or a literal address), `family` 4|6 (default: the literal's, else 4 if the target
  has IPv4), `count` (1), `size`, `df` (bool: set DF / forbid fragmentation), `ttl`,
  `expect`: `success` (every echo answered) or an ICMP error the source must receive:
  `unreachable` (any), `net-unreachable`, `host-unreachable`, `port-unreachable`,
  `admin-prohibited`, `frag-needed` (IPv4 Fragmentation Needed or IPv6 Packet Too Big; with
  `mtu:` the reported MTU must match), `time-exceeded`, or `no-reply` (nothing at all).
- `traceroute`: `from`, `to`, `family`, `hops`: the expected hops in order, each a node name
  (any of its addresses answers) or an address; the last hop is the destination.
  `max_hops` (default 8). `proto`: the probes, `udp` (default, traceroute's own), `tcp`
  (`traceroute -T`: SYNs to port 80, answered by the destination's RST or SYN-ACK) or `icmp`
  (`traceroute -I`: echo requests).
Commands (`exec`, `counter`, `capture`) may name addresses as `{node.4}` / `{node.6}`: the
node's first IPv4 / global IPv6 address.

- `exec`: `node`, `command` (run with sh), `status` (expected exit status, default 0),
  `stdout` (a regular expression that must match somewhere in the output).
- `counter`: `node` (a router), `key` (a `routerctl show stats` counter such as
  `ip.redirectsent`), `at_least` (default 1): the counter must grow by at least that much
  while `command` runs on node `on`; without `command`, between the start of the test run
  and this check (so it measures what the checks before it caused).
- `ping-stats`: `from`, `to`, `family`, `count` (20) echoes `gap` seconds apart (0.2; root
  in the guest allows 0.002), `size`; `rtt: [min, max]`: the minimum round-trip time in ms
  must lie in it (the minimum: TCG scheduling adds noise to the rest), `loss: [min, max]`: the
  percentage of echoes lost; `baseline` (a second target, pinged the same way) with
  `added: [min, max]`: the minimum RTT to `to` minus the minimum RTT to `baseline`, in ms,
  must lie in it (what an impaired link adds, measured against a path without it).
- `transfer`: `from`, `to`, `family`, `bytes` (2 MiB) of random data over TCP (netcat, `port`
  5201): the SHA-256 on arrival must equal the one sent.
- `reachability` (generated: orchestrate.checks.generated): ping between every ordered pair
  of hosts and traceroute along the computed path between every pair; `families`, `nodes`
  (hosts), `traceroute` (true), `count`.
- `capture`: `endpoint` (`node:ifname` on a link), `command` run on node `on`, `filter` (a
  tcpdump filter expression), `expect` `present` (default) or `absent`: whether a packet
  matching the filter crossed that interface while the command ran.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Any

from appliance.yamlsource import Document, KeyPath, Problem
from orchestrate.pcapfilter import filter_problem
from orchestrate.topology.model import DOCUMENTATION_HINT, documentation_problem

if TYPE_CHECKING:
    from orchestrate.topology import Topology


@dataclass(frozen=True, slots=True)
class _Issue:
    """A problem relative to one check, before it is placed in the file (see `validate_check`)."""

    path: KeyPath
    """The key inside the check, e.g. `("to",)`; `()` for the check as a whole."""
    message: str
    hint: str = ""
    at_key: bool = False
    """Placed at the key itself (an unknown key) rather than at its value."""


@dataclass(frozen=True, slots=True)
class ValidCheck:
    """A `tests:` item that passed validation."""

    kind: str
    name: str
    params: dict[str, Any]
    """Every key except kind and name, normalised."""


COMMON_KEYS = ("kind", "name", "attempts", "interval", "timeout")
DEFAULT_ATTEMPTS = 3
DEFAULT_INTERVAL = 2.0
DEFAULT_TIMEOUT = 30.0

PING_EXPECT = (
    "success", "unreachable", "net-unreachable", "host-unreachable", "port-unreachable",
    "admin-prohibited", "frag-needed", "time-exceeded", "no-reply",
)
CAPTURE_EXPECT = ("present", "absent")
TRACEROUTE_PROTOS = ("udp", "tcp", "icmp")
COUNTER_KEY_RE = re.compile(r"^[a-z][a-z0-9]*(\.[A-Za-z0-9_<>-]+)+$")


@dataclass(frozen=True, slots=True)
class Param:
    """One key of a check kind and how to check its value."""

    name: str
    check: Callable[[Any, Topology], tuple[Any, str, str]]
    """value, topology -> (normalised value, error message or "", hint)."""
    required: bool = False


def _int(low: int, high: int) -> Callable[[Any, Topology], tuple[Any, str, str]]:
    def check(value: Any, topology: Topology) -> tuple[Any, str, str]:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return None, f"expected an integer {low}..{high}, got {value!r}", ""
        return value, "", ""
    return check


def _number(low: float, high: float) -> Callable[[Any, Topology], tuple[Any, str, str]]:
    def check(value: Any, topology: Topology) -> tuple[Any, str, str]:
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not low <= value <= high:
            return None, f"expected a number {low:g}..{high:g}, got {value!r}", ""
        return float(value), "", ""
    return check


def _choice(*choices: Any) -> Callable[[Any, Topology], tuple[Any, str, str]]:
    def check(value: Any, topology: Topology) -> tuple[Any, str, str]:
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            return None, f"expected one of {', '.join(map(str, choices))}, got {value!r}", ""
        return value, "", ""
    return check


def _string(value: Any, topology: Topology) -> tuple[Any, str, str]:
    if not isinstance(value, str) or not value.strip():
        return None, f"expected a non-empty string, got {value!r}", ""
    return value, "", ""


def _capture_filter(value: Any, topology: Topology) -> tuple[Any, str, str]:
    """A pcap filter expression that libpcap compiles (orchestrate.pcapfilter)."""
    text, error, hint = _string(value, topology)
    if error:
        return text, error, hint
    problem = filter_problem(text)
    if problem is not None:
        return None, problem, "a pcap-filter(7) expression, e.g. \"icmp and src host 198.51.100.2\""
    return text, "", ""


TEMPLATE_RE = re.compile(r"\{([A-Za-z0-9_-]+)\.([46])\}")


def expand_command(command: str, topology: Topology) -> str:
    """Replace `{node.4}` / `{node.6}` by the node's first address of that family."""
    def address(m: re.Match[str]) -> str:
        addr = topology.nodes[m.group(1)].first_address(int(m.group(2)))
        return str(addr)
    return TEMPLATE_RE.sub(address, command)


def _command(value: Any, topology: Topology) -> tuple[Any, str, str]:
    value, error, hint = _string(value, topology)
    if error:
        return value, error, hint
    for m in TEMPLATE_RE.finditer(value):
        node = topology.nodes.get(m.group(1))
        if node is None:
            return None, f"{m.group(0)}: unknown node {m.group(1)!r}", ""
        if node.first_address(int(m.group(2))) is None:
            return None, f"{m.group(0)}: {node.name} has no IPv{m.group(2)} address", ""
    return value, "", ""


def _bool(value: Any, topology: Topology) -> tuple[Any, str, str]:
    if not isinstance(value, bool):
        return None, f"expected true or false, got {value!r}", ""
    return value, "", ""


def _regex(value: Any, topology: Topology) -> tuple[Any, str, str]:
    if not isinstance(value, str):
        return None, f"expected a regular expression string, got {value!r}", ""
    try:
        re.compile(value)
    except re.error as e:
        return None, f"bad regular expression: {e}", ""
    return value, "", ""


def _node(value: Any, topology: Topology) -> tuple[Any, str, str]:
    if not isinstance(value, str) or value not in topology.nodes:
        known = ", ".join(sorted(topology.nodes)) or "none"
        return None, f"unknown node {value!r}", f"nodes: {known}"
    return value, "", ""


def _router(value: Any, topology: Topology) -> tuple[Any, str, str]:
    name, error, hint = _node(value, topology)
    if error:
        return name, error, hint
    if not topology.nodes[name].is_router:
        routers = ", ".join(sorted(n.name for n in topology.routers())) or "none"
        return None, f"{name} is a host; counters live on routers", f"routers: {routers}"
    return name, "", ""


def _endpoint(value: Any, topology: Topology) -> tuple[Any, str, str]:
    if not isinstance(value, str) or value.count(":") != 1:
        return None, f"expected \"node:ifname\", got {value!r}", ""
    node, ifname = value.split(":")
    _, error, hint = _node(node, topology)
    if error:
        return None, error, hint
    if topology.nodes[node].interface(ifname) is None:
        names = ", ".join(i.name for i in topology.nodes[node].interfaces) or "none"
        return None, f"node {node} has no interface {ifname!r}", f"it has: {names}"
    return value, "", ""


def literal_address(text: str) -> ipaddress.IPv4Address | IPv6Address | None:
    """The address a check target or hop spells (`fe80::1%eth1` -> fe80::1), else None."""
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None


def _literal_problem(addr: ipaddress.IPv4Address | IPv6Address) -> str:
    reason = documentation_problem(ipaddress.ip_network(addr))
    return f"{reason} ({DOCUMENTATION_HINT})" if reason else ""


def _target(value: Any, topology: Topology) -> tuple[Any, str, str]:
    if not isinstance(value, str):
        return None, f"expected a node, node:ifname or an address, got {value!r}", ""
    addr = literal_address(value)
    if addr is not None:
        if isinstance(addr, IPv6Address) and addr.is_link_local and "%" not in value:
            return None, f"link-local target {addr} needs %ifname of the source", ""
        reason = _literal_problem(addr)
        if reason:
            return None, reason, ""
        return value, "", ""
    if ":" in value:
        return _endpoint(value, topology)
    return _node(value, topology)


def _hops(value: Any, topology: Topology) -> tuple[Any, str, str]:
    if not isinstance(value, list) or not value:
        return None, "expected a list of node names or addresses", "e.g. [r1, h2]"
    for i, hop in enumerate(value):
        if not isinstance(hop, str):
            return None, f"hop {i}: expected a node name or address, got {hop!r}", ""
        addr = literal_address(hop)
        if addr is None:
            _, error, hint = _node(hop, topology)
            if error:
                return None, f"hop {i}: {error}", hint
        elif _literal_problem(addr):
            return None, f"hop {i}: {_literal_problem(addr)}", ""
    return value, "", ""


def _counter_key(value: Any, topology: Topology) -> tuple[Any, str, str]:
    if not isinstance(value, str) or not COUNTER_KEY_RE.match(value):
        return None, f"expected a counter key like ip.redirectsent, got {value!r}", \
            "see routerctl show stats --json"
    return value, "", ""


def _range(low: float, high: float) -> Callable[[Any, Topology], tuple[Any, str, str]]:
    """`[low, high]`: a measured value must lie in it (ms for rtt, percent for loss)."""
    def check(value: Any, topology: Topology) -> tuple[Any, str, str]:
        ok = isinstance(value, list) and len(value) == 2 and all(
            isinstance(x, int | float) and not isinstance(x, bool) and low <= x <= high
            for x in value) and value[0] <= value[1]
        if not ok:
            return None, f"expected [min, max] within {low:g}..{high:g}, got {value!r}", \
                "e.g. [35, 60]"
        return [float(value[0]), float(value[1])], "", ""
    return check


def _families(value: Any, topology: Topology) -> tuple[Any, str, str]:
    if not isinstance(value, list) or not value or any(f not in (4, 6) for f in value) \
            or any(isinstance(f, bool) for f in value):
        return None, f"expected a list of 4 and/or 6, got {value!r}", ""
    return sorted(set(value)), "", ""


def _hosts(value: Any, topology: Topology) -> tuple[Any, str, str]:
    if not isinstance(value, list) or len(value) < 2:
        return None, f"expected a list of at least two hosts, got {value!r}", ""
    for name in value:
        _, error, hint = _node(name, topology)
        if error:
            return None, error, hint
    return list(value), "", ""


KINDS: dict[str, tuple[Param, ...]] = {
    "ping": (
        Param("from", _node, True), Param("to", _target, True), Param("family", _choice(4, 6)),
        Param("count", _int(1, 100)), Param("size", _int(0, 65000)), Param("df", _bool),
        Param("ttl", _int(1, 255)), Param("expect", _choice(*PING_EXPECT)),
        Param("mtu", _int(68, 65535)),
    ),
    "traceroute": (
        Param("from", _node, True), Param("to", _target, True), Param("hops", _hops, True),
        Param("family", _choice(4, 6)), Param("max_hops", _int(1, 64)),
        Param("proto", _choice(*TRACEROUTE_PROTOS)),
    ),
    "exec": (
        Param("node", _node, True), Param("command", _command, True),
        Param("status", _int(0, 255)), Param("stdout", _regex),
    ),
    "counter": (
        Param("node", _router, True), Param("key", _counter_key, True),
        Param("at_least", _int(0, 1 << 62)), Param("command", _command), Param("on", _node),
    ),
    "capture": (
        Param("endpoint", _endpoint, True), Param("filter", _capture_filter, True),
        Param("command", _command, True), Param("on", _node, True),
        Param("expect", _choice(*CAPTURE_EXPECT)),
    ),
    "reachability": (
        Param("families", _families), Param("nodes", _hosts), Param("traceroute", _bool),
        Param("count", _int(1, 100)),
    ),
    "ping-stats": (
        Param("from", _node, True), Param("to", _target, True), Param("family", _choice(4, 6)),
        Param("count", _int(1, 10_000)), Param("gap", _number(0.002, 10)),
        Param("size", _int(0, 65000)), Param("rtt", _range(0, 60_000)),
        Param("loss", _range(0, 100)), Param("baseline", _target),
        Param("added", _range(-60_000, 60_000)),
    ),
    "transfer": (
        Param("from", _node, True), Param("to", _target, True), Param("family", _choice(4, 6)),
        Param("bytes", _int(1, 1 << 30)), Param("port", _int(1024, 65535)),
    ),
}
COMMON: tuple[Param, ...] = (
    Param("name", _string), Param("attempts", _int(1, 100)),
    Param("interval", _number(0, 600)), Param("timeout", _number(1, 3600)),
)


def default_name(kind: str, params: dict[str, Any]) -> str:
    if kind in ("ping", "traceroute"):
        family = f" IPv{params['family']}" if "family" in params else ""
        tail = ""
        if "size" in params:
            tail += f" size {params['size']}"
        if "df" in params:
            tail += " DF" if params["df"] else " no-DF"
        if "ttl" in params:
            tail += f" ttl {params['ttl']}"
        if "proto" in params:
            tail += f" {params['proto']}"
        expect = params.get("expect", "success")
        if expect != "success":
            tail += f" expect {expect}"
        return f"{kind}{family} {params['from']} -> {params['to']}{tail}"
    if kind == "exec":
        return f"exec on {params['node']}: {params['command']}"
    if kind == "reachability":
        return "reachability"
    if kind in ("ping-stats", "transfer"):
        family = f" IPv{params['family']}" if "family" in params else ""
        what = " ".join(f"{k} {params[k]}" for k in ("rtt", "loss", "added", "bytes")
                        if k in params)
        return f"{kind}{family} {params['from']} -> {params['to']} {what}".rstrip()
    if kind == "counter":
        return f"counter {params['node']} {params['key']} >= +{params.get('at_least', 1)}"
    return f"capture {params['endpoint']} {params['filter']!r} {params.get('expect', 'present')}"


def _family_problems(kind: str, params: dict[str, Any], topology: Topology, key: str = "to"
                     ) -> list[_Issue]:
    """Cross-key rules of ping/traceroute: the target (under `key`) must have an address of
    the family."""
    target = params.get("to")
    family = params.get("family")
    if not isinstance(target, str) or literal_address(target) is not None:
        addr = literal_address(target) if isinstance(target, str) else None
        if addr is not None and family is not None and addr.version != family:
            return [_Issue(("family",),
                               f"target {target} is IPv{addr.version}, not IPv{family}")]
        return []
    node_name = target.partition(":")[0]
    node = topology.nodes[node_name]
    if family is None:
        family = 4 if node.first_address(4) is not None else 6
    if family == 4 and node.first_address(4) is None:
        return [_Issue((key,), f"{node_name} has no IPv4 address", "set family: 6")]
    source = params["from"]
    # With no global IPv6 address only the link-local one remains: they must share a link.
    if family == 6 and node.first_address(6) is None \
            and not topology.shared_links(source, node_name):
        return [_Issue((key,), f"{node_name} has no global IPv6 address and shares no "
                       f"link with {source}", "give it a 2001:db8:: address")]
    return []


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def validate_check(item: dict[Any, Any], topology: Topology, doc: Document | None = None,
                   path: KeyPath = ()) -> tuple[list[Problem], ValidCheck | None]:
    """Check one `tests:` item; return its problems, or none and the valid check.

    Each problem is placed in `doc` at `path` (the item's place, e.g. `("tests", 2)`) plus the
    key it is about; without a document (a check given in Python) problems have no line.
    """
    document = doc if doc is not None else Document("<check>")
    issues, valid = _validate_check(item, topology)
    return [document.problem((*path, *issue.path), issue.message, issue.hint, key=issue.at_key)
            for issue in issues], valid


def _validate_check(item: dict[Any, Any], topology: Topology
                    ) -> tuple[list[_Issue], ValidCheck | None]:
    issues: list[_Issue] = []
    kind = item.get("kind")
    if kind not in KINDS:
        if "kind" not in item:
            return [_Issue((), "a check needs kind:", f"one of: {', '.join(KINDS)}")], None
        return [_Issue(("kind",), f"unknown check kind {kind!r}",
                           f"one of: {', '.join(KINDS)}")], None
    spec = {p.name: p for p in (*KINDS[kind], *COMMON)}
    params: dict[str, Any] = {}
    for key, value in item.items():
        if key == "kind":
            continue
        param = spec.get(key)
        if param is None:
            allowed = ", ".join(p.name for p in KINDS[kind])
            issues.append(_Issue((key,), f"unknown key {key!r} for {_article(kind)} check",
                                     f"{kind} takes: {allowed}", at_key=True))
            continue
        normalised, error, hint = param.check(value, topology)
        if error:
            issues.append(_Issue((key,), error, hint))
        else:
            params[key] = normalised
    for param in KINDS[kind]:
        if param.required and param.name not in item:
            issues.append(_Issue((), f"{_article(kind)} check needs {param.name}:"))
    if kind == "counter" and "command" in params and "on" not in params:
        issues.append(_Issue((), "a counter check with command: needs on: (the node to "
                                     "run it on)"))
    if kind == "ping-stats" and ("added" in params) != ("baseline" in params):
        issues.append(_Issue((), "added: and baseline: go together (the RTT added over the "
                                 "path to the baseline target)"))
    if kind in ("ping", "traceroute", "ping-stats", "transfer") and not issues:
        issues.extend(_family_problems(kind, params, topology))
        if "baseline" in params:
            issues.extend(_family_problems(kind, {**params, "to": params["baseline"]},
                                           topology, key="baseline"))
    if issues:
        return issues, None
    name = params.pop("name", None) or default_name(kind, params)
    return [], ValidCheck(kind, name, params)
