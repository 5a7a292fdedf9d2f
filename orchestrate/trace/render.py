"""A journey as text (the terminal timeline), JSON, and an SVG sequence picture."""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

from orchestrate.trace.journey import Hop, Journey

LEG_COLOURS = {"probe": "#0d6efd", "reply": "#198754", "error": "#dc3545",
               "redirect": "#fd7e14"}


def _hop_line(hop: Hop) -> str:
    if hop.kind == "wire":
        ends = f"{hop.sender or '?'} -> {hop.receiver or 'broadcast'}"
        return f"wire   {ends}: {hop.what}"
    if hop.kind == "router":
        route = f"{hop.interface_in or '?'} -> {hop.interface_out or '-'}"
        path = f", {hop.path} path" if hop.path else ""
        verdict = hop.verdict or "no trace record"
        counters = f" [{', '.join(hop.counters)}]" if hop.counters else ""
        return f"router {hop.node} {route}: {verdict}{path}{counters}"
    verb = hop.verdict or "at"
    return f"host   {hop.node} {verb}: {hop.what}"


def to_text(journey: Journey) -> str:
    """The terminal timeline: one line per hop, a router's stages under it."""
    flow = journey.flow
    head = (f"trace {flow.proto} IPv{flow.family} {flow.src} -> {flow.dst} in lab "
            f"{journey.lab}: {journey.outcome}")
    if journey.total_ms is not None:
        head += f", {journey.total_ms:.3f} ms end to end"
    lines = [head, f"  {journey.explanation}", "",
             f"  {'at ms':>9} {'+ms':>8}  {'leg':<8} hop"]
    for hop in journey.hops:
        at = f"{hop.at_ms:9.3f}" if hop.at_ms is not None else f"{'-':>9}"
        lat = f"{hop.latency_ms:+8.3f}" if hop.latency_ms is not None else f"{'':>8}"
        lines.append(f"  {at} {lat}  {hop.leg:<8} {_hop_line(hop)}")
        for stage in hop.stages:
            lines.append(f"  {'':>9} {'':>8}  {'':<8}   {stage.offset_us:+9.1f} us  "
                         f"{stage.name:<9} {stage.detail}")
    return "\n".join(lines) + "\n"


def to_json(journey: Journey) -> str:
    return json.dumps(journey.to_json(), indent=2) + "\n"


def to_svg(journey: Journey) -> str:
    """A sequence picture: one lifeline per node, an arrow per wire hop (coloured by leg),
    each router's stages beside its lifeline, drops and ICMP errors marked in red."""
    nodes: list[str] = []
    for hop in journey.hops:
        names = [hop.node] if hop.kind != "wire" else [
            end.split(":")[0] for end in (hop.sender, hop.receiver) if end]
        for name in names:
            if name not in nodes:
                nodes.append(name)
    col_w, top, row_h, stage_h = 230, 70, 34, 14
    x = {name: 120 + i * col_w for i, name in enumerate(nodes)}
    rows: list[str] = []
    y = top + 20
    for hop in journey.hops:
        colour = LEG_COLOURS.get(hop.leg, "#6c757d")
        at = f"{hop.at_ms:.3f} ms" if hop.at_ms is not None else ""
        if hop.kind == "wire":
            a = hop.sender.split(":")[0] if hop.sender else None
            b = hop.receiver.split(":")[0] if hop.receiver else None
            if a in x and b in x:
                x1, x2 = x[a], x[b]
                head = -8 if x2 > x1 else 8
                rows.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" '
                            f'stroke-width="2"/>')
                rows.append(f'<polygon points="{x2},{y} {x2 + head},{y - 5} {x2 + head},{y + 5}"'
                            f' fill="{colour}"/>')
                mid = (x1 + x2) / 2
                rows.append(f'<text x="{mid}" y="{y - 6}" text-anchor="middle" '
                            f'class="wire">{escape(_short(hop.what))}</text>')
            rows.append(f'<text x="10" y="{y + 4}" class="time">{escape(at)}</text>')
            y += row_h
        elif hop.kind == "router":
            cx = x[hop.node]
            bad = hop.verdict in ("dropped", "icmp-error")
            fill = "#f8d7da" if bad else "#e7f1ff"
            lines = [f"{hop.verdict or 'no record'}"
                     + (f" ({hop.path} path)" if hop.path else "")]
            lines += [f"{s.offset_us:+.1f}us {s.name} {s.detail}" for s in hop.stages]
            if hop.counters:
                lines.append("counters: " + ", ".join(hop.counters))
            h = stage_h * len(lines) + 8
            rows.append(f'<rect x="{cx + 8}" y="{y - 12}" width="{col_w - 20}" height="{h}" '
                        f'rx="4" fill="{fill}" stroke="{"#dc3545" if bad else "#9ec5fe"}"/>')
            for i, text in enumerate(lines):
                rows.append(f'<text x="{cx + 14}" y="{y + i * stage_h}" class="stage">'
                            f'{escape(_short(text, 44))}</text>')
            if bad:
                rows.append(f'<text x="{cx - 6}" y="{y + 5}" class="cross">✕</text>')
            y += h + 10
        else:
            cx = x[hop.node]
            rows.append(f'<circle cx="{cx}" cy="{y - 4}" r="5" fill="{colour}"/>')
            rows.append(f'<text x="{cx + 10}" y="{y}" class="stage">'
                        f'{escape(hop.verdict or "")}</text>')
            y += row_h - 10
    height = y + 30
    width = 120 + max(1, len(nodes)) * col_w + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
           "<style>.wire{font-size:10px;fill:#333}.stage{font-size:10px;fill:#222}"
           ".time{font-size:10px;fill:#666}.node{font-size:13px;font-weight:bold}"
           ".title{font-size:13px}.cross{font-size:16px;fill:#dc3545}</style>",
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" class="title">{escape(_title(journey))}</text>',
           f'<text x="10" y="38" class="time">{escape(journey.explanation)}</text>']
    for name, cx in x.items():
        out.append(f'<text x="{cx}" y="{top}" text-anchor="middle" class="node">'
                   f'{escape(name)}</text>')
        out.append(f'<line x1="{cx}" y1="{top + 6}" x2="{cx}" y2="{height - 10}" '
                   f'stroke="#adb5bd" stroke-dasharray="4 3"/>')
    out += rows
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _title(journey: Journey) -> str:
    flow = journey.flow
    total = f", {journey.total_ms:.3f} ms" if journey.total_ms is not None else ""
    return (f"{journey.lab}: {flow.proto} IPv{flow.family} {flow.src} -> {flow.dst}: "
            f"{journey.outcome}{total}")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
