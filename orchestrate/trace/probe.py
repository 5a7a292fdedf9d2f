"""The probe: one marked packet sent from a lab host, and the program that sends it.

The program runs on the host node (`python3 -c`, root, raw sockets) so that the probe's
identity is ours to choose: the ICMP echo identifier, or the UDP/TCP source port, is the
`ident` of the trace's `Flow`, and the payload starts with a marker. With `--df` the socket
uses IP_PMTUDISC_PROBE (DF set, the host's cached path MTU ignored), so a second trace of the
same big packet still leaves the host and meets the router that cannot forward it.

It prints one JSON line: when it sent, and what came back first (a reply, an ICMP error, or
nothing before the timeout).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

PROBE_PROGRAM = r'''
import json, os, select, socket, struct, sys, time
family, proto, dst, ident, size, ttl, df, timeout, dport = sys.argv[1:10]
family, ident, size, ttl, df, timeout, dport = (int(family), int(ident), int(size), int(ttl),
                                                df == "1", float(timeout), int(dport))
marker = b"vrlab-trace:" + str(ident).encode()
af = socket.AF_INET if family == 4 else socket.AF_INET6
icmp_proto = socket.IPPROTO_ICMP if family == 4 else socket.IPPROTO_ICMPV6
listen = socket.socket(af, socket.SOCK_RAW, icmp_proto)
def cksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
def tune(sock):
    if family == 4:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, 10, 3 if df else 0)  # IP_MTU_DISCOVER: PROBE/DONT
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
        sock.setsockopt(socket.IPPROTO_IPV6, 23, 3 if df else 0)  # IPV6_MTU_DISCOVER
        if df:
            sock.setsockopt(socket.IPPROTO_IPV6, 62, 1)  # IPV6_DONTFRAG
payload_len = max(len(marker), size)
payload = (marker * (payload_len // len(marker) + 1))[:payload_len]
sent = time.time()
out = {"sent": sent, "answer": None}
try:
    if proto == "icmp":
        sock = listen
        tune(sock)
        kind = 8 if family == 4 else 128
        msg = struct.pack("!BBHHH", kind, 0, 0, ident, 1) + payload
        if family == 4:
            msg = msg[:2] + struct.pack("!H", cksum(msg)) + msg[4:]
        sock.sendto(msg, (dst, 0))
    elif proto == "udp":
        sock = socket.socket(af, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0" if family == 4 else "::", ident))
        tune(sock)
        sock.sendto(payload, (dst, dport))
    else:
        sock = socket.socket(af, socket.SOCK_STREAM)
        sock.bind(("0.0.0.0" if family == 4 else "::", ident))
        tune(sock)
        sock.setblocking(False)
        try:
            sock.connect((dst, dport))
        except BlockingIOError:
            pass
except OSError as e:
    out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out)); sys.exit(3)
deadline = sent + timeout
errors = (3, 11, 12) if family == 4 else (1, 2, 3, 4)
while time.time() < deadline and out["answer"] is None:
    ready, writable, _ = select.select([listen], [sock] if proto == "tcp" else [], [],
                                       max(0.0, deadline - time.time()))
    if writable:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        out["answer"] = "reply" if err == 0 else "refused"
        out["at"] = time.time()
        break
    for s in ready:
        data = s.recv(65535)
        body = data[(data[0] & 15) * 4:] if family == 4 else data
        t, code = body[0], body[1]
        if proto == "icmp" and t in (0, 129) and struct.unpack("!H", body[4:6])[0] == ident:
            out.update(answer="reply", at=time.time())
        elif t in errors and (marker in body or struct.pack("!H", ident) in body[8:]):
            out.update(answer="error", type=t, code=code, at=time.time())
print(json.dumps(out))
'''


@dataclass(frozen=True)
class ProbeSpec:
    family: int
    proto: str
    dst: str
    ident: int
    size: int
    ttl: int
    df: bool
    timeout: float
    dport: int

    def command(self) -> str:
        """The shell command that sends the probe on the source host."""
        args = [str(self.family), self.proto, self.dst, str(self.ident), str(self.size),
                str(self.ttl), "1" if self.df else "0", f"{self.timeout:g}", str(self.dport)]
        return "python3 -c " + shlex.quote(PROBE_PROGRAM) + " " + shlex.join(args)


DEFAULT_DPORT = {"icmp": 0, "udp": 33434, "tcp": 22}
