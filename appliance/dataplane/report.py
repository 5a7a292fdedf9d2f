"""The fast path's counters as `routerctl show stats` prints them (after the netstat groups).

`render(counters, rx_ring_drops)` takes `FastPath.counters()` (appliance/dataplane/twin.py's
COUNTER_NAMES) and the kernel's RX-ring drop count the daemon totals, and writes them the way
`netstat -s` writes a group: a name line, then one tab-indented line per counter, the
per-reason punts only when they moved. The timing counters (rx_wait_ns, tx_kick_ns) become
averages per wake-up and per kick."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["render"]


def _line(count: int, singular: str, plural: str | None = None) -> str:
    return f"\t{count} {singular if count == 1 else (plural or singular + 's')}"


def render(counters: Mapping[str, int], rx_ring_drops: int = 0) -> str:
    """The `fastpath:` group of `routerctl show stats` (empty when there is no fast path)."""
    if not counters:
        return ""
    c = {key: int(value) for key, value in counters.items()}
    out = ["fastpath:",
           _line(c.get("rx", 0), "frame read from the RX rings",
                 "frames read from the RX rings"),
           f"\t{c.get('forward4', 0)} forwarded IPv4, {c.get('forward6', 0)} forwarded IPv6",
           _line(c.get("forward_stale", 0), "frame sent to a STALE neighbor",
                 "frames sent to a STALE neighbor"),
           _line(sum(v for k, v in c.items() if k.startswith("punt.")),
                 "frame handed to the slow path", "frames handed to the slow path")]
    for key in sorted(k for k in c if k.startswith("punt.") and c[k]):
        out.append(f"\t\t{c[key]} {key.removeprefix('punt.')}")
    out += [
        _line(c.get("drop.otherhost", 0), "frame for another station dropped",
              "frames for another station dropped"),
        _line(c.get("drop.txfull", 0), "frame dropped: TX ring full",
              "frames dropped: TX ring full"),
        _line(rx_ring_drops, "frame dropped by the kernel: RX ring full",
              "frames dropped by the kernel: RX ring full"),
        _line(c.get("tx_slow", 0), "slow-path frame sent", "slow-path frames sent"),
        _line(c.get("tx_kicks", 0), "TX kick"),
        _line(c.get("tx_backlog", 0), "kick left frames on a TX ring (sent by a later kick)",
              "kicks left frames on a TX ring (sent by a later kick)"),
    ]
    wakeups, kicks = c.get("rx_wakeups", 0), c.get("tx_kicks", 0)
    if wakeups:
        out.append(f"\t{wakeups} wake-ups, the first frame waited "
                   f"{c.get('rx_wait_ns', 0) / wakeups / 1e3:.1f} us on average on the RX ring")
    if kicks and c.get("tx_kick_ns", 0):
        out.append(f"\t{c['tx_kick_ns'] / kicks / 1e3:.1f} us per TX kick on average")
    if c.get("trace_lost", 0):
        out.append(_line(c["trace_lost"], "trace record lost", "trace records lost"))
    return "\n".join(out) + "\n"
