"""Random and mutated frames into Router.receive: it never raises, every Transmit is a
sane frame, and every frame is accounted for — a frame that produces no Transmit ends in a
Drop (or Deliver / Hold) whose counter moved."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import (  # type: ignore[attr-defined]
    ARP,
    ICMP,
    IP,
    TCP,
    UDP,
    Ether,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_Redirect,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPOption_RR,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment,
    fragment6,
    raw,
)

from appliance.core.router import Deliver, Drop, Hold, Router, Transmit
from appliance.core.stats import KNOWN_KEYS
from appliance.packet.checksum import ones_complement_sum
from appliance.packet.icmpv6 import verify_icmp6

from routerkit import H1, H1_MAC, H2, R_LL1, R_MAC1, learn, make_router

E1 = Ether(dst=R_MAC1, src=H1_MAC)


def _corpus() -> list[bytes]:
    frames: list[Any] = [
        E1 / IP(src=H1.ip4, dst="198.51.100.1") / ICMP() / b"ping",
        E1 / IP(src=H1.ip4, dst=H2.ip4, ttl=2) / UDP(sport=1, dport=2) / b"fwd",
        E1 / IP(src=H1.ip4, dst="192.0.2.5") / UDP() / b"redirect",
        E1 / IP(src=H1.ip4, dst="198.51.100.1") / TCP(dport=22),
        E1 / IP(src=H1.ip4, dst=H2.ip4, options=[IPOption_RR(routers=["0.0.0.0"])]) / UDP(),
        E1 / IP(src=H1.ip4, dst="192.0.2.130", flags="DF") / ICMP(type=3) / IP() / UDP(),
        Ether(dst="ff:ff:ff:ff:ff:ff", src=H1_MAC) / ARP(op=1, hwsrc=H1_MAC, psrc=H1.ip4,
                                                         pdst="198.51.100.1"),
        E1 / ARP(op=2, hwsrc=H1_MAC, psrc=H1.ip4, pdst="198.51.100.1", hwdst=R_MAC1),
        E1 / IPv6(src=H1.ip6, dst="2001:db8:1::1") / ICMPv6EchoRequest(data=b"x" * 20),
        E1 / IPv6(src=H1.ip6, dst=H2.ip6, hlim=2) / UDP() / b"fwd6",
        E1 / IPv6(src=H1.ip6, dst="2001:db8:9::1") / UDP() / b"redirect6",
        E1 / IPv6(src=H1.ip6, dst="2001:db8:1::1") / IPv6ExtHdrHopByHop() / UDP(),
        E1 / IPv6(src=H1.ip6, dst="2001:db8:1::1") / IPv6ExtHdrRouting(addresses=["2001:db8::9"],
                                                                        segleft=1) / UDP(),
        Ether(dst="33:33:ff:00:00:01", src=H1_MAC) / IPv6(src=H1.ip6, dst="ff02::1:ff00:1",
                                                          hlim=255)
        / ICMPv6ND_NS(tgt="2001:db8:1::1") / ICMPv6NDOptSrcLLAddr(lladdr=H1_MAC),
        E1 / IPv6(src=H2.ip6, dst=R_LL1, hlim=255) / ICMPv6ND_NA(tgt=H2.ip6, S=1)
        / ICMPv6NDOptDstLLAddr(lladdr=H1_MAC),
        E1 / IPv6(src="fe80::2", dst=R_LL1, hlim=255) / ICMPv6ND_Redirect(tgt="fe80::3",
                                                                          dst="2001:db8::1"),
    ]
    frames += [E1 / f for f in fragment(IP(src=H1.ip4, dst="198.51.100.1", id=7) / ICMP()
                                       / (b"f" * 1200), fragsize=400)]
    frames += [E1 / f for f in fragment6(IPv6(src=H1.ip6, dst="2001:db8:1::1")
                                         / IPv6ExtHdrFragment(id=3) / ICMPv6EchoRequest(
                                             data=b"g" * 1200), 600)]
    return [raw(f) for f in frames]


CORPUS = _corpus()


class _Recorder:
    """Stands in for a router once, to record the frames `learn` feeds (built with scapy
    once, not per example)."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []

    def receive(self, ifindex: int, frame: bytes, now: float) -> list[Any]:
        self.frames.append((ifindex, frame))
        return []


_recorder = _Recorder()
learn(_recorder, H1, 1000.0)  # type: ignore[arg-type]
learn(_recorder, H2, 1000.0)  # type: ignore[arg-type]
LEARN_FRAMES = _recorder.frames


def _router() -> Router:
    r = make_router({"net.inet.icmp.icmplim": 0, "net.inet6.icmp6.errppslimit": 0})
    for ifindex, frame in LEARN_FRAMES:
        r.receive(ifindex, frame, 1000.0)
    return r


def _check_emitted(frame: bytes) -> None:
    """What the router emits is well formed: IPv4 header checksums (the RFC 1624 update on
    forwarded packets included) and the checksums of the ICMP/ICMPv6 messages it built."""
    pkt = frame[14:]
    if frame[12:14] == b"\x08\x00":
        hlen = (pkt[0] & 15) * 4
        assert ones_complement_sum(pkt[:hlen]) == 0xFFFF, "IPv4 header checksum"
        total = int.from_bytes(pkt[2:4], "big")
        assert total == len(pkt)
        whole = not (int.from_bytes(pkt[6:8], "big") & 0x3FFF)
        if pkt[9] == 1 and whole and pkt[12:16] in _ROUTER4:  # ICMP the router built
            assert ones_complement_sum(pkt[hlen:]) == 0xFFFF, "ICMP checksum"
    elif frame[12:14] == b"\x86\xdd":
        assert int.from_bytes(pkt[4:6], "big") == len(pkt) - 40
        if pkt[6] == 58 and pkt[8:10] in (b"\xfe\x80", b"\x20\x01") and (
                pkt[8:24] in _ROUTER6):
            assert verify_icmp6(pkt[8:24], pkt[24:40], pkt[40:]), "ICMPv6 checksum"


_ROUTER4 = {bytes([198, 51, 100, 1]), bytes([203, 0, 113, 1])}
_ROUTER6 = {bytes.fromhex(h) for h in ("20010db8000100000000000000000001",
                                        "20010db8000200000000000000000001",
                                        "fe80000000000000000000fffe000101",
                                        "fe80000000000000000000fffe000102")}


def _check(router: Router, ifindex: int, frame: bytes, now: float) -> None:
    before = router.stats.snapshot()
    actions = router.receive(ifindex, frame, now)
    assert actions, "every frame produces at least one action"
    transmitted = False
    for action in actions:
        if isinstance(action, Transmit):
            transmitted = True
            assert action.ifindex in router.interfaces
            assert len(action.frame) >= 14 + 20
            assert len(action.frame) - 14 <= router.interfaces[action.ifindex].mtu
            _check_emitted(action.frame)
        else:
            assert isinstance(action, Drop | Deliver | Hold)
            assert action.reason in KNOWN_KEYS, action.reason
            assert router.stats.get(action.reason) > before[action.reason], action
    if not transmitted:
        assert any(isinstance(a, Drop | Deliver | Hold) for a in actions)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=200), st.sampled_from([1, 2, 3]),
       st.sampled_from([R_MAC1, "ff:ff:ff:ff:ff:ff", "33:33:00:00:00:01", None]),
       st.sampled_from([b"\x08\x00", b"\x86\xdd", b"\x08\x06", None]))
def test_random_frames(data: bytes, ifindex: int, dst: str | None, etype: bytes | None) -> None:
    router = _router()
    frame = data
    if dst is not None and etype is not None:
        frame = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(H1_MAC.replace(":", "")) \
            + etype + data
    _check(router, ifindex, frame, 1000.0)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2000), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, 2000), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 2000), st.just(0)),
    st.tuples(st.just("grow"), st.integers(1, 64), st.integers(0, 255)),
)


def _mutate(frame: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    b = bytearray(frame)
    for op, pos, value in ops:
        if op == "cut":
            del b[pos % (len(b) + 1):]
        elif op == "grow":
            b += bytes([value]) * pos
        elif b:
            i = 14 + pos % max(len(b) - 14, 1) if len(b) > 14 else pos % len(b)
            i = min(i, len(b) - 1)
            b[i] = b[i] ^ value if op == "flip" else value
    return bytes(b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(CORPUS))), st.lists(mutation, min_size=1, max_size=4),
       st.sampled_from([1, 2]))
def test_mutated_valid_frames(index: int, ops: list[tuple[str, int, int]], ifindex: int) -> None:
    router = _router()
    _check(router, ifindex, _mutate(CORPUS[index], ops), 1000.0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(range(len(CORPUS))),
                          st.lists(mutation, max_size=2), st.floats(0, 5)),
                min_size=1, max_size=25))
def test_sequences_with_timers(steps: list[tuple[int, list[tuple[str, int, int]], float]]
                               ) -> None:
    """Frames interleaved with tick(): state (neighbors, reassembly) never breaks the rules."""
    router = _router()
    now = 1000.0
    for index, ops, dt in steps:
        now += dt
        for action in router.tick(now):
            # errors made by timers may wait for their own neighbor, or find no route back
            if isinstance(action, Transmit):
                assert action.ifindex in router.interfaces
                _check_emitted(action.frame)
            else:
                assert isinstance(action, Hold | Drop) and action.reason in KNOWN_KEYS
        _check(router, 1, _mutate(CORPUS[index], ops) if ops else CORPUS[index], now)


def test_corpus_is_answered_unmutated() -> None:
    """The corpus itself exercises the main paths (a guard that the fuzz input is not all
    rejected at the first check)."""
    router = _router()
    transmitted = 0
    for frame in CORPUS:
        actions = router.receive(1, frame, 1000.0)
        transmitted += any(isinstance(a, Transmit) for a in actions)
    assert transmitted >= 10
