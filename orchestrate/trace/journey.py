"""One packet's journey across a lab, assembled from what the lab saw (pure data, no I/O).

Two kinds of evidence come in:

- wire events: frames captured host-side on the links (QEMU `filter-dump` or tcpdump on a LAN
  tap), timestamped by the host's clock. Who sent a frame and who it was for come from its
  MAC addresses, which the lab allocated and journaled.
- router records: each router's own trace of the packets that matched the trace filter
  (`routerctl trace`): the stages the packet crossed (rx, verify, fib, neighbor, ttl, tx,
  icmp, drop, ...), timed by the router's clock, and whether the fast path or the slow path
  handled it.

`assemble()` walks the wire events in time order and slots each router's record in where the
packet arrived at that router (same interface, same addresses, same TTL), so the journey
reads like the seed's dtrace walk, one machine after the other: the host sends, the wire
carries, r1 receives/verifies/looks up/resolves/decrements/transmits, the wire carries, and
so on back to the source. Every hop gets the time since the journey began and its latency
(since the hop before). A drop or an ICMP error names the router, the stage and the counter
that moved.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrate.packets import Frame

PROTOS = {"icmp": (1, 58), "udp": (17, 17), "tcp": (6, 6)}
"""Probe protocol -> (IPv4 protocol, IPv6 next header)."""


class TraceError(Exception):
    """A trace could not be run; the message says what was missing and where."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status
        """Exit status: 2 for bad input (an unknown lab, node or address), 1 otherwise."""


# ------------------------------------------------------------------------------- the lab map


@dataclass(frozen=True, slots=True)
class Port:
    node: str
    ifname: str
    mac: str
    link: int
    kind: str
    """"udp" (point-to-point), "lan" (a bridge port) or "none"."""
    local_port: int | None = None
    """For "udp": the 127.0.0.1 port this end sends from (QEMU's socket netdev)."""


@dataclass
class LabMap:
    """Who is where in a lab, from its journal: nodes, roles, NICs, addresses, links."""

    name: str
    roles: dict[str, str]
    ports: list[Port]
    addresses: dict[str, list[tuple[str, ipaddress.IPv4Interface | ipaddress.IPv6Interface]]]
    """node -> [(ifname, address/prefix)]"""
    link_names: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_record(cls, name: str, nodes: dict[str, Any],
                    link_names: dict[int, str] | None = None) -> LabMap:
        """From `record.json`'s `nodes` (what `vrlab up` journaled)."""
        roles, ports, addresses = {}, [], {}
        for node, data in nodes.items():
            roles[node] = str(data["role"])
            for nic in data.get("nics", []):
                ports.append(Port(node, nic["ifname"], nic["mac"].lower(), int(nic["link"]),
                                  nic["kind"], nic.get("local_port")))
            entries = []
            for text in data.get("addresses", []):
                ifname, _, addr = str(text).partition(" ")
                entries.append((ifname, ipaddress.ip_interface(addr)))
            addresses[node] = entries
        return cls(name, roles, ports, addresses, dict(link_names or {}))

    def port_by_mac(self, mac: str) -> Port | None:
        mac = mac.lower()
        return next((p for p in self.ports if p.mac == mac), None)

    def port(self, node: str, ifname: str) -> Port | None:
        return next((p for p in self.ports if p.node == node and p.ifname == ifname), None)

    def link_name(self, link: int) -> str:
        if link in self.link_names:
            return self.link_names[link]
        members = [f"{p.node}:{p.ifname}" for p in self.ports if p.link == link]
        return " -- ".join(members) if members else f"links[{link}]"

    def links(self) -> dict[int, list[Port]]:
        out: dict[int, list[Port]] = {}
        for p in self.ports:
            if p.link >= 0:
                out.setdefault(p.link, []).append(p)
        return out

    def node_of_address(self, addr: str) -> str | None:
        ip = ipaddress.ip_address(addr.split("%")[0])
        for node, entries in self.addresses.items():
            if any(i.ip == ip for _, i in entries):
                return node
        if ip.version == 6 and ip.is_link_local:
            from orchestrate.lab import link_local_from_mac

            for p in self.ports:
                if link_local_from_mac(p.mac) == ip:
                    return p.node
        return None

    def address_of(self, node: str, family: int) -> str | None:
        """The node's first global address of `family` (4 or 6)."""
        for _, iface in self.addresses.get(node, []):
            if iface.version == family and not iface.ip.is_link_local:
                return str(iface.ip)
        return None


# ------------------------------------------------------------------------------------ the flow


@dataclass(frozen=True)
class Flow:
    """What identifies the traced packet and everything it causes."""

    family: int
    proto: str
    """icmp, udp or tcp"""
    src: str
    dst: str
    ident: int | None = None
    """The ICMP echo identifier, or the UDP/TCP source port."""
    dport: int | None = None

    @property
    def proto_number(self) -> int:
        return PROTOS[self.proto][0 if self.family == 4 else 1]

    def _same(self, f: Frame, src: str | None, dst: str | None) -> bool:
        if f.family != self.family or f.proto != self.proto_number:
            return False
        if (f.src, f.dst) != (src, dst):
            return False
        if self.ident is None:
            return True
        if self.proto == "icmp":
            return f.icmp_id is None or f.icmp_id == self.ident
        forward = (src, dst) == (self.src, self.dst)
        ports = (f.sport, f.dport) if forward else (f.dport, f.sport)
        return ports[0] == self.ident and (self.dport is None or ports[1] == self.dport)

    def relation(self, f: Frame) -> str | None:
        """'probe', 'reply', 'error' (an ICMP error about the probe), 'redirect', or None."""
        if f.family != self.family:
            return None
        if self._same(f, self.src, self.dst):
            if self.proto == "icmp" and f.icmp_type not in (None, 8, 128):
                return None
            return "probe"
        if self._same(f, self.dst, self.src):
            if self.proto == "icmp" and f.icmp_type not in (None, 0, 129):
                return None
            return "reply"
        q = f.quoted
        if q is not None and q.family == self.family and (
                self._same(q, self.src, self.dst) or self._same(q, self.dst, self.src)):
            return "redirect" if f.is_redirect else "error" if f.is_icmp_error else None
        return None

    def loosely_related(self, summary: dict[str, Any]) -> bool:
        """A router record's packet (from its flow summary, which has no quote): the probe,
        its reply, or an ICMP error on its way to either end. Other traffic between the same
        two ends (another ping's identifier, other ports) is not."""
        pair = (summary.get("src"), summary.get("dst"))
        ends = {self.src, self.dst}
        icmp = 1 if self.family == 4 else 58
        errors = (3, 4, 5, 11, 12) if self.family == 4 else (1, 2, 3, 4, 137)
        if summary.get("proto") == icmp and summary.get("icmp_type") in errors:
            return summary.get("dst") in ends
        if pair not in ((self.src, self.dst), (self.dst, self.src)):
            return False
        if summary.get("proto") not in (None, self.proto_number) or self.ident is None:
            return summary.get("proto") in (None, self.proto_number)
        if self.proto == "icmp":
            return summary.get("icmp_id") in (None, self.ident)
        forward = pair == (self.src, self.dst)
        port = summary.get("sport" if forward else "dport")
        return port in (None, self.ident)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class WireEvent:
    time: float
    """Host clock, seconds since the epoch."""
    link: int
    point: str
    """Where it was captured, NODE:IF."""
    frame: Frame
    raw: bytes = b""


@dataclass
class RouterStage:
    name: str
    detail: str
    time: float
    """The router's monotonic clock (comparable only within one router)."""


@dataclass
class RouterRecord:
    node: str
    interface: str
    stages: list[RouterStage]
    path: str
    """"fast" or "slow": which path handled the packet."""
    summary: dict[str, Any]
    """The packet as the router saw it: family, src, dst, proto, ttl, icmp_type, ..."""
    packet_id: int = 0

    @classmethod
    def from_json(cls, node: str, data: dict[str, Any]) -> RouterRecord:
        stages = [RouterStage(str(s["stage"]), str(s.get("detail", "")), float(s["time"]))
                  for s in data.get("stages", [])]
        path = str(data.get("path") or ("fast" if any(s.name == "fastpath" for s in stages)
                                        else "slow"))
        return cls(node, str(data.get("interface", "")), stages, path,
                   dict(data.get("flow") or {}), int(data.get("packet_id", 0)))


# ---------------------------------------------------------------------------------- the journey


@dataclass
class Stage:
    name: str
    detail: str
    offset_us: float
    """Microseconds since the router received the packet (its own clock)."""


@dataclass
class Hop:
    """One step of the journey: a host sending or receiving, a wire carrying, a router."""

    kind: str
    """"host", "wire" or "router"."""
    node: str
    """The node (host, router) or, for a wire, the link's name."""
    leg: str
    """"probe", "reply", "error" or "redirect": which packet this hop carried."""
    what: str
    """The packet, one line."""
    at_ms: float | None = None
    """Milliseconds since the journey began (host clock; None if not seen on a wire)."""
    latency_ms: float | None = None
    """Milliseconds since the previous timed hop."""
    interface_in: str | None = None
    interface_out: str | None = None
    link: int | None = None
    """For a wire: the link's index in the topology's `links`."""
    sender: str | None = None
    """For a wire: NODE:IF that put the frame on it."""
    receiver: str | None = None
    """For a wire: NODE:IF it was for (None: broadcast or unknown)."""
    path: str | None = None
    """For a router: "fast" or "slow" (and the punt reason for slow)."""
    verdict: str | None = None
    """For a router: forwarded, delivered, dropped, icmp-error, redirect, queued, ..."""
    counters: list[str] = field(default_factory=list)
    """Counters that moved for this packet (`routerctl show stats` keys): the drop reason,
    the ICMP output histogram, fast forwarded / forwarded, redirects sent."""
    failing_stage: str | None = None
    """For a drop or an ICMP error: the stage where the packet's journey ended."""
    stages: list[Stage] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Journey:
    lab: str
    flow: Flow
    hops: list[Hop]
    outcome: str
    """"reply", "error", "redirect+reply", "dropped", "lost", ..."""
    explanation: str
    """One sentence: what happened, naming the router, stage and counter for errors/drops."""
    total_ms: float | None
    """From the probe leaving the source to the answer (reply or error) arriving back."""
    last_seen: str | None
    """Where the packet was last seen (a node or a wire)."""

    def to_json(self) -> dict[str, Any]:
        return {"lab": self.lab, "flow": self.flow.to_json(), "outcome": self.outcome,
                "explanation": self.explanation, "total_ms": self.total_ms,
                "last_seen": self.last_seen, "hops": [h.to_json() for h in self.hops]}

    def router_hops(self) -> list[Hop]:
        return [h for h in self.hops if h.kind == "router"]


_ICMP_TYPE = re.compile(r"type (\d+)")


def _is_redirect(stage: RouterStage) -> bool:
    return stage.name == "icmp" and (stage.detail.startswith("redirect")
                                     or stage.detail.startswith("type 5 "))


def _outcome_of(record: RouterRecord, family: int) -> tuple[str | None, list[str], str | None]:
    """(verdict, counters that moved, failing stage) of one router record."""
    group, icmp = ("ip", "icmp") if family == 4 else ("ip6", "icmp6")
    stages = record.stages
    names = [s.name for s in stages]
    counters: list[str] = []
    verdict: str | None = None
    failing: str | None = None
    for i, s in enumerate(stages):
        if s.name == "icmp" and not _is_redirect(s):
            m = _ICMP_TYPE.search(s.detail)
            if "suppressed" in s.detail or "rate limited" in s.detail or not m:
                continue
            counters.append(f"{icmp}.outhist.{m.group(1)}")
            verdict, failing = "icmp-error", stages[i - 1].name if i else "rx"
            break
    for i, s in enumerate(stages):
        if s.name == "drop":
            counters.insert(0, s.detail.split()[0] if s.detail else "?")
            if verdict is None:
                verdict, failing = "dropped", stages[i - 1].name if i else "rx"
            return verdict, counters, failing
    if verdict is not None:
        return verdict, counters, failing
    if "tx" in names:
        counters.append(f"{group}.fastforward" if record.path == "fast" else f"{group}.forward")
        if any(_is_redirect(s) for s in stages):
            return "forwarded+redirect", [*counters, f"{group}.redirectsent"], None
        return "forwarded", counters, None
    if "queue" in names:
        return "queued", ["arp.queued" if family == 4 else "nd.queued"], "neighbor"
    if "deliver" in names or "local" in names:
        return "delivered", counters, None
    return None, counters, None


def _router_stages(record: RouterRecord) -> list[Stage]:
    start = record.stages[0].time if record.stages else 0.0
    return [Stage(s.name, s.detail, round((s.time - start) * 1e6, 1)) for s in record.stages]


def _record_matches(record: RouterRecord, port_ifname: str, frame: Frame) -> bool:
    s = record.summary
    if record.interface and record.interface != port_ifname:
        return False
    if s.get("src") != frame.src or s.get("dst") != frame.dst:
        return False
    return not (s.get("ttl") is not None and frame.ttl is not None and int(s["ttl"]) != frame.ttl)


def assemble(labmap: LabMap, flow: Flow, wires: list[WireEvent],
             records: list[RouterRecord]) -> Journey:
    """The journey of `flow` from the evidence (see the module doc)."""
    related: list[tuple[WireEvent, str]] = []
    seen: set[tuple[int, bytes | str]] = set()
    for w in sorted(wires, key=lambda w: w.time):
        rel = flow.relation(w.frame)
        if rel is None:
            continue
        # One frame captured at several points of the same link (both ends of a
        # point-to-point link, several LAN taps) is one wire hop: the earliest sighting.
        key: tuple[int, bytes | str] = (w.link, w.raw or w.frame.summary()
                                        + w.frame.src_mac + w.frame.dst_mac)
        if key in seen:
            continue
        seen.add(key)
        related.append((w, rel))
    pending = [r for r in records if flow.loosely_related(r.summary)]
    hops: list[Hop] = []
    t0 = related[0][0].time if related else None

    def ms(t: float) -> float:
        assert t0 is not None
        return round((t - t0) * 1e3, 3)

    sender_of_first = labmap.port_by_mac(related[0][0].frame.src_mac) if related else None
    if related and sender_of_first is not None:
        w, rel = related[0]
        hops.append(Hop("host" if labmap.roles.get(sender_of_first.node) == "host" else "router",
                        sender_of_first.node, rel, w.frame.summary(), at_ms=0.0,
                        interface_out=sender_of_first.ifname, verdict="sent"))
    for index, (w, rel) in enumerate(related):
        sender = labmap.port_by_mac(w.frame.src_mac)
        receiver = labmap.port_by_mac(w.frame.dst_mac)
        hops.append(Hop("wire", labmap.link_name(w.link), rel, w.frame.summary(),
                        at_ms=ms(w.time), link=w.link,
                        sender=f"{sender.node}:{sender.ifname}" if sender else None,
                        receiver=f"{receiver.node}:{receiver.ifname}" if receiver else None))
        if receiver is None:
            continue
        role = labmap.roles.get(receiver.node)
        if role == "router":
            record = next((r for r in pending if r.node == receiver.node
                           and _record_matches(r, receiver.ifname, w.frame)), None)
            # It left this router with the next wire event it sent (if any).
            # It left this router with the next frame of the same packet it sent, or else
            # the ICMP error it sent about it.
            out_port = None
            for wanted in (rel, "error"):
                for w2, rel2 in related[index + 1:]:
                    p = labmap.port_by_mac(w2.frame.src_mac)
                    if p is not None and p.node == receiver.node and rel2 == wanted:
                        out_port = out_port or p
                        break
            hop = Hop("router", receiver.node, rel, w.frame.summary(), at_ms=ms(w.time),
                      interface_in=receiver.ifname,
                      interface_out=out_port.ifname if out_port else None)
            if record is not None:
                pending.remove(record)
                hop.verdict, hop.counters, hop.failing_stage = _outcome_of(record,
                                                                           flow.family)
                hop.stages = _router_stages(record)
                punt = next((s.detail for s in record.stages if s.name == "punt"), None)
                hop.path = record.path if record.path == "fast" or punt is None \
                    else f"slow ({punt})"
            hops.append(hop)
        else:
            is_source = receiver.node == (sender_of_first.node if sender_of_first else None)
            hops.append(Hop(role or "host", receiver.node, rel, w.frame.summary(),
                            at_ms=ms(w.time), interface_in=receiver.ifname,
                            verdict="received" if is_source else "delivered"))
    # Router records that no captured frame accounts for (a capture missed it, or the
    # packet died before any wire showed it) still belong to the journey.
    for record in pending:
        verdict, counters, failing = _outcome_of(record, flow.family)
        hops.append(Hop("router", record.node, "probe", _summary_text(record.summary),
                        interface_in=record.interface, verdict=verdict, counters=counters,
                        failing_stage=failing, path=record.path,
                        stages=_router_stages(record)))
    previous: float | None = None
    for hop in hops:
        if hop.at_ms is not None:
            hop.latency_ms = None if previous is None else round(hop.at_ms - previous, 3)
            previous = hop.at_ms
    return _conclude(labmap, flow, hops)


def _summary_text(s: dict[str, Any]) -> str:
    if not s:
        return "(packet not summarised)"
    return f"IPv{s.get('family')} {s.get('src')} > {s.get('dst')} proto {s.get('proto')} " \
           f"ttl {s.get('ttl')}"


def _conclude(labmap: LabMap, flow: Flow, hops: list[Hop]) -> Journey:
    source = labmap.node_of_address(flow.src) or flow.src
    back = [h for h in hops if h.kind != "wire" and h.node == source and h.verdict == "received"]
    answered = back[-1] if back else None
    total = answered.at_ms if answered is not None else None
    last = next((h for h in reversed(hops) if h.at_ms is not None), hops[-1] if hops else None)
    last_seen = None
    if last is not None:
        last_seen = f"{last.node}" if last.kind != "wire" else f"on the wire {last.node}"
    failing = next((h for h in hops if h.kind == "router"
                    and h.verdict in ("icmp-error", "dropped")), None)
    redirect = next((h for h in hops if h.kind == "router"
                     and h.verdict == "forwarded+redirect"), None)
    prefix = ""
    if redirect is not None:
        prefix = (f"{redirect.node} forwarded the probe and sent a redirect "
                  f"({redirect.counters[-1]}); ")
    if failing is not None:
        stage = failing.failing_stage or "?"
        moved = ", ".join(failing.counters) or "none known"
        if failing.verdict == "icmp-error":
            icmp = next((s.detail for s in failing.stages if s.name == "icmp"), "")
            outcome = "error"
            explanation = (f"{failing.node} sent an ICMP error ({_icmp_words(icmp, flow.family)}) "
                           f"at stage {stage}; counters {moved} moved")
            if answered is None:
                explanation += "; the error did not reach the source"
        else:
            outcome = "dropped"
            explanation = (f"{failing.node} dropped the packet at stage {stage}; counter "
                           f"{moved} moved")
        return Journey(labmap.name, flow, hops, outcome, prefix + explanation, total, last_seen)
    if answered is not None and answered.leg == "reply":
        n = len({h.node for h in hops if h.kind == "router" and h.leg == "probe"})
        return Journey(labmap.name, flow, hops, "redirect+reply" if redirect else "reply",
                       prefix + f"the reply came back after {answered.at_ms:.3f} ms "
                       f"({n} router{'s' if n != 1 else ''} on the way there)",
                       total, last_seen)
    if answered is not None and answered.leg == "error":
        err = next((h for h in hops if h.kind == "wire" and h.leg == "error"), None)
        origin = labmap.node_of_address(_src_of(err.what)) if err else None
        return Journey(labmap.name, flow, hops, "error",
                       prefix + f"an ICMP error came back from {origin or 'an unknown node'}",
                       total, last_seen)
    if not hops:
        return Journey(labmap.name, flow, hops, "lost",
                       "the probe was never seen on any link", None, None)
    return Journey(labmap.name, flow, hops, "lost",
                   prefix + f"no answer came back; last seen {last_seen}", None, last_seen)


def _src_of(what: str) -> str:
    m = re.match(r"IPv\d (\S+) >", what)
    return m.group(1) if m else ""


_ICMP4_WORDS = {"3": "destination unreachable", "11": "time exceeded",
                "12": "parameter problem", "5": "redirect"}
_ICMP6_WORDS = {"1": "destination unreachable", "2": "packet too big", "3": "time exceeded",
                "4": "parameter problem"}


def _icmp_words(detail: str, family: int) -> str:
    m = _ICMP_TYPE.search(detail)
    if not m:
        return detail
    words = (_ICMP4_WORDS if family == 4 else _ICMP6_WORDS).get(m.group(1), f"type {m.group(1)}")
    code = re.search(r"code (\d+)", detail)
    if family == 4 and m.group(1) == "3" and code and code.group(1) == "4":
        words = "fragmentation needed"
    return words
