"""A second lab next to the shared duo lab: a LAN segment (three hosts on one bridge in the
lab's own network namespace). Both labs run at once without sharing a port, MAC or name; the
LAN carries traffic and can be captured; down removes the namespace with its bridge and taps."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

from orchestrate.lab import Lab
from orchestrate.links import namespace_exists, namespace_links
from orchestrate.topology import load_topology

LAN = """\
    name: lan3
    nodes:
      a: {role: host, interfaces: [{name: eth1, addresses: [192.0.2.1/24]}]}
      b: {role: host, interfaces: [{name: eth1, addresses: [192.0.2.2/24]}]}
      c: {role: host, interfaces: [{name: eth1, addresses: [192.0.2.3/24]}]}
    links:
      - {endpoints: [a:eth1, b:eth1, c:eth1], mtu: 1400}
    """


def test_lan_lab_beside_the_duo_lab(duo_lab: Lab, e2e: SimpleNamespace, tmp_path: Path
                                    ) -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.utils import rdpcap

    path = tmp_path / "lan3.yaml"
    path.write_text(textwrap.dedent(LAN))
    lab = e2e.boot(load_topology(path), "e2e-lan3")
    try:
        fp = e2e.footprint(lab)
        assert not set(fp.ports) & duo_lab.record.reserved_ports()
        macs = {nic.mac for n in lab.nodes() for nic in lab.spec(n).nics}
        duo_macs = {nic.mac for n in duo_lab.nodes() for nic in duo_lab.spec(n).nics}
        assert len(macs) == 3 and not macs & duo_macs
        assert {s.state for s in duo_lab.status()} == {"running"}  # the other lab is unmoved
        namespace = "vrlab-e2e-lan3"
        assert namespace_exists(namespace)
        assert {"br0", "t0p0", "t0p1", "t0p2"} <= set(namespace_links(namespace))
        assert lab.node("a").exec("cat /sys/class/net/eth1/mtu", timeout=30).stdout.strip() \
            == "1400"
        with lab.capture("c", "eth1", tmp_path / "c.pcap") as pcap:
            result = lab.node("a").exec("ping -c 2 -W 2 192.0.2.3", timeout=60)
            assert result.ok, result.stdout + result.stderr
        echoes = [p for p in rdpcap(str(pcap)) if ICMP in p and p[ICMP].type == 8]
        assert [(p[IP].src, p[IP].dst) for p in echoes] == [("192.0.2.1", "192.0.2.3")] * 2
        assert lab.node("b").exec("ping -c 1 -W 2 192.0.2.3", timeout=60).ok
    finally:
        problems = lab.down()
    assert problems == []
    assert fp.leftovers() == []
    assert not namespace_exists("vrlab-e2e-lan3")
    assert duo_lab.node("violin").exec("true", timeout=30).ok  # still fine after the other down
