"""netem on a lab tap (orchestrate.links.set_netem): applied, changed, removed; or, on a
kernel without sch_netem, refused with a reason (this test then checks the refusal)."""

from __future__ import annotations

import os
import uuid

import pytest

from orchestrate import links
from orchestrate.topology.model import Impairment

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def netem_of(namespace: str, tap: str) -> dict[str, int] | None:
    from pyroute2 import NetNS

    with NetNS(namespace) as ns:
        index = ns.link_lookup(ifname=tap)[0]
        for q in ns.get_qdiscs(index=index):
            if q.get_attr("TCA_KIND") == "netem":
                opts = q.get_attr("TCA_OPTIONS")
                return {"delay": opts["delay"], "loss": opts["loss"]}
    return None


def test_netem_on_a_tap() -> None:
    namespace = f"vrlab-netem-{uuid.uuid4().hex[:8]}"
    links.create_namespace(namespace)
    try:
        links.create_bridge(namespace, "br0", 1500)
        fd = links.open_tap(namespace, "t0p0", "br0", 1500)
        try:
            try:
                links.set_netem(namespace, "t0p0", Impairment(delay=20.0, loss=10.0))
            except links.LinkError as e:
                assert "no netem qdisc (CONFIG_NET_SCH_NETEM)" in str(e)
                assert netem_of(namespace, "t0p0") is None
                pytest.skip(f"measured here: {e}")
            first = netem_of(namespace, "t0p0")
            assert first is not None and first["loss"] > 0
            links.set_netem(namespace, "t0p0", Impairment(delay=50.0))
            second = netem_of(namespace, "t0p0")
            assert second is not None and second["delay"] > first["delay"]
            assert second["loss"] == 0
            links.set_netem(namespace, "t0p0", None)
            assert netem_of(namespace, "t0p0") is None
        finally:
            os.close(fd)
    finally:
        links.remove_namespace(namespace)
    assert not links.namespace_exists(namespace)
