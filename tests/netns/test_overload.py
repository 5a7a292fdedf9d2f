"""A flood far beyond what the router can forward fills its RX rings; the kernel drops what
does not fit (counted) and, once the flood stops, the router forwards again at once."""

from __future__ import annotations

import json

import pytest

from netns import Lab, Line, build_line, wait_for

FLOOD = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
end = time.monotonic() + 1.5
sent = 0
while time.monotonic() < end:
    for _ in range(500):  # bounded inner loop between clock reads
        try:
            s.sendto(b"v" * 18, ("198.51.100.2", 9))
            sent += 1
        except OSError:
            pass
print(sent)
"""


@pytest.mark.parametrize("mode", ["off", "python", "c"])
def test_forwarding_resumes_after_a_flood_overflows_the_rings(lab: Lab, mode: str) -> None:
    """The Python readers (slow path, twin) take ~60k frames/s, the flood is several times
    that: the rings overflow for 1.5 s. Afterwards pings go through again and the drops were
    counted. (Before the ring status word was accessed as one 32-bit word, the Python reader
    fell out of step with the kernel here and never read another frame.)"""
    if mode == "c":
        pytest.importorskip("appliance.dataplane._fastpath")
    line: Line = build_line(lab, mode)
    assert line.router is not None
    sent = int(line.h1.python(FLOOD).stdout)
    assert sent > 50_000, sent
    assert wait_for(lambda: line.h1.run(["ping", "-n", "-c", "1", "-W", "1", Line.H2],
                                        check=False).returncode == 0, timeout=15), \
        "nothing forwarded after the flood"
    proc = line.h1.run(["ping", "-n", "-c", "5", "-i", "0.2", "-W", "2", Line.H2], check=False)
    assert proc.returncode == 0 and " 0% packet loss" in proc.stdout, proc.stdout
    status = json.loads(line.router.ctl("status", "--json").stdout)
    if mode != "c":  # the C path keeps up with this flood on a quiet machine
        assert status["rx_ring_drops"] > 0, status
