"""appliance.host.linkwatch: rtnetlink link messages into LinkEvents (up = admin up + carrier)."""

from __future__ import annotations

from appliance.host.linkwatch import link_message, parse_link_messages
from appliance.host.netlink import (
    AF_BRIDGE,
    IFF_LOWER_UP,
    IFF_RUNNING,
    IFF_UP,
    NLMSG_DONE,
    RTM_DELLINK,
    RTM_NEWLINK,
)

UP, LOWERLAYERDOWN, DOWN = 6, 3, 2  # IF_OPER_* (linux/if.h)


def test_carrier_and_admin_state() -> None:
    data = (link_message(RTM_NEWLINK, 3, "r-h1", IFF_UP | IFF_RUNNING | IFF_LOWER_UP,
                         carrier=True, operstate=UP)
            + link_message(RTM_NEWLINK, 4, "r-h2", IFF_UP, carrier=False, operstate=DOWN)
            + link_message(RTM_NEWLINK, 5, "r-h3", 0, carrier=True, operstate=DOWN))
    events, done = parse_link_messages(data)
    assert not done
    assert [(e.ifindex, e.name, e.up) for e in events] == [
        (3, "r-h1", True), (4, "r-h2", False), (5, "r-h3", False)]
    assert events[0].describe() == "admin up, carrier on, operstate up"
    assert events[1].describe() == "admin up, carrier off, operstate down"
    assert events[2].describe() == "admin down, carrier on, operstate down"


def test_carrier_from_flags_when_the_attribute_is_missing() -> None:
    events, _ = parse_link_messages(
        link_message(RTM_NEWLINK, 3, "r-h1", IFF_UP | IFF_LOWER_UP)
        + link_message(RTM_NEWLINK, 4, "r-h2", IFF_UP, operstate=LOWERLAYERDOWN))
    assert [e.up for e in events] == [True, False]
    assert events[0].carrier is None and events[0].operstate == "unknown"
    assert events[1].operstate == "lowerlayerdown"


def test_deleted_link_is_down_and_done_ends_a_dump() -> None:
    done_msg = b"\x14\x00\x00\x00" + NLMSG_DONE.to_bytes(2, "little") + bytes(14)
    events, done = parse_link_messages(
        link_message(RTM_DELLINK, 3, "r-h1", IFF_UP | IFF_LOWER_UP, carrier=True) + done_msg)
    assert done and len(events) == 1
    assert events[0].deleted and not events[0].up
    assert events[0].describe() == "interface removed"


def test_truncated_and_foreign_messages_are_skipped() -> None:
    whole = link_message(RTM_NEWLINK, 3, "r-h1", IFF_UP | IFF_LOWER_UP, carrier=True)
    assert parse_link_messages(whole[:-3]) == ([], False)
    other = link_message(20, 3, "r-h1", IFF_UP)  # RTM_NEWADDR-typed: not a link message
    events, _ = parse_link_messages(other + whole)
    assert [e.ifindex for e in events] == [3] and events[0].up


def test_bridge_port_messages_are_not_link_changes() -> None:
    """A port leaving a bridge sends RTM_DELLINK with family AF_BRIDGE: the link is still
    there (its own AF_UNSPEC message says how it is)."""
    events, _ = parse_link_messages(
        link_message(RTM_DELLINK, 3, "r-h1", IFF_UP | IFF_LOWER_UP, family=AF_BRIDGE)
        + link_message(RTM_NEWLINK, 3, "r-h1", IFF_UP | IFF_LOWER_UP, carrier=True))
    assert [(e.ifindex, e.deleted, e.up) for e in events] == [(3, False, True)]
