"""Link impairments as a topology file (and `vrlab link set`) writes them, with netem's units.

```yaml
links:
  - {endpoints: [r1, r2], delay: 20ms, jitter: 2ms, loss: 1%, rate: 10mbit}
  - endpoints: [r2, {endpoint: r3, loss: 10%}]     # only what the link delivers to r3
```

Link-level values apply to what the link delivers at every endpoint, so both directions (a
`delay: 20ms` link adds 40 ms to a round trip); values on an endpoint apply to what it
receives, over the link's. Units are tc-netem(8)'s: times `us`, `ms` or `s`; probabilities a
percentage (`10%` or a number); rates `bit`, `kbit`, `mbit`, `gbit` (bits per second) or
`bps`, `kbps`, `mbps`, `gbps` (bytes per second, as tc has them). `reorder` sends that share of
packets at once and delays the others, so it needs `delay`, as in netem; `jitter` too.
"""

from __future__ import annotations

import re
from typing import Any

from orchestrate.topology.model import Impairment

KEYS = ("delay", "jitter", "loss", "reorder", "duplicate", "corrupt", "rate")
MAX_DELAY_MS = 10_000.0
"""Ten seconds: beyond that every check's timeout would fire first."""
# The one rule guest-side shaping (orchestrate.netem) puts on topologies.
LAN_PER_ENDPOINT = ("a per-endpoint impairment on a LAN segment cannot be applied: vrlab "
                    "shapes each sender's egress in its guest, and on a LAN that egress "
                    "reaches every member")
LAN_PER_ENDPOINT_HINT = "set the impairment on the link (all members), or use a "\
                        "point-to-point link"
MIN_RATE = 8  # bit/s
MAX_RATE = 100_000_000_000  # 100 Gbit/s

_TIME_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|usec|ms|msec|s|sec)\s*$", re.IGNORECASE)
_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps)\s*$", re.IGNORECASE)
_TIME_UNITS = {"us": 0.001, "usec": 0.001, "ms": 1.0, "msec": 1.0, "s": 1000.0, "sec": 1000.0}
_RATE_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}

Issue = tuple[str, str, str]
"""(key, message, hint) of one bad value."""


def parse_time(value: Any) -> float:
    """`20ms` -> 20.0 (milliseconds). Raises ValueError with the reason."""
    m = _TIME_RE.match(str(value)) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"expected a time like 20ms, 500us or 1s, got {value!r}")
    ms = float(m.group(1)) * _TIME_UNITS[m.group(2).lower()]
    if ms > MAX_DELAY_MS:
        raise ValueError(f"{value} is out of range 0..{MAX_DELAY_MS / 1000:g}s")
    return ms


def parse_percent(value: Any) -> float:
    """`10%` or 10 -> 10.0. Raises ValueError with the reason."""
    if isinstance(value, bool):
        raise ValueError(f"expected a percentage like 10%, got {value!r}")
    if isinstance(value, int | float):
        pct = float(value)
    else:
        m = _PERCENT_RE.match(str(value))
        if m is None:
            raise ValueError(f"expected a percentage like 10%, got {value!r}")
        pct = float(m.group(1))
    if not 0 <= pct <= 100:
        raise ValueError(f"{value} is out of range 0..100%")
    return pct


def parse_rate(value: Any) -> int:
    """`10mbit` -> 10_000_000 (bit/s); `1mbps` is bytes per second as in tc. Raises ValueError."""
    m = _RATE_RE.match(str(value)) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"expected a rate like 10mbit, 512kbit or 1gbit, got {value!r}")
    bits = float(m.group(1)) * _RATE_SCALE[m.group(2).lower()]
    if m.group(3).lower() == "bps":
        bits *= 8
    if not MIN_RATE <= bits <= MAX_RATE:
        raise ValueError(f"{value} is out of range {MIN_RATE}bit..100gbit")
    return int(bits)


_PARSERS = {"delay": parse_time, "jitter": parse_time, "loss": parse_percent,
            "reorder": parse_percent, "duplicate": parse_percent, "corrupt": parse_percent,
            "rate": parse_rate}


def parse_impairment(values: dict[str, Any], base: Impairment | None = None
                     ) -> tuple[Impairment, list[Issue]]:
    """The impairment keys of `values` (others ignored), over `base`; and every bad value."""
    parsed: dict[str, Any] = {}
    issues: list[Issue] = []
    for key in KEYS:
        if key in values:
            try:
                parsed[key] = _PARSERS[key](values[key])
            except ValueError as e:
                issues.append((key, f"{key}: {e}", _hint(key)))
    result = (base or Impairment()).merged(Impairment(**parsed))
    if result.jitter is not None and not result.delay:
        issues.append(("jitter", "jitter needs a delay", "netem varies the delay by jitter"))
    if result.reorder is not None and not result.delay:
        issues.append(("reorder", "reorder needs a delay",
                       "netem sends that share at once and delays the rest; e.g. delay: 10ms"))
    return result, issues


def _hint(key: str) -> str:
    if key in ("delay", "jitter"):
        return "netem units: 20ms, 500us, 1s"
    if key == "rate":
        return "netem units: 10mbit, 512kbit, 1gbit (or kbps/mbps: bytes per second)"
    return "a percentage 0..100, like 10%"


def to_yaml(imp: Impairment) -> dict[str, str]:
    """The impairment as the topology file writes it (what `vrlab expand` prints)."""
    out: dict[str, str] = {}
    for key, value in zip(KEYS, imp.values(), strict=True):
        if value is None:
            continue
        if key in ("delay", "jitter"):
            out[key] = f"{value:g}ms"
        elif key == "rate":
            out[key] = f"{value}bit"
        else:
            out[key] = f"{value:g}%"
    return out
