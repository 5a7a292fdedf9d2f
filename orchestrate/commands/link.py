"""`vrlab link set LAB NODE:IF KEY VALUE ...`: change a running lab's link impairments.

Keys are the topology's (`delay 50ms`, `jitter 5ms`, `loss 10%`, `reorder 25%`,
`duplicate 1%`, `corrupt 0.1%`, `rate 10mbit`), over what the topology gave that endpoint;
`clear` removes them all. The change applies to what every endpoint of the link receives
(both directions), or with `--one-way` only to what NODE:IF receives. Only links carried
through the lab's namespace can change: LAN segments, and links the topology impairs.
"""

from __future__ import annotations

import argparse
from typing import Any

from orchestrate.commands import Exit, add_json_option, fail, print_json


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "link", help="change a running lab's link impairments (netem)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    setter = verbs.add_parser("set", help="set delay, loss, ... on a link of a running lab")
    setter.add_argument("lab", metavar="LAB", help="the lab's name")
    setter.add_argument("endpoint", metavar="NODE:IF", help="an interface on the link, r1:eth1")
    setter.add_argument("values", nargs="+", metavar="KEY VALUE",
                        help="e.g. delay 50ms loss 1%%, or clear")
    setter.add_argument("--one-way", action="store_true",
                        help="only what NODE:IF receives (default: both directions)")
    add_json_option(setter)
    setter.set_defaults(func=run_set)


def run_set(args: argparse.Namespace) -> int:
    from orchestrate import links
    from orchestrate.lab import Lab, LabError
    from orchestrate.topology.impairment import KEYS, parse_impairment, to_yaml
    from orchestrate.topology.model import Impairment

    node, sep, ifname = args.endpoint.partition(":")
    if not sep or not node or not ifname:
        return fail(args, Exit.BAD_INPUT, "want NODE:IF, e.g. r1:eth1")
    clear = args.values == ["clear"]
    pairs = dict(zip(args.values[::2], args.values[1::2], strict=False))
    if not clear and (len(args.values) % 2 or any(k not in KEYS for k in pairs)):
        return fail(args, Exit.BAD_INPUT, f"want KEY VALUE pairs with KEY one of "
                    f"{', '.join(KEYS)}, or clear; got {' '.join(args.values)}")
    try:
        lab = Lab.open(args.lab)
        nic = next((n for n in lab.spec(node).nics if n.ifname == ifname), None)
        if nic is None:
            return fail(args, Exit.BAD_INPUT, f"{node} has no interface {ifname!r}")
        if nic.kind != "lan":
            return fail(args, Exit.BAD_INPUT, f"{args.endpoint} is on a point-to-point link "
                        "carried over UDP; give the link an impairment in the topology (e.g. "
                        "delay: 0ms) to carry it through the lab's namespace")
        targets = [nic] if args.one_way else [
            n for name in lab.nodes() for n in lab.spec(name).nics if n.link == nic.link]
        done: list[dict[str, Any]] = []
        for target in targets:
            base = parse_impairment(target.netem or {})[0]
            imp, issues = (Impairment(), []) if clear else parse_impairment(pairs, base)
            if issues:
                return fail(args, Exit.BAD_INPUT, "; ".join(m for _, m, _ in issues))
            assert target.netns and target.tap
            links.set_netem(target.netns, target.tap, imp if imp else None)
            done.append({"endpoint": f"{target.node}:{target.ifname}", "netem": to_yaml(imp)})
    except LabError as e:  # no such lab or node
        return fail(args, Exit.BAD_INPUT, str(e))
    except links.LinkError as e:
        return fail(args, Exit.FAILED, str(e))
    if args.json:
        print_json({"lab": args.lab, "link": nic.link, "set": done})
    else:
        for item in done:
            shown = " ".join(f"{k} {v}" for k, v in item["netem"].items()) or "nothing"
            print(f"{item['endpoint']} receives: {shown}")
    return Exit.OK
