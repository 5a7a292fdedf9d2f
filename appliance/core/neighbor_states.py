"""The neighbor cache state machine (RFC 4861 §7.3.3 and appendix C) as one table.

Everything the cache does to an entry is a row below: the state it is in (None = no entry
exists), the event, the actions, and the state it ends in (None = the entry is discarded,
UNCHANGED = it stays where it was). `appliance/core/neighbor.py` only classifies inputs into
events, looks the pair up in `TRANSITIONS` and carries out the actions; it holds no state
logic of its own. ARP uses the same machine (as Linux and illumos do): an ARP reply is an
advertisement, an ARP request or gratuitous ARP is a solicitation.

Where appendix C (informative) and §7.2.5 (normative) disagree, the table follows §7.2.5:
- a solicited NA without a target link-layer address option confirms reachability
  (REACHABLE; appendix C says "unchanged");
- an NA with Override=0 and a different address moves REACHABLE to STALE whatever its
  Solicited flag (appendix C lists only Solicited=1).

Two rows are not in the RFC: STALE entries are garbage-collected after `gc_stale` seconds
(RFC 4861 §7.3.1 leaves reclaiming entries to the implementation; Linux uses gc_staletime),
and EVICT discards an entry when the table is full.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "TIMER_EVENTS",
    "TRANSITIONS",
    "UNCHANGED",
    "Action",
    "Event",
    "NeighborState",
    "Transition",
    "advert_event",
    "transition",
]


class NeighborState(enum.Enum):
    """RFC 4861 §7.3.2 reachability states."""

    INCOMPLETE = "INCOMPLETE"  # resolution in progress, no link-layer address yet
    REACHABLE = "REACHABLE"  # confirmed within the last ReachableTime
    STALE = "STALE"  # address known, reachability unknown; nothing sent lately
    DELAY = "DELAY"  # sent to while STALE; waiting for an upper-layer confirmation
    PROBE = "PROBE"  # unicast solicitations in flight


INCOMPLETE = NeighborState.INCOMPLETE
REACHABLE = NeighborState.REACHABLE
STALE = NeighborState.STALE
DELAY = NeighborState.DELAY
PROBE = NeighborState.PROBE


class Event(enum.Enum):
    """Inputs to the machine. Adverts are named by their flags and how their link-layer
    address compares with the cached one: NONE (no target link-layer option), SAME, DIFF
    (different, or nothing is cached yet)."""

    PACKET_TO_SEND = "packet to send"
    RETRANS_TIMEOUT = "retransmit timeout, fewer than N solicitations sent"
    RETRANS_EXHAUSTED = "retransmit timeout, N solicitations sent"
    DELAY_TIMEOUT = "delay timeout"
    REACHABLE_TIMEOUT = "reachable timeout"
    GC_TIMEOUT = "stale for gc_stale seconds"
    EVICT = "table full, entry chosen for eviction"
    UPPER_LAYER_CONFIRM = "upper-layer reachability confirmation"
    SOLICIT_SAME = "NS/RS/Redirect/ARP request, same link-layer address as cached"
    SOLICIT_DIFF = "NS/RS/Redirect/ARP request, different link-layer address"
    ADVERT_S0_O0_NONE = "NA S=0 O=0, no link-layer address"
    ADVERT_S0_O0_SAME = "NA S=0 O=0, same link-layer address"
    ADVERT_S0_O0_DIFF = "NA S=0 O=0, different link-layer address"
    ADVERT_S0_O1_NONE = "NA S=0 O=1, no link-layer address"
    ADVERT_S0_O1_SAME = "NA S=0 O=1, same link-layer address"
    ADVERT_S0_O1_DIFF = "NA S=0 O=1, different link-layer address"
    ADVERT_S1_O0_NONE = "NA S=1 O=0, no link-layer address"
    ADVERT_S1_O0_SAME = "NA S=1 O=0, same link-layer address"
    ADVERT_S1_O0_DIFF = "NA S=1 O=0, different link-layer address"
    ADVERT_S1_O1_NONE = "NA S=1 O=1, no link-layer address"
    ADVERT_S1_O1_SAME = "NA S=1 O=1, same link-layer address"
    ADVERT_S1_O1_DIFF = "NA S=1 O=1, different link-layer address"


class Action(enum.Flag):
    """What the cache does on a transition, carried out in this order."""

    NONE = 0
    RECORD_LLADDR = enum.auto()  # store the link-layer address from the message
    UPDATE_IS_ROUTER = enum.auto()  # IsRouter := the advert's R flag (§7.2.5)
    QUEUE_PACKET = enum.auto()  # hold the packet on the entry (bounded, oldest dropped)
    SEND_PACKET = enum.auto()  # hand the cached address back to the caller
    RELEASE_QUEUED = enum.auto()  # send the queued packets (illumos nce_resolv_ok)
    FAIL_QUEUED = enum.auto()  # give the queued packets back for ICMP unreachable
    SEND_MULTICAST_SOLICIT = enum.auto()  # NS to the solicited-node group / ARP broadcast
    SEND_UNICAST_SOLICIT = enum.auto()  # NS / ARP request to the cached address
    START_RETRANS_TIMER = enum.auto()  # RetransTimer
    START_DELAY_TIMER = enum.auto()  # DELAY_FIRST_PROBE_TIME
    START_REACHABLE_TIMER = enum.auto()  # ReachableTime (randomised, §6.3.2)
    START_GC_TIMER = enum.auto()  # gc_stale


class _Unchanged(enum.Enum):
    UNCHANGED = "unchanged"


UNCHANGED: Final = _Unchanged.UNCHANGED

A = Action


@dataclass(frozen=True, slots=True)
class Transition:
    actions: Action
    new_state: NeighborState | None  # None: no entry (discarded, or never created)


_Target = NeighborState | None | _Unchanged

NOT_INCOMPLETE = (REACHABLE, STALE, DELAY, PROBE)  # appendix C's "!INCOMPLETE"
NO_ENTRY = (None,)

_SOLICIT_RETRY = A.SEND_MULTICAST_SOLICIT | A.START_RETRANS_TIMER
_PROBE = A.SEND_UNICAST_SOLICIT | A.START_RETRANS_TIMER
_CONFIRMED = A.UPDATE_IS_ROUTER | A.START_REACHABLE_TIMER
_RESOLVED = A.RECORD_LLADDR | A.UPDATE_IS_ROUTER | A.RELEASE_QUEUED
_LEARNED = A.RECORD_LLADDR | A.RELEASE_QUEUED | A.START_GC_TIMER

E = Event

# (states, events, actions, new state).  Read it like appendix C.
_ROWS: list[tuple[tuple[NeighborState | None, ...], tuple[Event, ...], Action, _Target]] = [
    # --- sending ----------------------------------------------------------------------------
    (NO_ENTRY, (E.PACKET_TO_SEND,), A.QUEUE_PACKET | _SOLICIT_RETRY, INCOMPLETE),
    ((INCOMPLETE,), (E.PACKET_TO_SEND,), A.QUEUE_PACKET, UNCHANGED),
    ((REACHABLE, DELAY, PROBE), (E.PACKET_TO_SEND,), A.SEND_PACKET, UNCHANGED),
    ((STALE,), (E.PACKET_TO_SEND,), A.SEND_PACKET | A.START_DELAY_TIMER, DELAY),
    # --- timers -----------------------------------------------------------------------------
    ((INCOMPLETE,), (E.RETRANS_TIMEOUT,), _SOLICIT_RETRY, UNCHANGED),
    ((INCOMPLETE,), (E.RETRANS_EXHAUSTED,), A.FAIL_QUEUED, None),
    ((REACHABLE,), (E.REACHABLE_TIMEOUT,), A.START_GC_TIMER, STALE),
    ((DELAY,), (E.DELAY_TIMEOUT,), _PROBE, PROBE),
    ((PROBE,), (E.RETRANS_TIMEOUT,), _PROBE, UNCHANGED),
    ((PROBE,), (E.RETRANS_EXHAUSTED,), A.FAIL_QUEUED, None),
    ((STALE,), (E.GC_TIMEOUT,), A.NONE, None),
    ((INCOMPLETE, *NOT_INCOMPLETE), (E.EVICT,), A.FAIL_QUEUED, None),
    # --- upper-layer confirmation (§7.3.1) -----------------------------------------------
    ((None, INCOMPLETE), (E.UPPER_LAYER_CONFIRM,), A.NONE, UNCHANGED),
    (NOT_INCOMPLETE, (E.UPPER_LAYER_CONFIRM,), A.START_REACHABLE_TIMER, REACHABLE),
    # --- solicitations with a source link-layer address (§7.2.3, §7.2.4; ARP requests) ---
    (NO_ENTRY, (E.SOLICIT_DIFF,), A.RECORD_LLADDR | A.START_GC_TIMER, STALE),
    ((INCOMPLETE,), (E.SOLICIT_DIFF,), _LEARNED, STALE),
    (NOT_INCOMPLETE, (E.SOLICIT_DIFF,), A.RECORD_LLADDR | A.START_GC_TIMER, STALE),
    (NOT_INCOMPLETE, (E.SOLICIT_SAME,), A.NONE, UNCHANGED),
    # --- advertisements (§7.2.5; ARP replies) ---------------------------------------------
    # No entry: "the advertisement SHOULD be silently discarded".
    (
        NO_ENTRY,
        (
            E.ADVERT_S0_O0_NONE, E.ADVERT_S0_O0_DIFF, E.ADVERT_S0_O1_NONE, E.ADVERT_S0_O1_DIFF,
            E.ADVERT_S1_O0_NONE, E.ADVERT_S1_O0_DIFF, E.ADVERT_S1_O1_NONE, E.ADVERT_S1_O1_DIFF,
        ),
        A.NONE,
        None,
    ),
    # INCOMPLETE: without an address the advert is discarded; with one, Override is ignored.
    (
        (INCOMPLETE,),
        (E.ADVERT_S0_O0_NONE, E.ADVERT_S0_O1_NONE, E.ADVERT_S1_O0_NONE, E.ADVERT_S1_O1_NONE),
        A.NONE,
        UNCHANGED,
    ),
    (
        (INCOMPLETE,),
        (E.ADVERT_S0_O0_DIFF, E.ADVERT_S0_O1_DIFF),
        _RESOLVED | A.START_GC_TIMER,
        STALE,
    ),
    (
        (INCOMPLETE,),
        (E.ADVERT_S1_O0_DIFF, E.ADVERT_S1_O1_DIFF),
        _RESOLVED | A.START_REACHABLE_TIMER,
        REACHABLE,
    ),
    # Override clear and a different address: REACHABLE -> STALE, otherwise ignored; the
    # cached address is not changed either way.
    ((REACHABLE,), (E.ADVERT_S0_O0_DIFF, E.ADVERT_S1_O0_DIFF), A.START_GC_TIMER, STALE),
    ((STALE, DELAY, PROBE), (E.ADVERT_S0_O0_DIFF, E.ADVERT_S1_O0_DIFF), A.NONE, UNCHANGED),
    # Override set, same address, or no address: update IsRouter; Solicited -> REACHABLE.
    (
        NOT_INCOMPLETE,
        (E.ADVERT_S1_O0_SAME, E.ADVERT_S1_O0_NONE, E.ADVERT_S1_O1_SAME, E.ADVERT_S1_O1_NONE),
        _CONFIRMED,
        REACHABLE,
    ),
    (NOT_INCOMPLETE, (E.ADVERT_S1_O1_DIFF,), A.RECORD_LLADDR | _CONFIRMED, REACHABLE),
    (
        NOT_INCOMPLETE,
        (E.ADVERT_S0_O0_SAME, E.ADVERT_S0_O0_NONE, E.ADVERT_S0_O1_SAME, E.ADVERT_S0_O1_NONE),
        A.UPDATE_IS_ROUTER,
        UNCHANGED,
    ),
    (
        NOT_INCOMPLETE,
        (E.ADVERT_S0_O1_DIFF,),
        A.RECORD_LLADDR | A.UPDATE_IS_ROUTER | A.START_GC_TIMER,
        STALE,
    ),
]


def _compile() -> dict[tuple[NeighborState | None, Event], Transition]:
    table: dict[tuple[NeighborState | None, Event], Transition] = {}
    for states, events, actions, target in _ROWS:
        for state in states:
            for event in events:
                key = (state, event)
                if key in table:
                    raise AssertionError(f"neighbor state table defines {key} twice")
                new_state = state if target is UNCHANGED else target
                assert not isinstance(new_state, _Unchanged)
                table[key] = Transition(actions, new_state)
    return table


TRANSITIONS: Final = _compile()
"""(state or None for no entry, event) -> Transition. Pairs that cannot happen are absent."""

TIMER_EVENTS: Final[dict[NeighborState, tuple[Event, ...]]] = {
    INCOMPLETE: (E.RETRANS_TIMEOUT, E.RETRANS_EXHAUSTED),
    REACHABLE: (E.REACHABLE_TIMEOUT,),
    STALE: (E.GC_TIMEOUT,),
    DELAY: (E.DELAY_TIMEOUT,),
    PROBE: (E.RETRANS_TIMEOUT, E.RETRANS_EXHAUSTED),
}
"""The event a state's timer raises when it expires (the retransmit timer raises the
first while fewer than the limit of solicitations have gone out, the second after)."""

_ADVERT_EVENTS: Final = {
    (s, o, lladdr): Event[f"ADVERT_S{int(s)}_O{int(o)}_{lladdr}"]
    for s in (False, True)
    for o in (False, True)
    for lladdr in ("NONE", "SAME", "DIFF")
}


def advert_event(solicited: bool, override: bool, lladdr: str) -> Event:
    """The event for an advertisement; `lladdr` is "NONE", "SAME" or "DIFF"."""
    return _ADVERT_EVENTS[(solicited, override, lladdr)]


def transition(state: NeighborState | None, event: Event) -> Transition:
    """Look up a transition; a pair missing from the table is a bug in the caller."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ValueError(f"no neighbor transition for {event.name} in state {state}") from None


def _check_complete() -> None:
    # Every input from the wire or the router must be handled in every state it can reach.
    for state in (None, *NeighborState):
        for event in (E.PACKET_TO_SEND, E.UPPER_LAYER_CONFIRM, E.SOLICIT_DIFF):
            assert (state, event) in TRANSITIONS, (state, event)
        for event in Event:
            if event.name.startswith("ADVERT") and not (
                event.name.endswith("SAME") and state in (None, INCOMPLETE)
            ):
                assert (state, event) in TRANSITIONS, (state, event)
    for state, events in TIMER_EVENTS.items():
        for event in events:
            assert (state, event) in TRANSITIONS, (state, event)
    # Entering a state always starts that state's timer, so no stale deadline survives.
    for (state, event), move in TRANSITIONS.items():
        if move.new_state is not None and move.new_state is not state:
            assert _ENTRY_TIMER[move.new_state] in move.actions, (state, event)


_ENTRY_TIMER: Final = {
    INCOMPLETE: A.START_RETRANS_TIMER,
    REACHABLE: A.START_REACHABLE_TIMER,
    STALE: A.START_GC_TIMER,
    DELAY: A.START_DELAY_TIMER,
    PROBE: A.START_RETRANS_TIMER,
}


_check_complete()
