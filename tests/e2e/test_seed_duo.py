"""The seed scenario (seeds/000, "Testbed Setup" and "Transmitting") on real VMs: configs/duo.yaml.

violin and piano share one link and have nothing but their IPv6 link-local addresses, derived
from their MACs. violin sends ICMPv6 echo requests to piano's link-local address; before the
first one can leave, violin must resolve piano with a Neighbor Solicitation / Advertisement
exchange, and the echo waits queued on the incomplete neighbor entry (the seed's
`nce_queue_mp` / `nce_resolv_ok`). The lab boots once for the module.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrate.pytest_plugin import LabSession

from _helpers_e2e import needs_vms, run

pytestmark = [*needs_vms, pytest.mark.vrlab_topology("configs/duo.yaml")]

IF = "vioif0"
NUD_STATES = ("REACHABLE", "STALE", "DELAY", "PROBE")


def neigh_entry(lab: LabSession, node: str, address: str) -> tuple[str, str] | None:
    """(lladdr, state) of `address` in `ip -6 neigh show dev vioif0` on `node`, or None."""
    out = run(lab, node, f"ip -6 neigh show dev {IF}").stdout
    for line in out.splitlines():
        m = re.match(rf"^{re.escape(address)} lladdr ([0-9a-f:]{{17}}) .*?(\w+)$", line.strip())
        if m:
            return m.group(1), m.group(2)
    return None


def test_each_node_has_its_eui64_link_local_address_only(lab: LabSession) -> None:
    for name in ("violin", "piano"):
        expected = lab.node(name).link_local(IF)
        out = run(lab, name, f"ip -6 -o addr show dev {IF}").stdout
        addresses = re.findall(r"inet6 (\S+)/(\d+) scope (\w+)", out)
        assert addresses == [(expected, "64", "link")], f"{name}: {out}"
        assert "inet " not in run(lab, name, f"ip -4 -o addr show dev {IF}").stdout


def test_violin_pings_pianos_link_local_address(lab: LabSession) -> None:
    piano = lab.node("piano").link_local(IF)
    result = run(lab, "violin", f"ping -6 -n -c 3 -i 0.2 -W 3 {piano}%{IF}", timeout=30)
    replies = re.findall(rf"bytes from {re.escape(piano)}%{IF}: icmp_seq=(\d+)", result.stdout)
    assert replies == ["1", "2", "3"], result.stdout
    assert "3 packets transmitted, 3 received" in result.stdout


def test_both_sides_learned_the_other_as_neighbor(lab: LabSession) -> None:
    violin, piano = lab.node("violin"), lab.node("piano")
    run(lab, "violin", f"ping -6 -n -c 1 -W 3 {piano.link_local(IF)}%{IF}", timeout=20)
    # violin resolved piano with an NS; piano created an entry from the NS's source
    # link-layer address option (RFC 4861 §7.2.3) and then answered the echo through it.
    seen_by_violin = neigh_entry(lab, "violin", piano.link_local(IF))
    seen_by_piano = neigh_entry(lab, "piano", violin.link_local(IF))
    assert seen_by_violin is not None and seen_by_violin[0] == piano.mac(IF), seen_by_violin
    assert seen_by_piano is not None and seen_by_piano[0] == violin.mac(IF), seen_by_piano
    assert seen_by_violin[1] in NUD_STATES and seen_by_piano[1] in NUD_STATES


def test_first_echo_waits_for_resolution_and_is_not_lost(lab: LabSession,
                                                         tmp_path: Path) -> None:
    """Flush both neighbor caches: the next echo needs NS/NA first and still gets its reply."""
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS
    from scapy.utils import rdpcap

    piano = lab.node("piano")
    for name in ("violin", "piano"):
        run(lab, name, f"ip -6 neigh flush dev {IF}")
    assert neigh_entry(lab, "violin", piano.link_local(IF)) is None
    with lab.capture("piano", IF, tmp_path / "piano.pcap") as pcap:
        result = run(lab, "violin", f"ping -6 -n -c 1 -W 5 {piano.link_local(IF)}%{IF}",
                     timeout=20)
    assert "1 packets transmitted, 1 received" in result.stdout, result.stdout

    # On the wire, in order: violin's NS for piano, piano's NA, the echo, the reply.
    kinds: list[str] = []
    for packet in rdpcap(str(pcap)):
        if ICMPv6ND_NS in packet and packet[ICMPv6ND_NS].tgt == piano.link_local(IF):
            kinds.append("ns")
        elif ICMPv6ND_NA in packet and packet[ICMPv6ND_NA].tgt == piano.link_local(IF):
            kinds.append("na")
        elif ICMPv6EchoRequest in packet:
            kinds.append("echo")
        elif ICMPv6EchoReply in packet:
            kinds.append("reply")
    assert kinds[:4] == ["ns", "na", "echo", "reply"], kinds
    entry = neigh_entry(lab, "violin", piano.link_local(IF))
    assert entry is not None and entry[0] == piano.mac(IF)
