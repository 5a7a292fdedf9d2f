"""Running checks (orchestrate.checks.schema) against a lab, each within its bounded retry
window, and printing their results."""

from __future__ import annotations

import contextlib
import difflib
import json
import re
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from orchestrate.checks.schema import (
    DEFAULT_ATTEMPTS,
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    expand_command,
    literal_address,
)

if TYPE_CHECKING:
    from orchestrate.topology import CheckSpec, Topology



class ExecResultLike(Protocol):
    @property
    def exit_status(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


class NodeLike(Protocol):
    def exec(self, cmd: str, timeout: float = ...) -> ExecResultLike: ...


class LabLike(Protocol):
    """What the checks need from a lab (orchestrate.lab.Lab has it; tests use a fake)."""

    def node(self, name: str) -> NodeLike: ...
    def capture(self, node: str, ifname: str, path: Path
                ) -> contextlib.AbstractContextManager[Any]: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt of a check."""

    passed: bool
    reason: str
    """Why it failed (or what was seen when it passed), one line."""
    detail: str = ""
    """Command output or capture excerpt that shows it."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    spec: CheckSpec
    passed: bool
    reason: str
    detail: str
    attempts: int
    duration: float

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class PingResult:
    """What `ping` printed, parsed."""

    command: str
    exit_status: int
    transmitted: int
    received: int
    errors: list[str]
    """The ICMP error lines (`From 198.51.100.1 icmp_seq=1 Time to live exceeded`, ...)."""
    output: str

    @property
    def ok(self) -> bool:
        """Every echo request was answered."""
        return self.exit_status == 0 and self.transmitted > 0 \
            and self.received == self.transmitted


# iputils ping's texts for each ICMP/ICMPv6 error (ping4_common.c / ping6_common.c pr_icmph);
# "local error: message too long" is the host refusing to send after it learned the path MTU.
ICMP_ERROR_PATTERNS: dict[str, tuple[str, ...]] = {
    "net-unreachable": (r"Destination Net Unreachable", r"Destination unreachable: No route"),
    "host-unreachable": (r"Destination Host Unreachable",
                         r"Destination unreachable: Address unreachable"),
    "port-unreachable": (r"Destination Port Unreachable",
                         r"Destination unreachable: Port unreachable"),
    "admin-prohibited": (r"Packet filtered", r"Destination (Net|Host) Prohibited",
                         r"Destination unreachable: Administratively prohibited"),
    "frag-needed": (r"Frag needed and DF set \(mtu = (\d+)\)", r"Packet too big: mtu=(\d+)",
                    r"local error: [Mm]essage too long, mtu[=:] ?(\d+)"),
    "time-exceeded": (r"Time to live exceeded", r"Time exceeded: Hop limit"),
}
ICMP_ERROR_PATTERNS["unreachable"] = (
    r"Destination [A-Za-z ]*Unreachable", r"Destination unreachable", r"Packet filtered",
    r"Destination (Net|Host) Prohibited",
)
ALL_ERRORS_RE = re.compile("|".join(
    p for key, patterns in ICMP_ERROR_PATTERNS.items() for p in patterns if key != "unreachable"
) + r"|Destination [A-Za-z ]*Unreachable|Destination unreachable|Parameter problem|Redirect")
SUMMARY_RE = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
HOP_RE = re.compile(r"^\s*(\d+)\s+(\S+)")
RTT_RE = re.compile(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/")


def parse_ping(command: str, result: ExecResultLike) -> PingResult:
    output = _text(result.stdout) + _text(result.stderr)
    m = SUMMARY_RE.search(output)
    transmitted, received = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    errors = [line.strip() for line in output.splitlines() if ALL_ERRORS_RE.search(line)]
    return PingResult(command, result.exit_status, transmitted, received, errors, output)


def parse_traceroute(output: str) -> list[str | None]:
    """The address that answered at each hop (None for `*`), in order."""
    hops: list[str | None] = []
    for line in output.splitlines():
        m = HOP_RE.match(line)
        if m:
            token = m.group(2)
            hops.append(None if token == "*" else token)
    return hops


def flatten_counters(data: Any, prefix: str = "") -> dict[str, int]:
    """`routerctl show stats --json` -> {"ip.forward": 3, ...} (nested groups flattened)."""
    if isinstance(data, dict) and "counters" in data and isinstance(data["counters"], dict):
        data = data["counters"]
    out: dict[str, int] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                out.update(flatten_counters(value, name))
            elif isinstance(value, int) and not isinstance(value, bool):
                out[name] = value
    return out


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def excerpt(text: str, lines: int = 12) -> str:
    """The last `lines` lines of command output (failures show the end, where errors are)."""
    body = text.strip().splitlines()
    if len(body) <= lines:
        return "\n".join(body)
    return "\n".join([f"... ({len(body) - lines} lines before)", *body[-lines:]])


def link_local_of(lab: LabLike, topology: Topology, node: str, ifname: str,
                  timeout: float) -> str:
    """The link-local address of node:ifname: configured, from the lab, or from its MAC."""
    iface = topology.nodes[node].interface(ifname)
    if iface is not None and iface.link_local is not None:
        return str(iface.link_local)
    handle = lab.node(node)
    known = getattr(handle, "link_local", None)
    if callable(known):
        return str(known(ifname))
    result = handle.exec(f"cat /sys/class/net/{ifname}/address", timeout)
    mac = _text(result.stdout).strip()
    if result.exit_status != 0 or not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac):
        raise CheckError(f"cannot read the MAC of {node}:{ifname}: {excerpt(_text(result.stderr))}")
    octets = bytearray(int(x, 16) for x in mac.split(":"))
    octets[0] ^= 0x02  # modified EUI-64, RFC 4291 appendix A
    eui = bytes(octets[:3]) + b"\xff\xfe" + bytes(octets[3:])
    return str(IPv6Address(b"\xfe\x80" + bytes(6) + eui))


class CheckError(Exception):
    """A check could not even be attempted (a target address cannot be resolved...)."""


def resolve_target(lab: LabLike, topology: Topology, source: str, target: str,
                   family: int | None, timeout: float) -> tuple[str, int]:
    """(address to give ping/traceroute, family) for a `to:` value."""
    literal = literal_address(target)
    if literal is not None:
        return target, literal.version
    node_name, _, ifname = target.partition(":")
    node = topology.nodes[node_name]
    if family is None:
        family = 4 if node.first_address(4) is not None else 6
    if ifname:
        iface = node.interface(ifname)
        addr = next((a.ip for a in iface.addresses if a.version == family
                     and not a.ip.is_link_local), None) if iface else None
    else:
        addr = node.first_address(family)
    if addr is not None:
        return str(addr), family
    if family == 4:
        raise CheckError(f"{target} has no IPv4 address")
    # Link-local only (the seed testbed): reach it over a link both nodes are on.
    for _link, src_end, dst_end in topology.shared_links(source, node_name):
        if not ifname or dst_end.ifname == ifname:
            ll = link_local_of(lab, topology, node_name, dst_end.ifname, timeout)
            return f"{ll}%{src_end.ifname}", 6
    raise CheckError(f"{target} has no global IPv6 address and shares no link with {source}")


def ping(lab: LabLike, topology: Topology, source: str, target: str, *, family: int | None = None,
         count: int = 1, size: int | None = None, df: bool | None = None, ttl: int | None = None,
         wait: float = 2.0, timeout: float = DEFAULT_TIMEOUT) -> PingResult:
    """Run iputils ping on `source` towards `target` (node, node:ifname or address)."""
    address, family = resolve_target(lab, topology, source, target, family, timeout)
    argv = ["ping", f"-{family}", "-n", "-c", str(count), "-W", f"{wait:g}"]
    if count > 1:
        argv += ["-i", "0.2"]
    if size is not None:
        argv += ["-s", str(size)]
    if df is not None:
        argv += ["-M", "do" if df else "dont"]
    if ttl is not None:
        argv += ["-t", str(ttl)]
    argv.append(address)
    command = shlex.join(argv)
    result = lab.node(source).exec(command, min(timeout, count * 0.2 + wait + 10))
    return parse_ping(command, result)


class CheckRunner:
    """Runs CheckSpecs against a lab with each check's bounded retry window."""

    def __init__(self, lab: LabLike, topology: Topology, *, workdir: Path | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 pcap_filter: Callable[[Path, str], tuple[int, list[str], str]] | None = None,
                 ) -> None:
        self.lab = lab
        self.topology = topology
        self.workdir = workdir
        self.sleep = sleep
        self.clock = clock
        self.pcap_filter = pcap_filter or tcpdump_filter
        self.baselines: dict[tuple[str, str], int] = {}

    # -- the loop

    def run_all(self, specs: list[CheckSpec],
                on_result: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
        """Run every check in order (a failure does not stop the rest)."""
        for spec in specs:
            if spec.kind == "counter" and "command" not in spec.params:
                key = (spec.params["node"], spec.params["key"])
                if key not in self.baselines:
                    # a lab that cannot answer now will fail the check itself, with the reason
                    with contextlib.suppress(Exception):
                        self.baselines[key] = self.counters(key[0]).get(key[1], 0)
        results = []
        for spec in specs:
            result = self.run(spec)
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results

    def run(self, spec: CheckSpec) -> CheckResult:
        attempts = int(spec.params.get("attempts", DEFAULT_ATTEMPTS))
        interval = float(spec.params.get("interval", DEFAULT_INTERVAL))
        start = self.clock()
        outcome = Outcome(False, "not run")
        attempt = 0
        for attempt in range(1, attempts + 1):
            try:
                outcome = getattr(self, f"_{spec.kind.replace('-', '_')}")(spec.params)
            except CheckError as e:
                outcome = Outcome(False, str(e))
            except Exception as e:  # a lab error (SSH dropped...) fails this check only
                outcome = Outcome(False, f"{type(e).__name__}: {e}")
            if outcome.passed:
                break
            if attempt < attempts:
                self.sleep(interval)
        return CheckResult(spec, outcome.passed, outcome.reason, outcome.detail, attempt,
                           self.clock() - start)

    def exec(self, node: str, command: str, timeout: float) -> ExecResultLike:
        return self.lab.node(node).exec(expand_command(command, self.topology), timeout)

    def counters(self, node: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, int]:
        result = self.lab.node(node).exec("routerctl show stats --json", timeout)
        if result.exit_status != 0:
            raise CheckError(f"routerctl show stats failed on {node} "
                             f"(exit {result.exit_status}): {excerpt(_text(result.stderr), 3)}")
        try:
            return flatten_counters(json.loads(_text(result.stdout)))
        except ValueError:
            raise CheckError(f"routerctl on {node} printed no JSON: "
                             f"{excerpt(_text(result.stdout), 3)}") from None

    # -- the kinds

    def _ping(self, p: dict[str, Any]) -> Outcome:
        expect = p.get("expect", "success")
        r = ping(self.lab, self.topology, p["from"], p["to"], family=p.get("family"),
                 count=p.get("count", 1), size=p.get("size"), df=p.get("df"), ttl=p.get("ttl"),
                 timeout=p.get("timeout", DEFAULT_TIMEOUT))
        seen = f"{r.received}/{r.transmitted} replies"
        if r.errors:
            seen += f", {r.errors[0]}"
        detail = f"$ {r.command}\n{excerpt(r.output)}"
        if expect == "success":
            if r.ok:
                return Outcome(True, seen, detail)
            return Outcome(False, f"expected every echo answered, got {seen}", detail)
        if expect == "no-reply":
            if r.transmitted > 0 and r.received == 0 and not r.errors:
                return Outcome(True, seen, detail)
            return Outcome(False, f"expected no reply and no error, got {seen}", detail)
        patterns = [re.compile(x) for x in ICMP_ERROR_PATTERNS[expect]]
        for line in r.errors:
            for pattern in patterns:
                m = pattern.search(line)
                if m is None:
                    continue
                if "mtu" in p and m.groups() and int(m.group(1)) != p["mtu"]:
                    return Outcome(False, f"expected {expect} with mtu {p['mtu']}, got: {line}",
                                   detail)
                return Outcome(True, line, detail)
        return Outcome(False, f"expected {expect}, got {seen}", detail)

    def _traceroute(self, p: dict[str, Any]) -> Outcome:
        timeout = p.get("timeout", DEFAULT_TIMEOUT)
        address, family = resolve_target(self.lab, self.topology, p["from"], p["to"],
                                         p.get("family"), timeout)
        max_hops = p.get("max_hops", 8)
        probes = {"udp": [], "tcp": ["-T"], "icmp": ["-I"]}[p.get("proto", "udp")]
        command = shlex.join(["traceroute", f"-{family}", *probes, "-n", "-q", "1", "-w", "2",
                              "-m", str(max_hops), address])
        result = self.lab.node(p["from"]).exec(command, timeout)
        output = _text(result.stdout) + _text(result.stderr)
        detail = f"$ {command}\n{excerpt(output)}"
        if result.exit_status != 0:
            return Outcome(False, f"traceroute exited {result.exit_status}", detail)
        hops = parse_traceroute(_text(result.stdout))
        names = [self._describe(h) for h in hops]
        expected: list[str] = p["hops"]
        for i, (want, got) in enumerate(zip(expected, hops, strict=False), start=1):
            if not self._hop_matches(want, got):
                return Outcome(False, f"hop {i}: expected {want}, got {names[i - 1]}", detail)
        if len(hops) != len(expected):
            return Outcome(False, f"expected {len(expected)} hops {expected}, got {len(hops)}: "
                           f"{names}", detail)
        return Outcome(True, " -> ".join(names), detail)

    def _ping_stats(self, p: dict[str, Any]) -> Outcome:
        """Many echoes, `gap` seconds apart: the minimum RTT and the loss must be in range, and
        with `baseline`, the minimum RTT added over the path to the baseline target."""
        found = self._ping_many(p, p["to"])
        if isinstance(found, Outcome):
            return found
        loss, low, seen, detail = found
        if "loss" in p and not p["loss"][0] <= loss <= p["loss"][1]:
            return Outcome(False, f"{seen}: loss outside {p['loss']}", detail)
        if "rtt" in p and (low is None or not p["rtt"][0] <= low <= p["rtt"][1]):
            return Outcome(False, f"{seen}: rtt min outside {p['rtt']} ms", detail)
        if "baseline" in p:
            base = self._ping_many(p, p["baseline"])
            if isinstance(base, Outcome):
                return base
            _, base_low, base_seen, base_detail = base
            detail += f"\n{base_detail}"
            if low is None or base_low is None:
                return Outcome(False, f"{seen}; baseline {base_seen}: no RTT to compare", detail)
            added = low - base_low
            seen += f"; baseline {p['baseline']} rtt min {base_low:.1f} ms: {added:+.1f} ms"
            if not p["added"][0] <= added <= p["added"][1]:
                return Outcome(False, f"{seen} added, outside {p['added']} ms", detail)
        return Outcome(True, seen, detail)

    def _ping_many(self, p: dict[str, Any], target: str
                   ) -> Outcome | tuple[float, float | None, str, str]:
        """`count` echoes to `target`: (loss %, minimum RTT ms, summary, detail), or the
        failed Outcome when ping printed no summary."""
        timeout = p.get("timeout", DEFAULT_TIMEOUT)
        address, family = resolve_target(self.lab, self.topology, p["from"], target,
                                         p.get("family"), timeout)
        count, gap = p.get("count", 20), p.get("gap", 0.2)
        argv = ["ping", f"-{family}", "-n", "-q", "-c", str(count), "-i", f"{gap:g}",
                "-W", "2"]
        if "size" in p:
            argv += ["-s", str(p["size"])]
        command = shlex.join([*argv, address])
        result = self.lab.node(p["from"]).exec(command, count * gap + 15 + timeout)
        output = _text(result.stdout) + _text(result.stderr)
        detail = f"$ {command}\n{excerpt(output)}"
        m = SUMMARY_RE.search(output)
        if m is None or int(m.group(1)) == 0:
            return Outcome(False, "ping printed no summary", detail)
        sent, got = int(m.group(1)), int(m.group(2))
        loss = 100.0 * (sent - got) / sent
        rtt = RTT_RE.search(output)
        # the minimum: under TCG a guest's own scheduling adds tens of ms to some echoes
        low = float(rtt.group(1)) if rtt else None
        seen = f"loss {loss:.1f}% ({sent - got}/{sent})" + (
            f", rtt min {low:.1f} avg {float(rtt.group(2)):.1f} ms" if rtt else "")
        return loss, low, seen, detail

    def _transfer(self, p: dict[str, Any]) -> Outcome:
        """`bytes` of random data over TCP (netcat) from `from` to `to`, checksums compared."""
        timeout = p.get("timeout", DEFAULT_TIMEOUT)
        address, _ = resolve_target(self.lab, self.topology, p["from"], p["to"],
                                    p.get("family"), timeout)
        size, port = p.get("bytes", 2 << 20), p.get("port", 5201)
        receiver = p["to"].partition(":")[0] if literal_address(p["to"]) is None \
            else self.topology.node_of_address(literal_address(p["to"]))  # type: ignore[arg-type]
        if receiver is None:
            raise CheckError(f"no node of the lab has {p['to']} to receive the transfer")
        rx, tx = "/tmp/vrlab-transfer.rx", "/tmp/vrlab-transfer.tx"
        # netcat-openbsd listens on one family: IPv4 unless told -6
        six = "-6 " if ":" in address else ""
        listen = (f"rm -f {rx}; (timeout {timeout:g} nc {six}-l {port} > {rx} 2>/dev/null &) "
                  "; sleep 0.5")
        self.lab.node(receiver).exec(listen, timeout)
        send = (f"head -c {size} /dev/urandom > {tx} && timeout {timeout:g} nc -N -w 5 "
                f"{shlex.quote(address.split('%')[0])} {port} < {tx}; echo status=$?; "
                f"sha256sum < {tx}")
        sent = self.lab.node(p["from"]).exec(send, timeout + 10)
        out = _text(sent.stdout)
        # the receiver's file is complete once nc there has exited (the sender closed)
        check = (f"for i in $(seq 50); do pgrep -x nc >/dev/null || break; sleep 0.2; done; "
                 f"stat -c %s {rx}; sha256sum < {rx}")
        got = self.lab.node(receiver).exec(check, timeout)
        detail = f"$ {send}\n{excerpt(out)}\n$ {check}\n{excerpt(_text(got.stdout))}"
        want = out.split()[-2] if len(out.split()) >= 2 else ""
        lines = _text(got.stdout).split()
        if "status=0" not in out or len(lines) < 2:
            return Outcome(False, "the transfer did not complete", detail)
        if lines[1] != want:
            return Outcome(False, f"checksums differ: sent {want[:16]}, got {lines[1][:16]} "
                           f"({lines[0]} of {size} bytes)", detail)
        return Outcome(True, f"{size} bytes, sha256 {want[:16]} identical", detail)

    def _describe(self, hop: str | None) -> str:
        if hop is None:
            return "*"
        addr = literal_address(hop)
        owner = self.topology.node_of_address(addr) if addr is not None else None
        return f"{hop} ({owner})" if owner else hop

    def _hop_matches(self, want: str, got: str | None) -> bool:
        if got is None:
            return False
        addr = literal_address(got)
        literal = literal_address(want)
        if literal is not None:
            return addr == literal
        return addr is not None and self.topology.node_of_address(addr) == want

    def _exec(self, p: dict[str, Any]) -> Outcome:
        command = expand_command(p["command"], self.topology)
        result = self.lab.node(p["node"]).exec(command, p.get("timeout", DEFAULT_TIMEOUT))
        stdout, stderr = _text(result.stdout), _text(result.stderr)
        detail = f"$ {command}\n{excerpt(stdout + stderr)}"
        want = p.get("status", 0)
        if result.exit_status != want:
            return Outcome(False, f"exit status {result.exit_status}, expected {want}", detail)
        if "stdout" in p and re.search(p["stdout"], stdout, re.MULTILINE) is None:
            return Outcome(False, f"stdout does not match /{p['stdout']}/", detail)
        return Outcome(True, f"exit status {result.exit_status}", detail)

    def _counter(self, p: dict[str, Any]) -> Outcome:
        node, key, at_least = p["node"], p["key"], p.get("at_least", 1)
        timeout = p.get("timeout", DEFAULT_TIMEOUT)
        detail = ""
        if "command" in p:
            before = self.counters(node, timeout)
            result = self.exec(p["on"], p["command"], timeout)
            after = self.counters(node, timeout)
            detail = (f"$ {expand_command(p['command'], self.topology)}  (on {p['on']}, exit "
                      f"{result.exit_status})\n{excerpt(_text(result.stdout), 6)}")
            start = before.get(key, 0)
        else:
            after = self.counters(node, timeout)
            start = self.baselines.get((node, key), 0)
        if key not in after:
            close = difflib.get_close_matches(key, list(after), 3)
            hint = f"; similar: {', '.join(close)}" if close else ""
            return Outcome(False, f"{node} has no counter {key}{hint}", detail)
        delta = after[key] - start
        seen = f"{key} {start} -> {after[key]} (+{delta})"
        if delta >= at_least:
            return Outcome(True, seen, detail)
        return Outcome(False, f"{seen}, expected at least +{at_least}", detail)

    def _capture(self, p: dict[str, Any]) -> Outcome:
        node, ifname = p["endpoint"].split(":")
        timeout = p.get("timeout", DEFAULT_TIMEOUT)
        with contextlib.ExitStack() as stack:
            workdir = self.workdir
            if workdir is None:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(
                    prefix="vrlab-check-")))
            pcap = workdir / f"capture-{node}-{ifname}-{time.monotonic_ns()}.pcap"
            with self.lab.capture(node, ifname, pcap):
                result = self.exec(p["on"], p["command"], timeout)
                self.sleep(0.5)  # let the last frames reach the capture before it stops
            matched, lines, error = self.pcap_filter(pcap, p["filter"])
            command = expand_command(p["command"], self.topology)
            detail = (f"$ {command}  (on {p['on']}, exit {result.exit_status})\n"
                      f"capture {p['endpoint']} filter {p['filter']!r}: {matched} matching")
            if lines:
                detail += "\n" + excerpt("\n".join(lines), 8)
        if error:
            return Outcome(False, f"cannot filter the capture: {error}", detail)
        if p.get("expect", "present") == "present":
            if matched > 0:
                return Outcome(True, f"{matched} matching packet(s)", detail)
            return Outcome(False, f"no packet matching {p['filter']!r} on {p['endpoint']}",
                           detail)
        if matched == 0:
            return Outcome(True, "no matching packet", detail)
        return Outcome(False, f"{matched} packet(s) matching {p['filter']!r} on "
                       f"{p['endpoint']}, expected none", detail)


def tcpdump_filter(pcap: Path, expression: str) -> tuple[int, list[str], str]:
    """(matching packets, their tcpdump lines, error) for a pcap file and a filter."""
    if not pcap.exists():
        return 0, [], f"no capture file {pcap}"
    try:
        # `--`: the expression can never be taken for an option (`-w/tmp/x` wrote a file)
        result = subprocess.run(["tcpdump", "-nn", "-r", str(pcap), "--", expression],
                                capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        return 0, [], "tcpdump is not installed"
    if result.returncode != 0:
        return 0, [], excerpt(result.stderr, 3)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return len(lines), lines, ""


# ---------------------------------------------------------------------------------------------
# Presenting results


def results_table(results: list[CheckResult], title: str = "checks") -> Any:
    """A rich Table: one row per check with its verdict and the reason."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("check")
    table.add_column("result")
    table.add_column("tries", justify="right")
    table.add_column("time", justify="right")
    table.add_column("reason", overflow="fold")
    for i, r in enumerate(results, start=1):
        verdict = Text("PASS", style="bold green") if r.passed else Text("FAIL", style="bold red")
        table.add_row(str(i), f"{r.name}\n[dim]{r.spec.kind} {Path(r.spec.file).name}:"
                      f"{r.spec.line}[/dim]", verdict, str(r.attempts), f"{r.duration:.1f}s",
                      r.reason)
    return table


def print_results(results: list[CheckResult], console: Any, title: str = "checks") -> None:
    """The table, then the evidence (command output, capture excerpt) of each failure."""
    from rich.markup import escape
    from rich.panel import Panel

    console.print(results_table(results, title))
    for i, r in enumerate(results, start=1):
        if not r.passed and r.detail:
            console.print(Panel(escape(r.detail), title=f"#{i} {escape(r.name)}",
                                title_align="left", border_style="red"))
    failed = sum(1 for r in results if not r.passed)
    style = "bold red" if failed else "bold green"
    console.print(f"[{style}]{len(results) - failed} passed, {failed} failed[/{style}]")
