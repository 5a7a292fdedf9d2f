"""TCP: only what a router needs to fix up a checksum (RFC 9293 §3.1).

The router never parses TCP beyond the checksum field; quoting and NAT-free forwarding
do not need more.
"""

from __future__ import annotations

__all__ = ["TCP_CHECKSUM_OFFSET", "TCP_MIN_LENGTH", "TCP_PORTS_LENGTH"]

TCP_CHECKSUM_OFFSET = 16
"""Offset of the Checksum field in the TCP header (RFC 9293 §3.1)."""
TCP_MIN_LENGTH = 20
"""Length of a TCP header without options (RFC 9293 §3.1, Data Offset = 5)."""
TCP_PORTS_LENGTH = 8
"""Source port, destination port and sequence number: the bytes RFC 792 quoting guarantees."""
