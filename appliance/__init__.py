"""vrlab router appliance: an IPv4/IPv6 router with a Python slow path and a C fast path."""
