"""routerctl: look at and change a running vrlab-router through its control socket.

    routerctl show interfaces|routes|neighbors|stats|sysctl [--json]
    routerctl sysctl [NAME ...] | sysctl -w NAME=VALUE ...
    routerctl route add PREFIX via GATEWAY [dev IF] | dev IF | blackhole | reject
    routerctl route del PREFIX
    routerctl trace [-n N] [--filter ADDR,...] [--json]
    routerctl trace --start [-n N] [--filter ADDR,...]  |  trace --collect SESSION [--json]
    routerctl status
    routerctl reload

Exit status: 0 on success, 1 when the daemon refused a request or could not be reached,
2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from appliance.control.client import DEFAULT_SOCKET, SHOW_WHAT, ControlClient, ControlError

TRACE_HELP = """\
Turn tracing on for the next N packets the router receives and print, for each, the stages it
crossed (rx, verify, fib lookup and the route hit, neighbor state, queue, ttl, tx, icmp, drop,
punt ...) with times relative to its arrival, like a dtrace stack. Tracing does not change
the path a packet takes: the C fast path keeps forwarding and records the stages of the
packets it forwards ("fast path"); the ones it hands to the Python slow path are traced there
("slow path", with the reason). --filter traces only IP packets from or to the addresses
given. --start begins a session and prints its number without waiting; --collect SESSION
prints what that session recorded and ends it (this is how `vrlab trace` arms every router
of a lab before it sends its probe)."""


class UsageError(Exception):
    pass


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


def render_interfaces(items: list[dict[str, Any]]) -> str:
    out = []
    for i in items:
        out.append(f"{i['name']}: ifindex {i['ifindex']} mtu {i['mtu']} ether {i['mac']}")
        if "state" in i:  # BSD ifconfig's status line
            status = "active" if i["state"] == "up" else "down (routes out of it not used)"
            out.append(f"\tstatus: {status}")
        out.extend(f"\tinet {a}" for a in i["ipv4"])
        out.extend(f"\tinet6 {a}" for a in i["ipv6"])
    return "\n".join(out)


def render_routes(items: list[dict[str, Any]]) -> str:
    rows = []
    for r in items:
        if r["type"] != "unicast":
            gateway = r["type"]
        elif r["gateway"] is None:
            gateway = "link#" + (r["interface"] or "?")
        else:
            gateway = r["gateway"]
        # The last, unlabelled column flags a route not used while its interface's link is
        # down, where Linux `ip route` writes "linkdown".
        rows.append([r["prefix"], gateway, r["interface"] or "-", r["origin"],
                     "linkdown" if r.get("linkdown") else ""])
    return _table(rows, ["Destination", "Gateway", "Netif", "Origin", ""])


def render_neighbors(items: list[dict[str, Any]]) -> str:
    rows = [
        [n["address"], n["mac"] or "(incomplete)", n["interface"] or "-", n["state"],
         "router" if n["is_router"] else "", str(n["queued"])]
        for n in items
    ]
    return _table(rows, ["Neighbor", "Linklayer Address", "Netif", "State", "Flags", "Queued"])


def render_sysctl(items: list[dict[str, Any]]) -> str:
    return "\n".join(f"{i['name']}: {i['value']}" for i in items)


def render_trace_record(record: dict[str, Any]) -> str:
    """One traced packet: its stages with microseconds since it was received."""
    stages = record["stages"]
    start = stages[0]["time"] if stages else 0.0
    path = record.get("path", "slow")
    lines = [f"packet {record['packet_id']} received on {record['interface']} ({path} path)"]
    for s in stages:
        lines.append(f"  {(s['time'] - start) * 1e6:+10.1f} us  {s['stage']:<9} {s['detail']}")
    return "\n".join(lines)


def cmd_show(client: ControlClient, args: argparse.Namespace) -> int:
    result = client.request("show", what=args.what)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.what == "stats":
        sys.stdout.write(result["text"])
    else:
        render = {
            "interfaces": render_interfaces,
            "routes": render_routes,
            "neighbors": render_neighbors,
            "sysctl": render_sysctl,
        }[args.what]
        text = render(result)
        if text:
            print(text)
    return 0


def cmd_sysctl(client: ControlClient, args: argparse.Namespace) -> int:
    results: list[dict[str, Any]] = []
    if args.write:
        for assignment in args.write:
            name, sep, value = assignment.partition("=")
            if not sep or not name:
                raise UsageError(f"sysctl -w takes NAME=VALUE, got {assignment!r}")
            results.append(client.request("sysctl-set", name=name.strip(), value=value.strip()))
    for name in args.names:
        if "=" in name:
            raise UsageError(f"to set {name.partition('=')[0]}, use sysctl -w {name}")
        results.append(client.request("sysctl-get", name=name))
    if not args.write and not args.names:
        listing = client.request("show", what="sysctl")
        if args.json:
            print(json.dumps(listing, indent=2))
        else:
            print(render_sysctl(listing))
        return 0
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        if "old" in r:
            print(f"{r['name']}: {r['old']} -> {r['value']}")
        else:
            print(f"{r['name']}: {r['value']}")
    return 0


def parse_route_words(words: Sequence[str]) -> dict[str, Any]:
    """`via GW [dev IF]`, `dev IF`, `blackhole` or `reject` as route-add arguments."""
    request: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("blackhole", "reject"):
            if "type" in request:
                raise UsageError("give one of blackhole or reject")
            request["type"] = word
            i += 1
        elif word in ("via", "dev"):
            if i + 1 >= len(words):
                raise UsageError(f"{word} needs an argument")
            if word in request:
                raise UsageError(f"{word} given twice")
            request[word] = words[i + 1]
            i += 2
        else:
            raise UsageError(f"unexpected {word!r} (expected via, dev, blackhole or reject)")
    if not request:
        raise UsageError("route add PREFIX needs via GATEWAY, dev INTERFACE, blackhole or reject")
    return request


def cmd_route(client: ControlClient, args: argparse.Namespace) -> int:
    if "--json" in args.rest:  # REMAINDER swallows options given after the route words
        args.rest = [w for w in args.rest if w != "--json"]
        args.json = True
    if args.action == "add":
        route = client.request("route-add", prefix=args.prefix, **parse_route_words(args.rest))
        if args.json:
            print(json.dumps(route, indent=2))
        else:
            print(f"add route {route['prefix']}: " + (
                route["type"] if route["type"] != "unicast"
                else f"gateway {route['gateway']}" if route["gateway"]
                else f"interface {route['interface']}"))
        return 0
    if args.rest:
        raise UsageError(f"route del takes only a prefix, got extra {' '.join(args.rest)!r}")
    result = client.request("route-del", prefix=args.prefix)
    print(f"delete route {result['prefix']}")
    return 0


def cmd_trace(client: ControlClient, args: argparse.Namespace) -> int:
    if args.count < 1:
        raise UsageError("-n must be at least 1")
    if args.collect is not None:
        if args.start or args.filter:
            raise UsageError("--collect takes no --start or --filter")
        result = client.request("trace-read", session=args.collect, after=0)
        for record in result["records"]:
            print(json.dumps(record) if args.json else render_trace_record(record))
        with contextlib.suppress(ControlError):
            client.request("trace-stop", session=args.collect)
        return 0
    addresses = [a for a in (args.filter or "").split(",") if a]
    session = client.request("trace-start", count=args.count, filter=addresses)["session"]
    if args.start:
        print(json.dumps({"session": session}))
        return 0
    what = f"to or from {', '.join(addresses)}" if addresses else "received"
    print(f"tracing the next {args.count} packet{'s' if args.count != 1 else ''} {what} "
          "(Ctrl-C to stop)", file=sys.stderr)
    seen = 0
    last_id = 0
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            result = client.request("trace-read", session=session, after=last_id)
            for record in result["records"]:
                if args.json:
                    print(json.dumps(record))
                else:
                    print(render_trace_record(record))
                sys.stdout.flush()
                last_id = record["packet_id"]
                seen += 1
            if result["done"] or seen >= args.count:
                break
            if time.monotonic() >= deadline:
                print(f"routerctl: trace timed out after {args.timeout:g}s with {seen} of "
                      f"{args.count} packets", file=sys.stderr)
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        print(f"routerctl: interrupted after {seen} packets", file=sys.stderr)
        return 130
    finally:
        with contextlib.suppress(ControlError):  # the session may already have ended
            client.request("trace-stop", session=session)
    return 0 if seen else 1


def cmd_status(client: ControlClient, args: argparse.Namespace) -> int:
    status = client.request("status")
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        for key, value in status.items():
            print(f"{key}: {value}")
    return 0


def cmd_reload(client: ControlClient, args: argparse.Namespace) -> int:
    result = client.request("reload")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(result["summary"])
    for warning in result.get("problems") or []:
        print(f"  {warning}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routerctl", description="Look at and change a running vrlab-router.")
    parser.add_argument("--socket", default=DEFAULT_SOCKET,
                        help=f"the daemon's control socket (default {DEFAULT_SOCKET})")
    parser.add_argument("--timeout", type=float, default=10.0, dest="io_timeout",
                        help="seconds to wait for each answer (default 10)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    show = sub.add_parser("show", help="interfaces, routes, neighbors, stats or sysctl")
    show.add_argument("what", choices=SHOW_WHAT)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)

    sysctl = sub.add_parser("sysctl", help="read or set router tunables (BSD names)")
    sysctl.add_argument("-w", dest="write", action="append", metavar="NAME=VALUE",
                        help="set a tunable (repeatable)")
    sysctl.add_argument("names", nargs="*", metavar="NAME", help="tunables to read")
    sysctl.add_argument("--json", action="store_true")
    sysctl.set_defaults(func=cmd_sysctl)

    route = sub.add_parser(
        "route", help="add or delete a static route",
        description="route add PREFIX via GATEWAY [dev IF] | dev IF | blackhole | reject; "
                    "route del PREFIX. A link-local gateway names its interface: "
                    "via fe80::2%%r1-h1 or via fe80::2 dev r1-h1.")
    route.add_argument("action", choices=("add", "del"))
    route.add_argument("prefix")
    route.add_argument("rest", nargs=argparse.REMAINDER)
    route.add_argument("--json", action="store_true")
    route.set_defaults(func=cmd_route)

    trace = sub.add_parser("trace", help="trace the next N packets through every stage",
                           description=TRACE_HELP)
    trace.add_argument("-n", dest="count", type=int, default=10,
                       help="packets to trace (default 10)")
    trace.add_argument("--wait", dest="timeout", type=float, default=30.0,
                       help="give up after this many seconds (default 30)")
    trace.add_argument("--json", action="store_true", help="one JSON object per packet")
    trace.add_argument("--filter", metavar="ADDR,...",
                       help="only IP packets from or to these addresses (up to 8)")
    trace.add_argument("--start", action="store_true",
                       help="start the session, print {\"session\": N} and return")
    trace.add_argument("--collect", type=int, metavar="SESSION",
                       help="print what session SESSION recorded and end it")
    trace.set_defaults(func=cmd_trace)

    status = sub.add_parser("status", help="is the daemon up, and how")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    reload = sub.add_parser(
        "reload", help="re-read the configuration file (as SIGHUP)",
        description="Re-read the router's configuration file and apply what changed (routes, "
                    "addresses, static neighbors, sysctls, interfaces added or removed) "
                    "without a restart. A file with problems, or a change that needs a restart "
                    "(an interface's MTU or link-local address), is refused and the running "
                    "configuration stays as it was.")
    reload.add_argument("--json", action="store_true")
    reload.set_defaults(func=cmd_reload)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with ControlClient(args.socket, timeout=args.io_timeout) as client:
            return int(args.func(client, args))
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"routerctl: {e}", file=sys.stderr)
        return 2
    except ControlError as e:
        print(f"routerctl: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
