"""IP protocol numbers / IPv6 next-header values (IANA "Assigned Internet Protocol Numbers")."""

from __future__ import annotations

import enum

__all__ = ["IPProto"]


class IPProto(enum.IntEnum):
    """Values of the IPv4 Protocol field (RFC 791 §3.1) and IPv6 Next Header (RFC 8200 §3)."""

    HOPOPTS = 0
    ICMP = 1
    TCP = 6
    UDP = 17
    IPV6_ROUTE = 43
    IPV6_FRAG = 44
    ESP = 50
    AH = 51
    ICMPV6 = 58
    IPV6_NONXT = 59
    IPV6_DSTOPTS = 60
