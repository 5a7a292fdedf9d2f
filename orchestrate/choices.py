"""The fixed choices a topology file and the command line accept, declared once.

The topology validator, the node config writer, the backend registry, the CLI's `--backend`
and `--accel` options and the pytest plugin's options all read them from here. (Static route
types are the router's own: `appliance.config.ROUTE_TYPES`.)
"""

from __future__ import annotations

from typing import Literal

Role = Literal["router", "host", "kernel-router"]
ROLES: tuple[Role, ...] = ("router", "host", "kernel-router")
"""What a node is: a `vrlab-router` VM, a plain Linux host, or a Linux host that forwards
(the reference router, configured like a host plus forwarding sysctls)."""

BACKENDS = ("qemu", "libvirt")
"""VM backends, by the module name under orchestrate/backends/."""

ACCELS = ("auto", "kvm", "tcg")
"""QEMU accelerators; `auto` probes KVM and falls back to TCG (orchestrate/accel.py)."""
