"""A router interface with `qdisc_bypass: false` sends through the interface's qdisc (where a
lab's netem goes, orchestrate.netem); with the bypass (the default) its frames skip it. The
host kernel here may lack sch_netem, so a pfifo qdisc stands in: its packet counter shows
what went through it. The ring switches at run time (`set_qdisc_bypass`, used by reload)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

REPO = Path(__file__).resolve().parents[2]
FRAMES = 5

# Run inside the namespace: FRAMES frames from the TX ring with the bypass, then (after a line
# on stdin) FRAMES more without it. Bounded: one read of stdin, the test's timeout.
SENDER = f"""
import sys
from appliance.dataplane.ring import RingSocket
frame = bytes.fromhex("ffffffffffff020000000001" "88b5") + b"vrlab-qdisc-test".ljust(46, b".")
with RingSocket.open("p0", frames=256) as ring:
    print("bypass", ring.qdisc_bypass(), flush=True)
    print("sent", sum(ring.send(frame) for _ in range({FRAMES})), flush=True)
    ring.flush()
    sys.stdin.readline()
    ring.set_qdisc_bypass(False)
    print("bypass", ring.qdisc_bypass(), flush=True)
    print("sent", sum(ring.send(frame) for _ in range({FRAMES})), flush=True)
    ring.flush()
    sys.stdin.readline()
"""


@pytest.fixture
def veth() -> Iterator[str]:
    from pyroute2 import NetNS, netns

    name = f"vrlab-qdisc-{uuid.uuid4().hex[:8]}"
    netns.create(name)
    try:
        with NetNS(name) as ns:
            ns.link("add", ifname="p0", kind="veth", peer="p1")
        for ifname in ("p0", "p1"):  # no IPv6: the kernel sends nothing of its own on them
            subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw",
                            f"net.ipv6.conf.{ifname}.disable_ipv6=1"], check=True, timeout=30)
        with NetNS(name) as ns:
            for ifname in ("p0", "p1"):
                ns.link("set", index=ns.link_lookup(ifname=ifname)[0], state="up")
            ns.tc("add", "pfifo", ns.link_lookup(ifname="p0")[0], limit=1000)
        yield name
    finally:
        netns.remove(name)


def pfifo_packets(namespace: str) -> int:
    from pyroute2 import NetNS

    with NetNS(namespace) as ns:
        for q in ns.get_qdiscs(index=ns.link_lookup(ifname="p0")[0]):
            if q.get_attr("TCA_KIND") == "pfifo":
                basic = q.get_attr("TCA_STATS2").get_attr("TCA_STATS_BASIC")
                return int(basic["packets"])
    raise AssertionError("no pfifo qdisc on p0")


def test_ring_sends_through_the_qdisc_only_without_the_bypass(veth: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = pfifo_packets(veth)
    proc = subprocess.Popen(["ip", "netns", "exec", veth, sys.executable, "-c", SENDER],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().split() == ["bypass", "True"]
        assert proc.stdout.readline().split() == ["sent", str(FRAMES)]
        before = pfifo_packets(veth)
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split() == ["bypass", "False"]
        assert proc.stdout.readline().split() == ["sent", str(FRAMES)]
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
        after = pfifo_packets(veth)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert before == start  # the bypassed frames never met the qdisc
    assert after == start + FRAMES  # these went through it
