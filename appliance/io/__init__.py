"""Data path I/O: AF_PACKET TPACKET_V2 rings."""
