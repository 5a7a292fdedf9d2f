"""The vrlab-router appliance inside real VMs (issue 5 item 4), not only in namespaces.

Hosts run the stock Linux stack (iputils ping, traceroute, nc); routers run the image's
`vrlab-router` on virtio-net NICs. Each topology boots once (the pytest plugin's session `lab`,
grouped per topology) and every test below asserts what the hosts observed and what the
router counted (`routerctl show stats --json`):

- configs/line.yaml (h1 - r1 - h2): forwarding both families, traceroute hop lists, TTL
  expiry, unreachable network, closed ports, reassembly of big pings to the router itself,
  the first packet queued while the neighbor is resolved, counters matching what was sent,
  TCP through the router with a checksummed file.
- configs/pmtu.yaml (h1 - r1 =1280= r2 - h2): IPv4 fragmentation without DF, Fragmentation
  Needed with mtu 1280 with DF, IPv6 Packet Too Big.
- configs/redirect.yaml (h1, r1, r2 on one LAN, h2 behind r2): IPv4 redirect and ND Redirect
  sent by r1, taken by h1, which then goes straight to r2.

Tests that need a destination nobody has resolved or learned a path MTU / redirect for yet add
a fresh address to the far host (`extra_address`), so they hold on a lab that earlier tests
(or `vrlab test` runs) have already warmed up.
"""

from __future__ import annotations

import re
import shlex

import pytest

from orchestrate.pytest_plugin import LabSession

from _helpers_e2e import (
    counter_delta,
    extra_address,
    file_sha256,
    needs_vms,
    neighbors,
    run,
    traceroute_hops,
    udp_probe,
    wait_for,
)

pytestmark = needs_vms

H1_V4, H1_V6 = "198.51.100.2", "2001:db8:1::2"
H2_V4, H2_V6 = "198.51.100.66", "2001:db8:2::2"
R1_H1_V4, R1_H1_V6 = "198.51.100.1", "2001:db8:1::1"
R1_H2_V4, R1_H2_V6 = "198.51.100.65", "2001:db8:2::1"


@pytest.mark.vrlab_topology("configs/line.yaml")
class TestLine:
    """h1 - r1 - h2: one vrlab-router VM between two Linux hosts."""

    def test_ping_through_the_router_both_families_both_ways(self, lab: LabSession) -> None:
        for src, dst in (("h1", "h2"), ("h2", "h1")):
            for family in (4, 6):
                result = lab.ping(src, dst, family=family, count=3)
                assert result.ok, result.output
                # hosts send with TTL/hop limit 64; one router on the way takes one
                assert re.findall(r"ttl=(\d+)", result.output) == ["63"] * 3, result.output

    def test_traceroute_hop_one_is_r1s_inbound_address(self, lab: LabSession) -> None:
        cases = [("h1", H2_V4, 4, [R1_H1_V4, H2_V4]), ("h1", H2_V6, 6, [R1_H1_V6, H2_V6]),
                 ("h2", H1_V4, 4, [R1_H2_V4, H1_V4]), ("h2", H1_V6, 6, [R1_H2_V6, H1_V6])]
        for src, dst, family, expected in cases:
            hops, output = traceroute_hops(lab, src, dst, family)
            assert hops == expected, f"{src} -> {dst}:\n{output}"

    def test_ttl_1_gets_time_exceeded_from_r1(self, lab: LabSession) -> None:
        before = lab.counters("r1")
        v4 = lab.ping("h1", "h2", family=4, ttl=1, wait=3)
        v6 = lab.ping("h1", "h2", family=6, ttl=1, wait=3)
        assert v4.received == 0 and v4.errors == [
            f"From {R1_H1_V4} icmp_seq=1 Time to live exceeded"], v4.output
        assert v6.received == 0 and v6.errors == [
            f"From {R1_H1_V6} icmp_seq=1 Time exceeded: Hop limit"], v6.output
        after = lab.counters("r1")
        assert counter_delta(before, after, "ip.ttlexceeded") == 1
        assert counter_delta(before, after, "icmp.outhist.11") == 1
        assert counter_delta(before, after, "ip6.ttlexceeded") == 1
        assert counter_delta(before, after, "icmp6.outhist.3") == 1

    def test_unreachable_network(self, lab: LabSession) -> None:
        before = lab.counters("r1")
        v4 = lab.ping("h1", "192.0.2.1", family=4, wait=3)
        v6 = lab.ping("h1", "2001:db8:99::1", family=6, wait=3)
        assert v4.errors == [f"From {R1_H1_V4} icmp_seq=1 Destination Net Unreachable"], \
            v4.output
        assert v6.errors == [f"From {R1_H1_V6} icmp_seq=1 Destination unreachable: No route"], \
            v6.output
        after = lab.counters("r1")
        assert counter_delta(before, after, "ip.noroute") == 1
        assert counter_delta(before, after, "ip6.noroute") == 1

    def test_closed_port_on_the_router_and_behind_it(self, lab: LabSession) -> None:
        own = [(R1_H1_V4, 9), (R1_H1_V6, 9)]
        behind = [(H2_V4, 9), (H2_V6, 9)]
        before = lab.counters("r1")
        # the router's own addresses: r1 itself answers port unreachable; a closed port on
        # h2: h2's port unreachable comes back through r1
        answers = udp_probe(lab, "h1", own + behind)
        after = lab.counters("r1")
        assert answers == {target: "refused" for target in own + behind}
        assert counter_delta(before, after, "icmp.outhist.3") == 1
        assert counter_delta(before, after, "icmp6.outhist.1") == 1
        # h2's two port unreachables and the two probes to it crossed r1
        assert counter_delta(before, after, "ip.forward") == 2
        assert counter_delta(before, after, "ip6.forward") == 2

    def test_big_ping_to_the_router_is_reassembled(self, lab: LabSession) -> None:
        before = lab.counters("r1")
        v4 = lab.ping("h1", "r1", family=4, count=2, size=3000, wait=3)
        v6 = lab.ping("h1", "r1", family=6, count=2, size=3000, wait=3)
        assert v4.ok and "3008 bytes from 198.51.100.1" in v4.output, v4.output
        assert v6.ok and "3008 bytes from 2001:db8:1::1" in v6.output, v6.output
        after = lab.counters("r1")
        # h1 sends each 3028-byte datagram as 3 fragments over the 1500 MTU; r1 reassembles
        # them and fragments its 3028-byte reply the same way
        for family in ("ip", "ip6"):
            assert counter_delta(before, after, f"{family}.reassembled") == 2
            assert counter_delta(before, after, f"{family}.fragments") == 6
            assert counter_delta(before, after, f"{family}.fragmented") == 2
            assert counter_delta(before, after, f"{family}.ofragments") == 6

    def test_first_packet_is_queued_not_lost_while_the_neighbor_resolves(
            self, lab: LabSession) -> None:
        # Addresses h2 never had: r1 has no neighbor entry for them, so the first echo
        # request waits on an INCOMPLETE entry during ARP / ND and must still arrive.
        with extra_address(lab, "h2", "eth1", "198.51.100.77/26") as fresh4, \
                extra_address(lab, "h2", "eth1", "2001:db8:2::77/64") as fresh6:
            known = neighbors(lab, "r1")
            assert fresh4 not in known and fresh6 not in known, known
            before = lab.counters("r1")
            v4 = lab.ping("h1", fresh4, family=4, count=1, wait=5)
            v6 = lab.ping("h1", fresh6, family=6, count=1, wait=5)
            after = lab.counters("r1")
            known = neighbors(lab, "r1")
        assert v4.transmitted == v4.received == 1, v4.output
        assert v6.transmitted == v6.received == 1, v6.output
        assert "icmp_seq=1 " in v4.output and "icmp_seq=1 " in v6.output
        assert counter_delta(before, after, "arp.queued") == 1
        assert counter_delta(before, after, "nd.queued") == 1
        h2_mac = lab.node("h2").mac("eth1")
        for fresh in (fresh4, fresh6):
            assert known[fresh]["mac"] == h2_mac and known[fresh]["interface"] == "r1-h2"

    def test_counters_match_what_was_forwarded(self, lab: LabSession) -> None:
        for family, group in ((4, "ip"), (6, "ip6")):
            before = lab.counters("r1")
            result = lab.ping("h1", "h2", family=family, count=10)
            after = lab.counters("r1")
            assert result.ok, result.output
            # ten echo requests one way, ten replies the other, nothing else in transit
            assert counter_delta(before, after, f"{group}.forward") == 20, (before, after)
            assert counter_delta(before, after, f"{group}.cantforward") == 0
            assert counter_delta(before, after, f"{group}.noroute") == 0

    @pytest.mark.parametrize("family", [4, 6])
    def test_tcp_file_transfer_through_the_router(self, lab: LabSession, family: int) -> None:
        size = 2 * 1024 * 1024
        port = 5000 + family
        dst = H2_V4 if family == 4 else H2_V6
        run(lab, "h1", f"head -c {size} /dev/urandom > /tmp/blob")
        run(lab, "h2", "rm -f /tmp/got")
        # nc in the background on h2, bounded by timeout(1); its output goes to a file so
        # the SSH channel closes at once
        listener = f"timeout 60 nc -{family} -l {port} > /tmp/got"
        run(lab, "h2", f"nohup sh -c {shlex.quote(listener)} >/dev/null 2>&1 &")
        wait_for(lambda: f":{port} " in run(lab, "h2", "ss -ltnH").stdout, 15,
                 what=f"nc listening on h2 port {port}")
        before = lab.counters("r1")
        run(lab, "h1", f"timeout 60 nc -{family} -N -w 10 {dst} {port} < /tmp/blob", timeout=70)
        wait_for(lambda: f":{port} " not in run(lab, "h2", "ss -tanH").stdout, 20,
                 what="the connection on h2 to close")
        after = lab.counters("r1")
        assert run(lab, "h2", "stat -c %s /tmp/got").stdout.strip() == str(size)
        assert file_sha256(lab, "h2", "/tmp/got") == file_sha256(lab, "h1", "/tmp/blob")
        group = "ip" if family == 4 else "ip6"
        # at least one full-size segment per 1448 bytes of payload crossed r1
        assert counter_delta(before, after, f"{group}.forward") >= size // 1448
        run(lab, "h1", "rm -f /tmp/blob")
        run(lab, "h2", "rm -f /tmp/got")


@pytest.mark.vrlab_topology("configs/pmtu.yaml")
class TestPmtu:
    """h1 - r1 - r2 - h2, the r1-r2 link at MTU 1280."""

    def test_small_packets_cross_both_routers(self, lab: LabSession) -> None:
        for family in (4, 6):
            result = lab.ping("h1", "h2", family=family, count=2, size=1200)
            assert result.ok, result.output
            assert re.findall(r"ttl=(\d+)", result.output) == ["62"] * 2, result.output
        hops, output = traceroute_hops(lab, "h1", "2001:db8:2::2", 6)
        assert hops == [R1_H1_V6, "2001:db8:12::2", "2001:db8:2::2"], output

    def test_ipv4_without_df_is_fragmented_by_r1(self, lab: LabSession) -> None:
        with extra_address(lab, "h2", "eth1", "198.51.100.141/26") as fresh:
            before = {r: lab.counters(r) for r in ("r1", "r2")}
            result = lab.ping("h1", fresh, family=4, count=1, size=1400, df=False, wait=5)
            after = {r: lab.counters(r) for r in ("r1", "r2")}
        assert result.ok and "1408 bytes from 198.51.100.141" in result.output, result.output
        # the 1428-byte request goes out of r1 as two fragments, the reply out of r2 likewise
        assert counter_delta(before["r1"], after["r1"], "ip.fragmented") == 1
        assert counter_delta(before["r1"], after["r1"], "ip.ofragments") == 2
        assert counter_delta(before["r2"], after["r2"], "ip.fragmented") == 1
        assert counter_delta(before["r2"], after["r2"], "ip.ofragments") == 2
        # r1 also forwards the reply's two fragments as they are (they fit the 1500 link)
        assert counter_delta(before["r1"], after["r1"], "ip.forward") >= 3

    def test_ipv4_with_df_gets_frag_needed_mtu_1280(self, lab: LabSession) -> None:
        with extra_address(lab, "h2", "eth1", "198.51.100.142/26") as fresh:
            before = lab.counters("r1")
            result = lab.ping("h1", fresh, family=4, count=1, size=1400, df=True, wait=3)
            after = lab.counters("r1")
            assert result.received == 0
            assert result.errors == [
                f"From {R1_H1_V4} icmp_seq=1 Frag needed and DF set (mtu = 1280)"], \
                result.output
            assert counter_delta(before, after, "ip.cantfrag") == 1
            assert counter_delta(before, after, "icmp.outhist.3") == 1
            # h1 took the path MTU: a ping that fits 1280 passes with DF set
            fits = lab.ping("h1", fresh, family=4, count=1, size=1252, df=True)
            assert fits.ok, fits.output

    def test_ipv6_gets_packet_too_big_mtu_1280(self, lab: LabSession) -> None:
        with extra_address(lab, "h2", "eth1", "2001:db8:2::142/64") as fresh:
            before = lab.counters("r1")
            first = lab.ping("h1", fresh, family=6, count=1, size=1400, wait=3)
            after = lab.counters("r1")
            assert first.errors == [f"From {R1_H1_V6} icmp_seq=1 Packet too big: mtu=1280"], \
                first.output
            assert counter_delta(before, after, "icmp6.outhist.2") == 1
            assert counter_delta(before, after, "ip6.fragmented") == 0  # routers never do
            # h1 learned the path MTU and fragments at the source from now on. h2 has not:
            # its first 1448-byte reply gets Packet Too Big from r2 and is lost, the next
            # ones go out fragmented.
            r2_before = lab.counters("r2")
            again = lab.ping("h1", fresh, family=6, count=3, size=1400)
            r2_after = lab.counters("r2")
            assert re.findall(r"1408 bytes from \S+: icmp_seq=(\d+)", again.output) == [
                "2", "3"], again.output
            assert counter_delta(r2_before, r2_after, "icmp6.outhist.2") == 1
            assert counter_delta(r2_before, r2_after, "ip6.fragmented") == 0


@pytest.mark.vrlab_topology("configs/redirect.yaml")
class TestRedirect:
    """h1, r1 and r2 on one LAN; h1's default router r1 reaches h2 via r2 on that LAN."""

    def test_ipv4_redirect_sent_taken_and_used(self, lab: LabSession) -> None:
        run(lab, "r1", "routerctl sysctl -w net.inet.ip.redirect=1")
        with extra_address(lab, "h2", "eth1", "198.51.100.88/26") as fresh:
            before = lab.counters("r1")
            first = lab.ping("h1", fresh, family=4, count=3)
            after = lab.counters("r1")
            assert first.ok, first.output
            assert counter_delta(before, after, "ip.redirectsent") >= 1
            assert counter_delta(before, after, "icmp.outhist.5") >= 1
            route = run(lab, "h1", f"ip -4 route get {fresh}").stdout
            assert "via 198.51.100.2 " in route, route
            # from now on h1 sends straight to r2: r1 forwards nothing more
            quiet = lab.counters("r1")
            again = lab.ping("h1", fresh, family=4, count=3)
            assert again.ok, again.output
            assert counter_delta(quiet, lab.counters("r1"), "ip.forward") == 0
            run(lab, "h1", "ip -4 route flush cache")

    def test_ipv6_nd_redirect_sent_taken_and_used(self, lab: LabSession) -> None:
        run(lab, "r1", "routerctl sysctl -w net.inet6.ip6.redirect=1")
        with extra_address(lab, "h2", "eth1", "2001:db8:2::88/64") as fresh:
            before = lab.counters("r1")
            first = lab.ping("h1", fresh, family=6, count=3)
            after = lab.counters("r1")
            assert first.ok, first.output
            assert counter_delta(before, after, "ip6.redirectsent") >= 1
            assert counter_delta(before, after, "icmp6.outhist.137") >= 1
            route = run(lab, "h1", f"ip -6 route get {fresh}").stdout
            # RFC 4861 §8: the target is r2's link-local address
            assert "via fe80::2 " in route, route
            quiet = lab.counters("r1")
            again = lab.ping("h1", fresh, family=6, count=3)
            assert again.ok, again.output
            assert counter_delta(quiet, lab.counters("r1"), "ip6.forward") == 0
