"""Counters: FreeBSD names, netstat -s rendering, histograms."""

from __future__ import annotations

import pytest

from appliance.core.stats import Stats


def test_bump_and_get() -> None:
    s = Stats()
    s.bump("ip.total")
    s.bump("ip.total", 4)
    assert s.get("ip.total") == 5
    assert s.as_dict()["ip.total"] == 5
    with pytest.raises(KeyError):
        s.bump("ip.nosuchcounter")


def test_render_like_netstat() -> None:
    s = Stats()
    s.bump("ip.total", 33279)
    s.bump("ip.delivered", 31969)
    s.bump("ip.noproto", 7)
    s.bump("ip.cantforward", 1303)
    s.bump("ip.forward", 1)
    s.bump("ip.localout", 34154)
    s.bump("icmp.error", 21)
    s.bump("icmp.outhist.3", 21)
    s.bump("icmp.inhist.3", 7)
    text = s.render()
    lines = [ln.strip() for ln in text.splitlines()]
    assert "33279 total packets received" in lines
    assert "0 bad header checksums" in lines
    assert "31969 packets for this host" in lines
    assert "7 packets for unknown/unsupported protocol" in lines
    assert "1 packet forwarded (0 packets fast forwarded)" in lines
    assert "1303 packets not forwardable" in lines
    assert "34154 packets sent from this host" in lines
    assert "21 calls to icmp_error" in lines
    # the histograms follow their headings, under the icmp group
    icmp = lines.index("icmp:")
    out = lines.index("Output histogram:")
    inh = lines.index("Input histogram:")
    assert icmp < out < inh
    assert lines[out + 1] == "destination unreachable: 21"
    assert lines[inh + 1] == "destination unreachable: 7"
    assert "ip6:" in lines and "icmp6:" in lines and "arp:" in lines
    assert lines.index("ICMP address mask responses are disabled") == lines.index("ip6:") - 1
    # the ip section keeps netstat's order (seed 003, figure 8.5)
    order = ["total packets received", "bad header checksums", "size smaller than minimum",
             "data size < data length", "ip length > max ip packet size",
             "header length < data size", "data length < header length", "bad options",
             "incorrect version number", "fragments received", "packets reassembled ok",
             "packets for this host", "unknown/unsupported protocol", "forwarded (",
             "not forwardable", "redirects sent", "sent from this host",
             "discarded due to no route", "datagrams fragmented", "fragments created",
             "can't be fragmented"]
    ip_lines = lines[lines.index("ip:"):lines.index("icmp:")]
    positions = [next(i for i, ln in enumerate(ip_lines) if text_part in ln)
                 for text_part in order]
    assert positions == sorted(positions)


def test_histogram_names_v6_and_empty_hidden() -> None:
    s = Stats()
    s.bump("icmp6.outhist.129", 2)
    s.bump("icmp6.outhist.136")
    assert list(s.histogram("icmp6.outhist")) == [(129, 2), (136, 1)]
    text = s.render()
    assert "\t\techo reply: 2" in text
    assert "\t\tneighbor advertisement: 1" in text
    assert "icmp.outhist.0" not in s.as_dict()
    assert s.as_dict()["icmp6.outhist.129"] == 2


def test_histograms_sit_where_netstat_prints_them() -> None:
    s = Stats()
    for group in ("icmp", "icmp6"):
        s.bump(f"{group}.outhist.3")
        s.bump(f"{group}.inhist.3")
    lines = [ln.strip() for ln in s.render().splitlines()]
    icmp, icmp6 = lines.index("icmp:"), lines.index("icmp6:")
    for start, end, after_out, after_in in (
        (icmp, icmp6, "0 errors not generated because of rate limitation",
         "0 multicast timestamp requests ignored"),
        (icmp6, len(lines), "0 errors not generated because of rate limitation",
         "0 messages with bad length"),
    ):
        section = lines[start:end]
        out, inh = section.index("Output histogram:"), section.index("Input histogram:")
        assert section[out - 1] == after_out
        assert section[inh - 1] == after_in
        assert section[out + 1] == section[inh + 1] == (
            "destination unreachable: 1" if start == icmp else "time exceed: 1")
        assert section.count("Output histogram:") == section.count("Input histogram:") == 1
