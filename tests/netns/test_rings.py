"""AF_PACKET TPACKET_V2 rings on veth pairs in namespaces (appliance/dataplane/ring.py) and the fast
path forwarding between two rings with real Linux hosts on either side.

    h1 [h1-r] 192.0.2.2/26     -- [r-h1] r [r-h2] --  [h2-r] 198.51.100.2/26   h2
              2001:db8:1::2/64                             2001:db8:2::2/64

r has no addresses and kernel IPv6 off: only the ring sockets see its traffic. The hosts know
r's MACs statically (no ARP/ND, which the bare fast path here only punts)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.dataplane.tablesync import have_c
from appliance.packet.checksum import pseudo_header_v4, verify

from netns import (
    MAC,
    MODE_ARGS,
    MODES,
    REPO,
    Lab,
    Namespace,
    build_line,
    line_config,
    send_frames,
)

AGENT = str(Path(__file__).with_name("_rings_fixtures.py"))
MARKER = b"vrlab-ring-test"
MACS = {"h1-r": "02:00:00:00:11:02", "r-h1": "02:00:00:00:11:01",
        "r-h2": "02:00:00:00:12:01", "h2-r": "02:00:00:00:12:02"}


def mac(name: str) -> bytes:
    return bytes.fromhex(MACS[name].replace(":", ""))


class Agent:
    """A _rings_fixtures.py process in a namespace; started, waited for, then read."""

    def __init__(self, lab: Lab, ns: Namespace, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = ns.popen([sys.executable, AGENT, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, cwd=str(REPO))
        lab.defer(self.kill)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 15.0)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.kill()
            raise AssertionError(f"agent {args[0]} not ready: {line!r} {self.stderr()}")

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")

    def result(self, timeout: float = 20.0) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err.decode(errors="replace")
        return dict(json.loads(out.decode().strip().splitlines()[-1]))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def build(lab: Lab, *, hosts: bool = False) -> tuple[Namespace, Namespace, Namespace]:
    h1, r, h2 = lab.namespace("h1"), lab.namespace("r"), lab.namespace("h2")
    r.sysctl("net.ipv6.conf.all.disable_ipv6", 1)
    r.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
    lab.veth(h1, "h1-r", r, "r-h1", a_mac=MACS["h1-r"], b_mac=MACS["r-h1"])
    lab.veth(r, "r-h2", h2, "h2-r", a_mac=MACS["r-h2"], b_mac=MACS["h2-r"])
    if hosts:
        for ns, ifname, v4, v6, gw4, gw6, peer in (
            (h1, "h1-r", "192.0.2.2/26", "2001:db8:1::2/64", "192.0.2.1", "2001:db8:1::1",
             "r-h1"),
            (h2, "h2-r", "198.51.100.2/26", "2001:db8:2::2/64", "198.51.100.1",
             "2001:db8:2::1", "r-h2"),
        ):
            ns.add_address(ifname, v4)
            ns.add_address(ifname, v6)
            for gw in (gw4, gw6):
                ns.run(["ip", "neigh", "replace", gw, "lladdr", MACS[peer], "dev", ifname,
                        "nud", "permanent"])
            ns.add_route("0.0.0.0/0", gw4)
            ns.add_route("::/0", gw6)
    return h1, r, h2


def frame(dst: bytes, src: bytes, n: int) -> bytes:
    """A 100-byte frame with a made-up EtherType (no stack on the way will act on it)."""
    body = MARKER + bytes([n]) * 10
    return dst + src + b"\x88\xb5" + body + bytes(100 - 14 - len(body))


def test_frames_sent_into_the_ring_arrive(lab: Lab) -> None:
    h1, r, _ = build(lab)
    agent = Agent(lab, r, "recv", "r-h1", "5", "10")
    sent = [frame(mac("r-h1"), mac("h1-r"), i) for i in range(4)]
    sent.append(frame(bytes.fromhex("020000009999"), mac("h1-r"), 9))  # another host's MAC
    send_frames(h1, "h1-r", sent)
    result = agent.result()
    assert [bytes.fromhex(f["raw"]) for f in result["frames"]] == sent
    assert bytes.fromhex(result["mac"]) == mac("r-h1")
    assert result["mtu"] == 1500
    assert result["ifindex"] == r.ifindex("r-h1")
    assert result["ring_drops"] == 0


def test_frames_on_the_tx_ring_leave_and_do_not_come_back(lab: Lab) -> None:
    h1, r, _ = build(lab)
    capture = Agent(lab, h1, "capture", "h1-r", "3", "10")
    frames = [frame(mac("h1-r"), mac("r-h1"), i) for i in range(3)]
    sender = Agent(lab, r, "send", "r-h1", "1.5", *(f.hex() for f in frames))
    sent = sender.result()
    assert sent == {"sent": 3, "echoed": 0}  # PACKET_IGNORE_OUTGOING: our frames stay out
    assert [bytes.fromhex(f) for f in capture.result()["frames"]] == frames


def test_partial_udp_checksum_from_a_local_sender_is_completed(lab: Lab) -> None:
    h1, r, _ = build(lab, hosts=True)
    h1.run(["ethtool", "-K", "h1-r", "tx", "on"])
    agent = Agent(lab, r, "recv", "r-h1", "1", "10")
    h1.python(f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              f"s.sendto({MARKER!r} * 3, ('198.51.100.2', 9))")
    (got,) = agent.result()["frames"]
    raw = bytes.fromhex(got["raw"])
    done = bytes.fromhex(got["completed"])
    assert got["partial"], "veth with tx checksumming on hands over CHECKSUM_PARTIAL frames"
    udp = done[34:]
    assert verify(udp, pseudo_header_v4(done[26:30], done[30:34], 17, len(udp)))
    assert not verify(raw[34:], pseudo_header_v4(raw[26:30], raw[30:34], 17, len(udp)))


KINDS = ["python", *(["c"] if have_c() else [])]


@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_forwards_between_rings(lab: Lab, kind: str) -> None:
    h1, r, h2 = build(lab, hosts=True)
    for ns, ifname in ((h1, "h1-r"), (h2, "h2-r")):
        ns.run(["ethtool", "-K", ifname, "tx", "on", "tso", "off", "gso", "off"])
    tables = {
        "interfaces": ["r-h1", "r-h2"],
        "routes": [["192.0.2.0/26", "r-h1"], ["198.51.100.0/26", "r-h2"],
                   ["2001:db8:1::/64", "r-h1"], ["2001:db8:2::/64", "r-h2"]],
        "neighbors": [["r-h1", "192.0.2.2", MACS["h1-r"].replace(":", "")],
                      ["r-h2", "198.51.100.2", MACS["h2-r"].replace(":", "")],
                      ["r-h1", "2001:db8:1::2", MACS["h1-r"].replace(":", "")],
                      ["r-h2", "2001:db8:2::2", MACS["h2-r"].replace(":", "")]],
    }
    router = Agent(lab, r, "forward", kind, "60", json.dumps(tables))
    sink = Agent(lab, h2, "udp_sink", "198.51.100.2", "9", "5", "15")
    # UDP leaves h1 with a partial checksum; h2's kernel drops it unless r completed it
    h1.python("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "for i in range(5):\n    s.sendto(b'datagram %d' % i, ('198.51.100.2', 9))")
    payloads = sorted(bytes.fromhex(p) for p in sink.result()["payloads"])
    assert payloads == [b"datagram %d" % i for i in range(5)]
    ping4 = h1.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.2"], check=False)
    ping6 = h1.run(["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "2001:db8:2::2"],
                   check=False)
    router.proc.terminate()
    result = router.result()
    counters = result["counters"]
    assert ping4.returncode == 0, ping4.stdout
    assert ping6.returncode == 0, ping6.stdout
    assert "ttl=63" in ping4.stdout  # one hop decremented it
    assert counters["forward4"] >= 5 + 6  # datagrams, echo requests and replies
    assert counters["forward6"] >= 6
    assert counters["tx_kicks"] >= 1
    assert not result["attached_after_detach"]



@pytest.mark.parametrize("kind", KINDS)
def test_frames_a_kick_leaves_on_the_tx_ring_follow_without_new_traffic(lab: Lab,
                                                                        kind: str) -> None:
    """A kick stops early when the ring socket's send buffer is full; the frames it leaves
    must go at the next kicks, not wait for the next forwarded frame. Here the send buffer is
    the kernel's floor (two 1,000-byte frames in flight) and r-h2's qdisc is a token bucket
    that holds frames (so they stay charged to the socket): a burst of 200 datagrams from h1
    and nothing after it must all reach h2. Before the fix, h2 got the first few."""
    h1, r, h2 = build(lab, hosts=True)
    for ns, ifname in ((h1, "h1-r"), (h2, "h2-r")):
        ns.run(["ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off"])
    r.run(["tc", "qdisc", "add", "dev", "r-h2", "root", "tbf", "rate", "8mbit", "burst",
           "16kb", "latency", "5s"])
    tables = {
        "interfaces": ["r-h1", "r-h2"],
        "routes": [["192.0.2.0/26", "r-h1"], ["198.51.100.0/26", "r-h2"]],
        "neighbors": [["r-h1", "192.0.2.2", MACS["h1-r"].replace(":", "")],
                      ["r-h2", "198.51.100.2", MACS["h2-r"].replace(":", "")]],
        "serve": True, "sndbuf": 1, "qdisc_bypass": False,
    }
    count = 200
    router = Agent(lab, r, "forward", kind, "60", json.dumps(tables))
    sink = Agent(lab, h2, "udp_sink", "198.51.100.2", "9", str(count), "20")
    h1.python("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              f"for i in range({count}):\n"
              "    s.sendto(b'%04d' % i + bytes(996), ('198.51.100.2', 9))")
    payloads = {bytes.fromhex(p)[:4] for p in sink.result()["payloads"]}
    router.proc.terminate()
    counters = router.result()["counters"]
    assert payloads == {b"%04d" % i for i in range(count)}
    assert counters["forward4"] == count
    assert counters["tx_backlog"] >= 1  # the send buffer did stop kicks early
    assert counters["drop.txfull"] == 0
    assert counters["tx_kick_ns"] > 0  # time spent in the kicks is counted
    if kind == "c":  # the C serve() also times the wait from the kernel's RX timestamp
        assert counters["rx_wakeups"] >= 1 and counters["rx_wait_ns"] > 0


@pytest.mark.parametrize("mode", MODES)
def test_the_daemons_python_loop_kicks_again_too(lab: Lab, mode: str) -> None:
    """The daemon drives the rings from Python's loop without a fast path, and while a trace
    runs with one; there too the frames a kick leaves (the socket's send buffer full behind a
    token bucket on r-h2) go at the next kicks: a burst of 200 datagrams from h1 and nothing
    after it all reach h2. Without the re-kick the loop without a fast path never sent them
    (nothing else leaves r-h2); the fast path's own kick() kept its backlog, but was retried
    only at the loop's next wake (up to the 100 ms tick) instead of within a millisecond."""
    line = build_line(lab, mode, start=False)
    line.r.run(["tc", "qdisc", "add", "dev", "r-h2", "root", "tbf", "rate", "2mbit", "burst",
                "16kb", "latency", "5s"])
    # Static neighbors: r sends nothing of its own on r-h2 (an ARP probe would kick the ring
    # and hide a missing re-kick).
    config = line_config(neighbors=[
        {"address": line.H1, "mac": MAC["h1-r"], "interface": "r-h1"},
        {"address": line.H2, "mac": MAC["h2-r"], "interface": "r-h2"}])
    config["interfaces"][1]["qdisc_bypass"] = False  # through the token bucket
    router = lab.start_router(line.r, config, MODE_ARGS[mode])
    ping = line.h1.run(["ping", "-n", "-c", "1", "-W", "3", line.H2], check=False)
    assert ping.returncode == 0, ping.stdout  # neighbors resolved before the burst
    if mode != "off":  # a trace sends the fast path's rings through Python's loop
        router.ctl("trace", "--start", "-n", "10", "--filter", line.H2)
    count = 200
    sink = Agent(lab, line.h2, "udp_sink", line.H2, "9", str(count), "20")
    line.h1.python("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                   f"for i in range({count}):\n"
                   f"    s.sendto(b'%04d' % i + bytes(996), ('{line.H2}', 9))")
    payloads = {bytes.fromhex(p)[:4] for p in sink.result()["payloads"]}
    assert payloads == {b"%04d" % i for i in range(count)}
    stats = router.stats()
    assert stats["ip.forward"] >= count + 2
    assert stats.get("ip.odropped", 0) == 0
