"""The one exception the header codecs raise."""

from __future__ import annotations

__all__ = ["PacketError"]


class PacketError(ValueError):
    """A header is truncated or holds an impossible value.

    ``reason`` is a dotted counter-style key (``"ip.toosmall"``, ``"ip6.tooshort"``,
    ``"icmp6.badcode"``, ...). Where the FreeBSD statistics have a counter for the condition the
    key is that counter's name as ``appliance/stats.py`` spells it, so a caller can bump
    ``err.reason`` directly.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
