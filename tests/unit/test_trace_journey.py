"""`vrlab trace` without VMs: journey assembly from captured frames and router records, and
its three renderings (terminal, JSON, SVG)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    IPerror6,
    IPv6,
)
from scapy.layers.l2 import Ether

from orchestrate.packets import decode
from orchestrate.trace.journey import Flow, LabMap, RouterRecord, WireEvent, assemble
from orchestrate.trace.render import to_json, to_svg, to_text
from orchestrate.trace.watch import parse_watch

MAC = {"h1": "52:54:00:00:00:01", "r1a": "52:54:00:00:00:11", "r1b": "52:54:00:00:00:12",
       "h2": "52:54:00:00:00:02"}
H1, H2, R1A, R1B = "198.51.100.2", "198.51.100.66", "198.51.100.1", "198.51.100.65"
T0 = 1_700_000_000.0


def line_map() -> LabMap:
    """configs/line.yaml as `vrlab up` journals it: h1 - r1 - h2."""
    nodes: dict[str, Any] = {
        "h1": {"role": "host", "nics": [_nic("eth1", "h1", 0)],
               "addresses": [f"eth1 {H1}/26", "eth1 2001:db8:1::2/64"]},
        "r1": {"role": "router", "nics": [_nic("r1-h1", "r1a", 0), _nic("r1-h2", "r1b", 1)],
               "addresses": [f"r1-h1 {R1A}/26", f"r1-h2 {R1B}/26", "r1-h1 2001:db8:1::1/64",
                             "r1-h2 2001:db8:2::1/64"]},
        "h2": {"role": "host", "nics": [_nic("eth1", "h2", 1)],
               "addresses": [f"eth1 {H2}/26", "eth1 2001:db8:2::2/64"]},
    }
    return LabMap.from_record("line", nodes)


def _nic(ifname: str, key: str, link: int) -> dict[str, Any]:
    return {"ifname": ifname, "mac": MAC[key], "link": link, "kind": "udp"}


def wire(t_ms: float, link: int, src: str, dst: str, pkt: Any) -> WireEvent:
    raw = bytes(Ether(src=MAC[src], dst=MAC[dst]) / pkt)
    return WireEvent(T0 + t_ms / 1e3, link, "capture", decode(raw), raw)


def record(interface: str, stages: list[tuple[str, str]], flow: dict[str, Any],
           path: str = "slow") -> RouterRecord:
    return RouterRecord.from_json("r1", {
        "packet_id": 1, "interface": interface, "path": path, "flow": flow,
        "stages": [{"stage": n, "detail": d, "time": 100.0 + i * 5e-6}
                   for i, (n, d) in enumerate(stages)]})


FORWARD = [("rx", "98 bytes"), ("verify", "ipv4"), ("fib", f"{H2} -> 198.51.100.64/26 on-link"),
           ("neighbor", f"{H2} REACHABLE"), ("ttl", "ttl 64 -> 63"), ("tx", "r1-h2")]


def test_forwarded_ping_every_hop_in_order_with_latency() -> None:
    flow = Flow(4, "icmp", H1, H2, 0x4242)
    echo = ICMP(type=8, id=0x4242, seq=1) / (b"vrlab" * 11)
    reply = ICMP(type=0, id=0x4242, seq=1) / (b"vrlab" * 11)
    wires = [
        wire(0.0, 0, "h1", "r1a", IP(src=H1, dst=H2, ttl=64) / echo),
        wire(0.4, 1, "r1b", "h2", IP(src=H1, dst=H2, ttl=63) / echo),
        wire(1.0, 1, "h2", "r1b", IP(src=H2, dst=H1, ttl=64) / reply),
        wire(1.5, 0, "r1a", "h1", IP(src=H2, dst=H1, ttl=63) / reply),
        # noise: another flow on the same links is not part of the journey
        wire(0.2, 0, "h1", "r1a", IP(src=H1, dst=H2) / ICMP(type=8, id=7, seq=1)),
    ]
    records = [
        record("r1-h1", FORWARD, {"family": 4, "src": H1, "dst": H2, "ttl": 64, "proto": 1},
               path="fast"),
        record("r1-h2", [("rx", ""), ("verify", ""), ("fib", ""), ("neighbor", ""),
                         ("ttl", "ttl 64 -> 63"), ("tx", "r1-h1")],
               {"family": 4, "src": H2, "dst": H1, "ttl": 64, "proto": 1}, path="fast"),
        # another ping between the same hosts, traced by r1 too: not part of this journey
        record("r1-h1", FORWARD, {"family": 4, "src": H1, "dst": H2, "ttl": 64, "proto": 1,
                                  "icmp_type": 8, "icmp_id": 7}, path="fast"),
    ]
    journey = assemble(line_map(), flow, wires, records)
    kinds = [(h.kind, h.node, h.leg) for h in journey.hops]
    assert kinds == [
        ("host", "h1", "probe"), ("wire", "h1:eth1 -- r1:r1-h1", "probe"),
        ("router", "r1", "probe"), ("wire", "r1:r1-h2 -- h2:eth1", "probe"),
        ("host", "h2", "probe"), ("wire", "r1:r1-h2 -- h2:eth1", "reply"),
        ("router", "r1", "reply"), ("wire", "h1:eth1 -- r1:r1-h1", "reply"),
        ("host", "h1", "reply"),
    ]
    r1 = journey.router_hops()[0]
    assert (r1.interface_in, r1.interface_out, r1.verdict, r1.path) == \
        ("r1-h1", "r1-h2", "forwarded", "fast")
    assert r1.counters == ["ip.fastforward"]
    assert [s.name for s in r1.stages] == ["rx", "verify", "fib", "neighbor", "ttl", "tx"]
    assert r1.stages[-1].offset_us == pytest.approx(25.0)
    assert journey.outcome == "reply"
    assert journey.total_ms == pytest.approx(1.5)
    assert journey.hops[3].latency_ms == pytest.approx(0.4)  # r1 -> the second wire
    assert journey.hops[-1].verdict == "received"


def test_ttl_expiry_names_router_stage_and_counters() -> None:
    flow = Flow(4, "icmp", H1, H2, 0x99)
    probe = IP(src=H1, dst=H2, ttl=1) / ICMP(type=8, id=0x99, seq=1) / (b"x" * 8)
    error = IP(src=R1A, dst=H1, ttl=64) / ICMP(type=11, code=0) / IPerror(bytes(probe))
    wires = [wire(0.0, 0, "h1", "r1a", probe), wire(2.0, 0, "r1a", "h1", error)]
    records = [record("r1-h1", [("rx", ""), ("verify", ""), ("ttl", "ttl 1 expires in transit"),
                                ("icmp", f"type 11 code 0 to {H1}"), ("tx", "r1-h1"),
                                ("drop", "ip.ttlexceeded")],
                      {"family": 4, "src": H1, "dst": H2, "ttl": 1, "proto": 1})]
    journey = assemble(line_map(), flow, wires, records)
    assert journey.outcome == "error"
    r1 = journey.router_hops()[0]
    assert (r1.verdict, r1.failing_stage) == ("icmp-error", "ttl")
    assert r1.counters == ["ip.ttlexceeded", "icmp.outhist.11"]
    assert "r1 sent an ICMP error (time exceeded) at stage ttl" in journey.explanation
    assert "ip.ttlexceeded" in journey.explanation
    assert [h.leg for h in journey.hops if h.kind == "wire"] == ["probe", "error"]
    assert journey.hops[-1].node == "h1" and journey.hops[-1].verdict == "received"
    assert journey.total_ms == pytest.approx(2.0)


def test_packet_too_big_ipv6_quoting_the_probe() -> None:
    src, dst = "2001:db8:1::2", "2001:db8:2::2"
    flow = Flow(6, "icmp", src, dst, 0x55)
    probe = IPv6(src=src, dst=dst, hlim=64) / ICMPv6EchoRequest(id=0x55, seq=1, data=b"y" * 1400)
    ptb = IPv6(src="2001:db8:1::1", dst=src) / ICMPv6PacketTooBig(mtu=1280) / \
        IPerror6(bytes(probe)[:1232])
    frame = decode(bytes(Ether() / ptb))
    assert frame.icmp_mtu == 1280 and frame.quoted is not None and frame.quoted.icmp_id == 0x55
    assert flow.relation(frame) == "error"
    wires = [wire(0.0, 0, "h1", "r1a", probe), wire(1.0, 0, "r1a", "h1", ptb)]
    records = [record("r1-h1", [("rx", ""), ("verify", ""), ("fib", ""), ("mtu", "1448 > 1280"),
                                ("icmp", f"type 2 code 0 to {src}"), ("drop", "ip6.toobig")],
                      {"family": 6, "src": src, "dst": dst, "ttl": 64, "proto": 58})]
    journey = assemble(line_map(), flow, wires, records)
    r1 = journey.router_hops()[0]
    assert (r1.verdict, r1.failing_stage, r1.counters) == \
        ("icmp-error", "mtu", ["ip6.toobig", "icmp6.outhist.2"])
    assert "packet too big" in journey.explanation
    # the echo reply of another ident is not ours
    other = decode(bytes(Ether() / IPv6(src=dst, dst=src) / ICMPv6EchoReply(id=1)))
    assert flow.relation(other) is None


def test_lost_probe_says_where_it_was_last_seen() -> None:
    flow = Flow(4, "udp", H1, H2, 40000, 33434)
    pkt = IP(src=H1, dst=H2, ttl=64) / UDP(sport=40000, dport=33434) / b"z"
    journey = assemble(line_map(), flow, [wire(0.0, 0, "h1", "r1a", pkt)], [])
    assert journey.outcome == "lost"
    assert journey.last_seen == "r1"
    assert "last seen r1" in journey.explanation
    assert journey.router_hops()[0].verdict is None  # r1 kept no record of it
    empty = assemble(line_map(), flow, [], [])
    assert empty.outcome == "lost" and empty.last_seen is None
    assert "never seen" in empty.explanation


def test_udp_port_unreachable_from_the_destination_host() -> None:
    flow = Flow(4, "udp", H1, H2, 40000, 33434)
    pkt = IP(src=H1, dst=H2, ttl=63) / UDP(sport=40000, dport=33434) / b"z"
    err = IP(src=H2, dst=H1) / ICMP(type=3, code=3) / IPerror(bytes(pkt)[:28])
    frame = decode(bytes(Ether() / err))
    assert frame.quoted is not None and frame.quoted.sport == 40000
    assert flow.relation(frame) == "error"


def test_renderings_list_every_hop_with_nodes_and_stages() -> None:
    flow = Flow(4, "icmp", H1, H2, 0x99)
    probe = IP(src=H1, dst=H2, ttl=1) / ICMP(type=8, id=0x99, seq=1)
    error = IP(src=R1A, dst=H1) / ICMP(type=11, code=0) / IPerror(bytes(probe))
    journey = assemble(line_map(), flow,
                       [wire(0.0, 0, "h1", "r1a", probe), wire(2.0, 0, "r1a", "h1", error)],
                       [record("r1-h1", [("rx", ""), ("ttl", "ttl 1 expires in transit"),
                                         ("icmp", "type 11 code 0"), ("drop", "ip.ttlexceeded")],
                               {"family": 4, "src": H1, "dst": H2, "ttl": 1})])
    data = json.loads(to_json(journey))
    assert data["outcome"] == "error" and data["flow"]["src"] == H1
    assert [h["node"] for h in data["hops"]] == \
        ["h1", "h1:eth1 -- r1:r1-h1", "r1", "h1:eth1 -- r1:r1-h1", "h1"]
    assert [s["name"] for s in data["hops"][2]["stages"]] == ["rx", "ttl", "icmp", "drop"]
    text = to_text(journey)
    assert "router r1 r1-h1 -> r1-h1: icmp-error" in text
    assert "ttl 1 expires in transit" in text
    svg = ET.fromstring(to_svg(journey))
    ns = "{http://www.w3.org/2000/svg}"
    names = [t.text for t in svg.iter(f"{ns}text") if t.get("class") == "node"]
    assert names == ["h1", "r1"]
    arrows = [ln for ln in svg.iter(f"{ns}line") if ln.get("stroke-width") == "2"]
    assert [a.get("stroke") for a in arrows] == ["#0d6efd", "#dc3545"]  # probe, error
    assert any(t.text == "✕" for t in svg.iter(f"{ns}text"))


def test_watch_filter() -> None:
    f = parse_watch("icmp and src 198.51.100.2 and dst 198.51.100.66")
    assert f.addresses() == ["198.51.100.2", "198.51.100.66"]
    request = decode(bytes(Ether() / IP(src=H1, dst=H2) / ICMP(type=8, id=5, seq=1)))
    answer = decode(bytes(Ether() / IP(src=H2, dst=H1) / ICMP(type=0, id=5, seq=1)))
    assert f.matches(request) and not f.matches(answer)
    flow = f.flow_of(request)
    assert (flow.src, flow.dst, flow.ident, flow.proto) == (H1, H2, 5, "icmp")
    assert flow.relation(answer) == "reply"
    for bad, words in [("icmp and", "at least one address"), ("host", "wants an address"),
                       ("host 1.2.3", "not an IP"), ("frob 1", "unknown word 'frob'")]:
        with pytest.raises(Exception, match=words) as info:
            parse_watch(bad)
        assert getattr(info.value, "status", None) == 2


def test_lab_down_and_bad_endpoints_say_what_is_missing() -> None:
    from types import SimpleNamespace

    from orchestrate.trace.journey import TraceError
    from orchestrate.trace.live import TraceRequest, check_running, resolve_endpoints

    nodes = [SimpleNamespace(name="h1", state="running"),
             SimpleNamespace(name="r1", state="stopped")]
    lab = SimpleNamespace(name="line", status=lambda: nodes)
    with pytest.raises(TraceError, match="lab line is not running: r1 is stopped") as down:
        check_running(lab)
    assert down.value.status == 1
    labmap = line_map()
    for src, dst, family, words in [
            ("h9", "h2", None, "has no node 'h9'"), ("r1", "h2", None, "r1 is a router"),
            ("h1", "nowhere", None, "not an address and lab line has no such node"),
            ("h1", "2001:db8:2::2", 4, "is IPv6 but --family 4")]:
        with pytest.raises(TraceError, match=words) as bad:
            resolve_endpoints(labmap, TraceRequest("line", src, dst, family))
        assert bad.value.status == 2
    flow = resolve_endpoints(labmap, TraceRequest("line", "h1", "h2", 6, "udp"))
    assert (flow.src, flow.dst, flow.proto, flow.dport) == ("2001:db8:1::2", "2001:db8:2::2",
                                                             "udp", 33434)
    assert flow.ident is not None and 0x4000 <= flow.ident <= 0xEFFF
