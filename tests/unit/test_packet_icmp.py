"""ICMP and ICMPv6 codecs against scapy-built golden messages."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    ICMP,
    IP,
    UDP,
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    IPv6,
    raw,
)

from appliance.packet.errors import PacketError
from appliance.packet.icmp import (
    Icmp,
    IcmpType,
    ParamProblemCode,
    TimeExceededCode,
    UnreachCode,
    frag_needed_rest,
    is_error_type,
    param_problem_rest,
)
from appliance.packet.icmpv6 import (
    Icmp6,
    Icmp6Type,
    ParamProblem6Code,
    Unreach6Code,
    is_error_type6,
    verify_icmp6,
)

SRC6 = ipaddress.IPv6Address("2001:db8::1").packed
DST6 = ipaddress.IPv6Address("2001:db8::2").packed


def test_echo_request_matches_scapy() -> None:
    wire = raw(ICMP(type=8, id=0x1234, seq=7) / b"ping data")
    msg = Icmp.parse(wire)
    assert msg.type == IcmpType.ECHO_REQUEST and msg.code == 0
    assert msg.rest == bytes.fromhex("12340007")
    assert msg.body == b"ping data"
    assert msg.checksum == ICMP(wire).chksum
    assert msg.pack() == wire
    assert Icmp(8, 0, 0, bytes.fromhex("12340007"), b"ping data").pack() == wire


def test_frag_needed_matches_scapy() -> None:
    quoted = raw(IP(src="192.0.2.1", dst="198.51.100.1") / UDP())[:28]
    wire = raw(ICMP(type=3, code=4, nexthopmtu=1400) / quoted)
    msg = Icmp(IcmpType.DEST_UNREACH, UnreachCode.FRAG_NEEDED, 0, frag_needed_rest(1400), quoted)
    assert msg.pack() == wire
    assert Icmp.parse(wire).body == quoted


def test_param_problem_and_time_exceeded_match_scapy() -> None:
    quoted = raw(IP(src="192.0.2.1", dst="198.51.100.1") / UDP())[:28]
    wire = raw(ICMP(type=12, code=0, ptr=9) / quoted)
    assert Icmp(12, ParamProblemCode.POINTER, 0, param_problem_rest(9), quoted).pack() == wire
    wire = raw(ICMP(type=11, code=1) / quoted)
    assert Icmp(11, TimeExceededCode.REASSEMBLY, 0, bytes(4), quoted).pack() == wire


def test_pack_without_checksum_keeps_field() -> None:
    assert Icmp(0, 0, 0xABCD, bytes(4), b"").pack(with_checksum=False)[2:4] == b"\xab\xcd"


def test_is_error_type() -> None:
    errors = {3, 4, 5, 11, 12}
    for t in range(256):
        assert is_error_type(t) == (t in errors)


def test_icmp_tooshort() -> None:
    with pytest.raises(PacketError) as err:
        Icmp.parse(b"\x08\x00\x00\x00\x00\x00\x00")
    assert err.value.reason == "icmp.tooshort"


def test_icmp6_echo_matches_scapy() -> None:
    wire = raw(
        IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(id=5, seq=6, data=b"hi")
    )
    body = wire[40:]
    msg = Icmp6.parse(body)
    assert msg.type == Icmp6Type.ECHO_REQUEST
    assert msg.rest == bytes.fromhex("00050006")
    assert msg.body == b"hi"
    assert verify_icmp6(SRC6, DST6, body)
    assert not verify_icmp6(SRC6, SRC6, body)
    assert msg.pack(SRC6, DST6) == body
    assert msg.pack(SRC6, DST6, with_checksum=False) == body


@pytest.mark.parametrize(
    ("layer", "msg"),
    [
        (ICMPv6DestUnreach(code=4), Icmp6(1, Unreach6Code.PORT, 0, bytes(4), b"")),
        (ICMPv6PacketTooBig(mtu=1280), Icmp6(2, 0, 0, (1280).to_bytes(4, "big"), b"")),
        (
            ICMPv6ParamProblem(code=2, ptr=42),
            Icmp6(4, ParamProblem6Code.OPTION, 0, (42).to_bytes(4, "big"), b""),
        ),
    ],
)
def test_icmp6_errors_match_scapy(layer: object, msg: Icmp6) -> None:
    quoted = raw(IPv6(src="2001:db8::2", dst="2001:db8::9") / UDP())
    wire = raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / layer / quoted)[40:]
    built = Icmp6(msg.type, msg.code, 0, msg.rest, quoted).pack(SRC6, DST6)
    assert built == wire
    parsed = Icmp6.parse(wire)
    assert (parsed.type, parsed.code, parsed.rest, parsed.body) == (
        msg.type,
        msg.code,
        msg.rest,
        quoted,
    )


def test_icmp6_error_types_and_tooshort() -> None:
    assert is_error_type6(Icmp6Type.PACKET_TOO_BIG)
    assert is_error_type6(127)
    assert not is_error_type6(Icmp6Type.ECHO_REQUEST)
    assert not is_error_type6(Icmp6Type.REDIRECT)
    with pytest.raises(PacketError) as err:
        Icmp6.parse(b"\x80\x00\x00")
    assert err.value.reason == "icmp6.tooshort"
