"""Counters under the FreeBSD `ipstat`/`icmpstat`/`ip6stat`/`icmp6stat` field names.

Keys are `group.name`, the FreeBSD field without its prefix (`ips_badsum` -> `ip.badsum`).
`Stats.render()` prints them the way `netstat -s` does (seed 003, figure 8.5), one line per
counter in the kernel's order, with the histograms of ICMP types in and out.

A few keys have no FreeBSD twin because this router counts things the BSD kernel leaves to
the driver or to the socket layer; they live in the `link` group (Ethernet demux) and the
`nd` group (neighbor discovery), and in `ip6.noproto`.
"""

from __future__ import annotations

from collections.abc import Iterator

# (key, netstat -s text). "%d" is the count; "{s}" pluralises like netstat's plural().
# The output lines are the same for IPv4 and IPv6, the input checks for ICMP and ICMPv6.
_OUTPUT = (
    ("redirectsent", "{n} redirect{s} sent"),
    ("localout", "{n} packet{s} sent from this host"),
    ("rawout", "{n} packet{s} sent with fabricated ip header"),
    ("odropped", "{n} output packet{s} dropped due to no bufs, etc."),
    ("noroute", "{n} output packet{s} discarded due to no route"),
    ("fragmented", "{n} output datagram{s} fragmented"),
    ("ofragments", "{n} fragment{s} created"),
    ("cantfrag", "{n} datagram{s} that can't be fragmented"),
)
_ICMP_CHECKS = (
    ("badcode", "{n} message{s} with bad code fields"),
    ("tooshort", "{n} message{s} < minimum length"),
    ("checksum", "{n} bad checksum{s}"),
    ("badlen", "{n} message{s} with bad length"),
)

_IP = (
    ("total", "{n} total packet{s} received"),
    ("badsum", "{n} bad header checksum{s}"),
    ("toosmall", "{n} with size smaller than minimum"),
    ("tooshort", "{n} with data size < data length"),
    ("toolong", "{n} with ip length > max ip packet size"),
    ("badhlen", "{n} with header length < data size"),
    ("badlen", "{n} with data length < header length"),
    ("badoptions", "{n} with bad options"),
    ("badvers", "{n} with incorrect version number"),
    ("fragments", "{n} fragment{s} received"),
    ("fragdropped", "{n} fragment{s} dropped (dup or out of space)"),
    ("fragtimeout", "{n} fragment{s} dropped after timeout"),
    ("reassembled", "{n} packet{s} reassembled ok"),
    ("delivered", "{n} packet{s} for this host"),
    ("noproto", "{n} packet{s} for unknown/unsupported protocol"),
    ("forward", "{n} packet{s} forwarded ({fastforward} packet{fs} fast forwarded)"),
    ("fastforward", None),
    ("cantforward", "{n} packet{s} not forwardable"),
    ("ttlexceeded", "{n} packet{s} whose time to live expired in transit"),
    ("blackhole", "{n} packet{s} discarded by a blackhole route"),
    ("reject", "{n} packet{s} refused by a reject route"),
    ("notmember", "{n} packet{s} received for unknown multicast group"),
    *_OUTPUT,
    ("nogif", "{n} tunneling packet{s} that can't find gif"),
    ("badaddr", "{n} datagram{s} with bad address in header"),
)

_ICMP_BEFORE = (
    ("error", "{n} call{s} to icmp_error"),
    ("oldshort", "{n} error{s} not generated 'cuz old ip message was too short"),
    ("oldicmp", "{n} error{s} not generated 'cuz old message was icmp"),
    ("ratelimited", "{n} error{s} not generated because of rate limitation"),
)
_ICMP_AFTER = (
    *_ICMP_CHECKS,
    ("bmcastecho", "{n} multicast echo requests ignored"),
    ("bmcasttstamp", "{n} multicast timestamp requests ignored"),
)
_ICMP_END = (
    ("reflect", "{n} message response{s} generated"),
    ("badaddr", "{n} invalid return address{es}"),
    ("noroute", "{n} no return route{s}"),
)

_IP6 = (
    ("total", "{n} total packet{s} received"),
    ("toosmall", "{n} with size smaller than minimum"),
    ("tooshort", "{n} with data size < data length"),
    ("badoptions", "{n} with bad options"),
    ("badvers", "{n} with incorrect version number"),
    ("fragments", "{n} fragment{s} received"),
    ("fragdropped", "{n} fragment{s} dropped (dup or out of space)"),
    ("fragtimeout", "{n} fragment{s} dropped after timeout"),
    ("fragoverflow", "{n} fragment{s} that exceeded limit"),
    ("reassembled", "{n} packet{s} reassembled ok"),
    ("delivered", "{n} packet{s} for this host"),
    ("noproto", "{n} packet{s} for unknown/unsupported protocol"),
    ("forward", "{n} packet{s} forwarded ({fastforward} packet{fs} fast forwarded)"),
    ("fastforward", None),
    ("cantforward", "{n} packet{s} not forwardable"),
    ("ttlexceeded", "{n} packet{s} whose hop limit expired in transit"),
    ("blackhole", "{n} packet{s} discarded by a blackhole route"),
    ("reject", "{n} packet{s} refused by a reject route"),
    *_OUTPUT,
    ("badscope", "{n} packet{s} that violated scope rules"),
    ("notmember", "{n} multicast packet{s} which we don't join"),
    ("toomanyhdr", "{n} packet{s} discarded because of too many headers"),
)

_ICMP6_BEFORE = (
    ("error", "{n} call{s} to icmp6_error"),
    ("canterror", "{n} error{s} not generated in response to an icmp6 message"),
    ("toofreq", "{n} error{s} not generated because of rate limitation"),
)
_ICMP6_AFTER = (
    *_ICMP_CHECKS,
)
_ICMP6_END = (
    ("reflect", "{n} message response{s} generated"),
    ("nd_toomanyopt", "{n} message{s} with too many ND options"),
    ("nd_badopt", "{n} message{s} with bad ND options"),
    ("badns", "{n} bad neighbor solicitation message{s}"),
    ("badna", "{n} bad neighbor advertisement message{s}"),
    ("badrs", "{n} bad router solicitation message{s}"),
    ("badra", "{n} bad router advertisement message{s}"),
    ("badredirect", "{n} bad redirect message{s}"),
    ("pmtuchg", "{n} path MTU change{s}"),
)

_TCP = (
    ("rcvtotal", "{n} packet{s} received"),
    ("rcvbadsum", "{n} discarded for bad checksum{s}"),
    ("rcvbadoff", "{n} discarded for bad header offset field{s}"),
    ("rcvshort", "{n} discarded because packet too short"),
    ("noport", "{n} packet{s} for a closed port"),
    ("sndrst", "{n} reset{s} sent"),
    ("rstlimited", "{n} reset{s} not sent because of rate limitation"),
)

_ARP = (
    ("txrequests", "{n} ARP request{s} sent"),
    ("txreplies", "{n} ARP repl{ies} sent"),
    ("txannounce", "{n} gratuitous ARP{s} sent"),
    ("rxrequests", "{n} ARP request{s} received"),
    ("rxreplies", "{n} ARP repl{ies} received"),
    ("received", "{n} ARP packet{s} received"),
    ("badpkt", "{n} malformed ARP packet{s}"),
    ("ignored", "{n} ARP packet{s} not for this host"),
    ("queued", "{n} packet{s} queued awaiting resolution"),
    ("dropped", "{n} total packet{s} dropped due to no ARP entry"),
    ("timeouts", "{n} ARP entr{ies} timed out"),
    ("dupips", "{n} Duplicate IP{s} seen"),
)

_ND = (
    ("rxns", "{n} neighbor solicitation{s} received"),
    ("rxna", "{n} neighbor advertisement{s} received"),
    ("txns", "{n} neighbor solicitation{s} sent"),
    ("txna", "{n} neighbor advertisement{s} sent"),
    ("ignored", "{n} ND message{s} not for this host"),
    ("ignoredmsg", "{n} ND message{s} of unsupported type ignored"),
    ("queued", "{n} packet{s} queued awaiting resolution"),
    ("dropped", "{n} total packet{s} dropped due to no ND entry"),
    ("dupaddr", "{n} advertisement{s} of our own address{es} by another node"),
    ("timeouts", "{n} ND entr{ies} timed out"),
    ("dad", "{n} duplicate address detection probe{s} answered"),
)

_LINK = (
    ("received", "{n} frame{s} received"),
    ("tooshort", "{n} frame{s} shorter than an Ethernet header"),
    ("notforus", "{n} frame{s} for another station"),
    ("notmember", "{n} multicast frame{s} for a group we don't join"),
    ("badtype", "{n} frame{s} with unsupported ethertype"),
    ("badif", "{n} frame{s} on an unknown interface"),
    ("sent", "{n} frame{s} sent"),
)

ICMP_NAMES = {
    0: "echo reply", 3: "destination unreachable", 4: "source quench", 5: "routing redirect",
    8: "echo", 9: "router advertisement", 10: "router solicitation", 11: "time exceeded",
    12: "parameter problem", 13: "time stamp", 14: "time stamp reply",
    15: "information request", 16: "information request reply", 17: "address mask request",
    18: "address mask reply",
}
ICMP6_NAMES = {
    1: "destination unreachable", 2: "packet too big", 3: "time exceed",
    4: "parameter problem", 128: "echo", 129: "echo reply", 130: "multicast listener query",
    131: "MLDv1 listener report", 132: "MLDv1 listener done", 133: "router solicitation",
    134: "router advertisement", 135: "neighbor solicitation", 136: "neighbor advertisement",
    137: "redirect", 143: "MLDv2 listener report",
}

_GROUPS: tuple[tuple[str, tuple[tuple[str, str | None], ...]], ...] = (
    ("link", _LINK),
    ("ip", _IP),
    ("icmp", _ICMP_BEFORE + _ICMP_AFTER + _ICMP_END),
    ("ip6", _IP6),
    ("icmp6", _ICMP6_BEFORE + _ICMP6_AFTER + _ICMP6_END),
    ("tcp", _TCP),
    ("arp", _ARP),
    ("nd", _ND),
)
HISTOGRAMS = ("icmp.inhist", "icmp.outhist", "icmp6.inhist", "icmp6.outhist")
# netstat prints the output histogram after the "before" lines and the input histogram after
# the "after" lines of each ICMP group: the row each histogram follows.
_HIST_AFTER = {
    f"icmp.{_ICMP_BEFORE[-1][0]}": ("icmp.outhist", "Output histogram:"),
    f"icmp.{_ICMP_AFTER[-1][0]}": ("icmp.inhist", "Input histogram:"),
    f"icmp6.{_ICMP6_BEFORE[-1][0]}": ("icmp6.outhist", "Output histogram:"),
    f"icmp6.{_ICMP6_AFTER[-1][0]}": ("icmp6.inhist", "Input histogram:"),
}

KNOWN_KEYS: frozenset[str] = frozenset(
    [f"{group}.{name}" for group, table in _GROUPS for name, _ in table]
    + [f"{h}.{t}" for h in HISTOGRAMS for t in range(256)]
)


def _plural(text: str, n: int, **extra: object) -> str:
    return text.format(
        n=n,
        s="" if n == 1 else "s",
        es="" if n == 1 else "es",
        ies="y" if n == 1 else "ies",
        **extra,
    )


class Stats:
    """All counters in one flat dict; `bump` is one dict update (packet path)."""

    __slots__ = ("counters",)

    def __init__(self) -> None:
        self.counters: dict[str, int] = dict.fromkeys(KNOWN_KEYS, 0)

    def bump(self, key: str, n: int = 1) -> None:
        """Add `n` to counter `key`; an unknown key is a programming error (KeyError)."""
        self.counters[key] += n

    def get(self, key: str) -> int:
        return self.counters[key]

    def as_dict(self) -> dict[str, int]:
        """Every counter, histograms only where non-zero, sorted by key."""
        return {
            k: v
            for k, v in sorted(self.counters.items())
            if v or not k.split(".")[1].endswith("hist")
        }

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter (for tests comparing before and after)."""
        return dict(self.counters)

    def histogram(self, name: str) -> Iterator[tuple[int, int]]:
        """(type, count) pairs of a histogram (e.g. "icmp.outhist") with a count."""
        for t in range(256):
            count = self.counters[f"{name}.{t}"]
            if count:
                yield t, count

    def render(self) -> str:
        """The `netstat -s` text for every group."""
        out: list[str] = []
        c = self.counters
        for group, table in _GROUPS:
            out.append(f"{group}:")
            for name, text in table:
                if text is None:
                    continue
                key = f"{group}.{name}"
                n = c[key]
                if name == "forward":
                    ff = c[f"{group}.fastforward"]
                    out.append("\t" + _plural(text, n, fastforward=ff, fs="" if ff == 1 else "s"))
                else:
                    out.append("\t" + _plural(text, n))
                hist = _HIST_AFTER.get(key)
                if hist is not None:
                    out.extend(self._render_hist(*hist))
            if group == "icmp":
                out.append("\tICMP address mask responses are disabled")
        return "\n".join(out) + "\n"

    def _render_hist(self, name: str, title: str) -> list[str]:
        names = ICMP_NAMES if name.startswith("icmp.") else ICMP6_NAMES
        rows = [f"\t\t{names.get(t, f'#{t}')}: {n}" for t, n in self.histogram(name)]
        return [f"\t{title}", *rows] if rows else []
