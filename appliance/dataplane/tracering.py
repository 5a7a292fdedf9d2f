"""The fast path's trace records (``FastPath.trace_records()``) as the router's trace records.

While a trace runs the fast path stays attached and records the frames that match the trace
filter in its own ring (``twin.TRACE_RECORD``): the verdict, addresses, TTL, next hop and the
time of each stage. The daemon drains that ring and turns each record it forwarded (or could
not, its TX ring being full) into a `TraceRecord` with ``path="fast"`` and the same stage
names the slow path uses (rx, verify, fib, neighbor, ttl, tx), so `routerctl trace` and
`vrlab trace` say "fast path" for them. The frames it punted are not converted: the slow path
traces those itself, starting with the punt reason.

The stage times are CLOCK_MONOTONIC, the clock the daemon's tracer reads (time.monotonic),
so fast and slow records line up.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from appliance.core.egress import route_text
from appliance.core.trace import TraceRecord, TraceStage
from appliance.dataplane.twin import TRACE_RECORD, Verdict
from appliance.dataplane.twin import TraceStage as Ts

NS = 1e-9


def fast_records(blob: bytes, router: Any) -> list[TraceRecord]:
    """The forwarded (and TX-ring-full) records of a ``trace_records()`` blob."""
    out = []
    for (ifindex, out_ifindex, verdict, family, proto, ttl, _kind, length, ident, aux, src,
         dst, nexthop, *times) in TRACE_RECORD.iter_unpack(blob):
        if verdict not in (Verdict.FORWARD, Verdict.DROP_TXFULL):
            continue
        size = 4 if family == 4 else 16
        src_ip = IPv4Address(src[:4]) if family == 4 else IPv6Address(src)
        dst_ip = IPv4Address(dst[:4]) if family == 4 else IPv6Address(dst)
        hop = ip_address(nexthop[:size])
        flow: dict[str, Any] = {"family": family, "src": str(src_ip), "dst": str(dst_ip),
                                "proto": proto, "ttl": ttl, "length": length}
        if proto in (1, 58):
            flow.update(icmp_type=aux >> 8, icmp_code=aux & 0xFF, icmp_id=ident)
        elif proto in (6, 17):
            flow.update(sport=ident, dport=aux)
        out_iface = router.interfaces.get(out_ifindex)
        out_name = out_iface.name if out_iface is not None else f"ifindex {out_ifindex}"
        entry = router.neighbors.lookup(out_ifindex, nexthop[:size])
        state = entry.state.value if entry is not None else "cached"

        def t(stage: Ts, times: list[int] = times) -> float:
            return times[stage] * NS

        limit = "ttl" if family == 4 else "hop limit"
        stages = [
            TraceStage("rx", f"{14 + length} bytes (fast path)", t(Ts.RX)),
            TraceStage("verify", f"ipv{family} {src_ip} > {dst_ip} len {length} "
                       f"{limit} {ttl} proto {proto}", t(Ts.VERIFY)),
            TraceStage("fib", f"{dst_ip} -> {route_text(router.fib.lookup(dst_ip))}",
                       t(Ts.ROUTE)),
            TraceStage("neighbor", f"{hop} {state} (cached link-layer header)",
                       t(Ts.NEIGHBOR)),
        ]
        if verdict == Verdict.FORWARD:
            stages += [TraceStage("ttl", f"{limit} {ttl} -> {ttl - 1}", t(Ts.TX)),
                       TraceStage("tx", f"{out_name} (fast path TX ring)", t(Ts.TX))]
        else:
            stages.append(TraceStage("drop", f"{'ip' if family == 4 else 'ip6'}.odropped "
                                     f"({out_name} TX ring full)", t(Ts.NEIGHBOR)))
        out.append(TraceRecord(0, ifindex, stages, path="fast", flow=flow))
    return out


def trace_addresses(addresses: list[str]) -> bytes:
    """``set_trace`` records for these addresses."""
    from appliance.dataplane.twin import TRACE_ADDRESS

    packed = [ip_address(a) for a in addresses]
    return b"".join(TRACE_ADDRESS.pack(a.version, a.packed) for a in packed)
