"""`vrlab link set LAB NODE:IF KEY VALUE ...`: change a running lab's link impairments.

Keys are the topology's (`delay 50ms`, `jitter 5ms`, `loss 10%`, `reorder 25%`,
`duplicate 1%`, `corrupt 0.1%`, `rate 10mbit`), over what the link does now; `clear` removes
them all. The change applies to what every endpoint of the link receives (both directions),
or with `--one-way` only to what NODE:IF receives (point-to-point links). It is applied in
the guests (tc-netem on each sender's egress, orchestrate.netem) and kept in the lab's
record. A vrlab-router sends through the qdisc only on links the topology impairs: to change
a link with a router on it later, give it an impairment in the topology (`delay: 0ms`).
"""

from __future__ import annotations

import argparse
import dataclasses
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
    from orchestrate import netem
    from orchestrate.lab import Lab, LabError
    from orchestrate.ssh import SshError
    from orchestrate.topology.impairment import KEYS, to_yaml

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
        if nic.link < 0:
            return fail(args, Exit.BAD_INPUT, f"{args.endpoint} is on no link")
        members = [n for name in lab.nodes() for n in lab.spec(name).nics
                   if n.link == nic.link]
        try:
            new = netem.changed(members, nic, None if clear else pairs,
                                one_way=args.one_way)
        except netem.NetemError as e:
            return fail(args, Exit.BAD_INPUT, str(e))
        for (sender, sender_if), imp in new.items():
            if imp and lab.spec(sender).role == "router" and not nic.impaired:
                return fail(args, Exit.BAD_INPUT, f"{sender}:{sender_if} is a vrlab-router "
                            "interface that sends past the qdisc (the topology does not impair "
                            "this link); give the link an impairment in the topology (e.g. "
                            "delay: 0ms) to change it at run time")
        nodes = lab.record.data["nodes"]
        done: list[dict[str, Any]] = []
        for sender in sorted({s for s, _ in new}):
            shaping = [(i, imp) for (s, i), imp in sorted(new.items()) if s == sender]
            netem.apply(lab, sender, shaping)
            set_to = {ifname: to_yaml(imp) if imp else None for ifname, imp in shaping}
            nodes[sender]["nics"] = [
                (dataclasses.replace(n, netem=set_to[n.ifname]) if n.ifname in set_to else n
                 ).to_json() for n in lab.spec(sender).nics]
            lab.record.set_fields(nodes=nodes)
            done += [{"sender": f"{sender}:{ifname}", "netem": value or {}}
                     for ifname, value in set_to.items()]
    except LabError as e:  # no such lab or node
        return fail(args, Exit.BAD_INPUT, str(e))
    except (netem.NetemError, SshError) as e:
        return fail(args, Exit.FAILED, str(e))
    if args.json:
        print_json({"lab": args.lab, "link": nic.link, "set": done})
    else:
        for item in done:
            shown = " ".join(f"{k} {v}" for k, v in item["netem"].items()) or "nothing"
            print(f"{item['sender']} sends through: {shown}")
    return Exit.OK
