"""`vrlab trace --watch FILTER`: which packet to follow when vrlab sends none itself.

The filter is a small subset of tcpdump's words, joined by `and`:
`icmp`, `udp`, `tcp`, `host ADDR`, `src ADDR`, `dst ADDR`, `port N`, `ip`, `ip6`.
Example: ``icmp and src 198.51.100.2 and dst 198.51.100.66``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from orchestrate.packets import Frame
from orchestrate.trace.journey import PROTOS, Flow, TraceError


@dataclass
class WatchFilter:
    text: str
    proto: str | None = None
    family: int | None = None
    hosts: list[str] = field(default_factory=list)
    src: str | None = None
    dst: str | None = None
    port: int | None = None

    def addresses(self) -> list[str]:
        """Every address the filter names (the routers trace packets to or from these)."""
        return [a for a in [*self.hosts, self.src, self.dst] if a is not None]

    def matches(self, f: Frame) -> bool:
        if f.family is None or f.src is None:
            return False
        if self.family is not None and f.family != self.family:
            return False
        if self.proto is not None and f.proto != PROTOS[self.proto][0 if f.family == 4 else 1]:
            return False
        if self.proto == "icmp" and f.icmp_type not in (8, 128):
            return False  # follow a request, not the answer or an error
        if any(h not in (f.src, f.dst) for h in self.hosts):
            return False
        if self.src is not None and f.src != self.src:
            return False
        if self.dst is not None and f.dst != self.dst:
            return False
        return self.port is None or self.port in (f.sport, f.dport)

    def flow_of(self, f: Frame) -> Flow:
        assert f.family is not None and f.src is not None and f.dst is not None
        proto = {1: "icmp", 58: "icmp", 6: "tcp", 17: "udp"}.get(f.proto or 0)
        if proto is None:
            raise TraceError(f"cannot follow protocol {f.proto} (only icmp, udp, tcp)")
        ident = f.icmp_id if proto == "icmp" else f.sport
        return Flow(f.family, proto, f.src, f.dst, ident, None if proto == "icmp" else f.dport)


def _bad(message: str) -> TraceError:
    return TraceError(message, 2)


def parse_watch(text: str) -> WatchFilter:
    """Parse FILTER; a bad word raises TraceError naming it and its position."""
    out = WatchFilter(text)
    words = text.split()
    i = 0

    def address(at: int) -> str:
        if at >= len(words):
            raise _bad(f"--watch {text!r}: {words[at - 1]!r} wants an address")
        try:
            return str(ipaddress.ip_address(words[at]))
        except ValueError:
            raise _bad(f"--watch {text!r}: word {at + 1} {words[at]!r} is not an IP "
                             "address") from None

    while i < len(words):
        word = words[i].lower()
        if word == "and":
            i += 1
            continue
        if word in ("icmp", "icmp6", "udp", "tcp"):
            out.proto = "icmp" if word == "icmp6" else word
            if word == "icmp6":
                out.family = 6
        elif word in ("ip", "ip6"):
            out.family = 4 if word == "ip" else 6
        elif word in ("host", "src", "dst"):
            addr = address(i + 1)
            if word == "host":
                out.hosts.append(addr)
            else:
                setattr(out, word, addr)
            i += 1
        elif word == "port":
            if i + 1 >= len(words) or not words[i + 1].isdigit():
                raise _bad(f"--watch {text!r}: 'port' wants a number")
            out.port = int(words[i + 1])
            i += 1
        else:
            raise _bad(f"--watch {text!r}: unknown word {words[i]!r} at word {i + 1} "
                             "(known: icmp udp tcp ip ip6 host src dst port and)")
        i += 1
    if not out.addresses():
        raise _bad(f"--watch {text!r}: name at least one address (host, src or dst), "
                         "so the routers know which packets to trace")
    return out
