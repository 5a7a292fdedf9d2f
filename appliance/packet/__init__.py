"""Header codecs, one module per header (frozen dataclasses, one struct.Struct each).

Import from the modules (``from appliance.packet.ipv4 import IPv4Header``); the most used names
are re-exported here for convenience.
"""

from __future__ import annotations

from appliance.packet.errors import PacketError

__all__ = ["PacketError"]
