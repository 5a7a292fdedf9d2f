"""NeighborCache: every row of the RFC 4861 transition table, timers, queues, bounds."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.neighbor import (
    MAX_RANDOM_FACTOR,
    MIN_RANDOM_FACTOR,
    NeighborCache,
    NeighborEvent,
    NeighborState,
    NeighborTimers,
    QueueOverflow,
    Release,
    ResolutionFailed,
    Solicit,
)
from appliance.core.neighbor_states import TRANSITIONS, Action, Event

IF = 2
ADDR = bytes([198, 51, 100, 7])
OTHER = bytes([198, 51, 100, 8])
ADDR6 = bytes.fromhex("20010db8000000000000000000000007")
MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")

TIMERS = NeighborTimers(
    reachable_time=30.0,
    retrans_timer=1.0,
    delay_first_probe=5.0,
    max_multicast_solicit=3,
    max_unicast_solicit=3,
    queue_len=4,
    max_entries=8,
    gc_stale=600.0,
)

INCOMPLETE = NeighborState.INCOMPLETE
REACHABLE = NeighborState.REACHABLE
STALE = NeighborState.STALE
DELAY = NeighborState.DELAY
PROBE = NeighborState.PROBE


def make_cache(**changes: Any) -> NeighborCache:
    return NeighborCache(replace(TIMERS, **changes), random.Random(7))


def state_of(cache: NeighborCache, addr: bytes = ADDR) -> NeighborState | None:
    entry = cache.lookup(IF, addr)
    return entry.state if entry is not None else None


def advert(
    cache: NeighborCache, mac: bytes | None, now: float, *, s: bool, o: bool, r: bool = False
) -> list[NeighborEvent]:
    return cache.received_advert(IF, ADDR, mac, solicited=s, override=o, is_router=r, now=now)


def drive_to(cache: NeighborCache, state: NeighborState | None, now: float) -> float:
    """Put the entry for ADDR into `state` through the public API (resolved entries hold
    MAC1; an INCOMPLETE one holds the packet b"queued"); returns the time reached."""
    if state is None:
        return now
    if state is INCOMPLETE:
        cache.resolve(IF, ADDR, b"queued", now)
    elif state is REACHABLE:
        cache.resolve(IF, ADDR, b"queued", now)
        advert(cache, MAC1, now, s=True, o=True)
    else:
        cache.received_solicit_or_request(IF, ADDR, MAC1, now)
        if state in (DELAY, PROBE):
            cache.resolve(IF, ADDR, b"sent", now)
        if state is PROBE:
            now += TIMERS.delay_first_probe
            cache.tick(now)
    assert state_of(cache) is state
    return now


def fire(
    cache: NeighborCache, event: Event, now: float
) -> tuple[float, bytes | None, list[NeighborEvent], bytes | None]:
    """Raise `event` for ADDR through the public API; returns (time, mac returned by
    resolve, events, the link-layer address the message carried)."""
    entry = cache.lookup(IF, ADDR)
    if event is Event.PACKET_TO_SEND:
        mac, events = cache.resolve(IF, ADDR, b"new", now)
        return now, mac, events, None
    if event in (Event.RETRANS_TIMEOUT, Event.RETRANS_EXHAUSTED):
        assert entry is not None
        incomplete = entry.state is INCOMPLETE
        limit = TIMERS.max_multicast_solicit if incomplete else TIMERS.max_unicast_solicit
        if event is Event.RETRANS_EXHAUSTED:
            for _ in range(limit - entry.probes):
                now = entry.expires
                cache.tick(now)
        assert (entry.probes < limit) == (event is Event.RETRANS_TIMEOUT)
        now = entry.expires
        return now, None, cache.tick(now), None
    if event in (Event.DELAY_TIMEOUT, Event.REACHABLE_TIMEOUT, Event.GC_TIMEOUT):
        assert entry is not None
        now = entry.expires
        return now, None, cache.tick(now), None
    if event is Event.EVICT:
        cache.timers.max_entries = 1  # the next new entry must push ours out
        mac, events = cache.resolve(IF, OTHER, b"other", now)
        return now, None, [e for e in events if e.addr == ADDR], None
    if event is Event.UPPER_LAYER_CONFIRM:
        cache.confirm_reachable(IF, ADDR, now)
        return now, None, [], None
    if event in (Event.SOLICIT_SAME, Event.SOLICIT_DIFF):
        mac = MAC1 if event is Event.SOLICIT_SAME else MAC2
        return now, None, cache.received_solicit_or_request(IF, ADDR, mac, now), mac
    name = event.name  # ADVERT_S<s>_O<o>_<NONE|SAME|DIFF>
    s, o, which = name[8] == "1", name[11] == "1", name[13:]
    mac = {"NONE": None, "SAME": MAC1, "DIFF": MAC2}[which]
    return now, None, advert(cache, mac, now, s=s, o=o, r=True), mac


ROWS = sorted(TRANSITIONS.items(), key=lambda item: (str(item[0][0]), item[0][1].name))


@pytest.mark.parametrize(
    ("state", "event"),
    [key for key, _ in ROWS],
    ids=[f"{key[0].name if key[0] else 'none'}-{key[1].name}" for key, _ in ROWS],
)
def test_every_table_row_through_the_public_api(
    state: NeighborState | None, event: Event
) -> None:
    move = TRANSITIONS[(state, event)]
    cache = make_cache()
    now = drive_to(cache, state, 100.0)
    before = cache.lookup(IF, ADDR)
    old_mac = before.mac if before else None
    old_expires = before.expires if before else None
    generation = cache.generation
    now, mac, events, carried = fire(cache, event, now)
    actions = move.actions
    after = cache.lookup(IF, ADDR)

    expected_state = move.new_state
    released = Action.RELEASE_QUEUED in actions and state is INCOMPLETE
    if released and expected_state is STALE:
        expected_state = DELAY  # the released packets count as sent to a STALE neighbor
    assert (after.state if after else None) is expected_state

    if after is not None and state is not None:
        assert after.mac == (carried if Action.RECORD_LLADDR in actions else old_mac)
        assert after.is_router == (Action.UPDATE_IS_ROUTER in actions)
    if Action.SEND_PACKET in actions:
        assert mac == MAC1
    elif event is Event.PACKET_TO_SEND:
        assert mac is None
    if Action.QUEUE_PACKET in actions:
        assert after is not None and after.queue[-1] == b"new"

    releases = [e for e in events if isinstance(e, Release)]
    if released:
        assert carried is not None
        assert releases == [Release(IF, ADDR, carried, [b"queued"])]
    else:
        assert releases == []
    failures = [e for e in events if isinstance(e, ResolutionFailed)]
    if Action.FAIL_QUEUED in actions:
        expected_packets = [b"queued"] if state is INCOMPLETE else []
        assert failures == [ResolutionFailed(IF, ADDR, expected_packets)]
    else:
        assert failures == []
    solicits = [e for e in events if isinstance(e, Solicit)]
    if Action.SEND_MULTICAST_SOLICIT in actions:
        assert solicits == [Solicit(IF, ADDR, None)]
    elif Action.SEND_UNICAST_SOLICIT in actions:
        assert solicits == [Solicit(IF, ADDR, MAC1)]
    else:
        assert solicits == []

    if after is not None and not released:
        if Action.START_RETRANS_TIMER in actions:
            assert after.expires == now + TIMERS.retrans_timer
        elif Action.START_DELAY_TIMER in actions:
            assert after.expires == now + TIMERS.delay_first_probe
        elif Action.START_REACHABLE_TIMER in actions:
            assert after.expires == now + cache.reachable_time
        elif Action.START_GC_TIMER in actions:
            assert after.expires == now + TIMERS.gc_stale
        elif before is not None:
            assert after.expires == old_expires

    changed = (before is None) != (after is None) or (
        before is not None
        and after is not None
        and (after.state is not state or after.mac != old_mac)
    )
    assert (cache.generation != generation) == changed


# --- RFC 4861 §7.2.5, written out independently of the table -----------------------------

# (solicited, override, carried address) -> (new state from REACHABLE, from STALE/DELAY/PROBE,
# whether the cached address becomes the carried one). "same" keeps the state.
ADVERT_EXPECTATIONS = [
    (True, False, MAC1, REACHABLE, REACHABLE, True),
    (False, False, None, "same", "same", False),
    (False, True, None, "same", "same", False),
    (True, False, None, REACHABLE, REACHABLE, False),
    (True, True, None, REACHABLE, REACHABLE, False),
    (True, False, MAC2, STALE, "same", False),
    (True, True, MAC2, REACHABLE, REACHABLE, True),
    (False, False, MAC2, STALE, "same", False),
    (False, False, MAC1, "same", "same", True),
    (False, True, MAC1, "same", "same", True),
    (False, True, MAC2, STALE, STALE, True),
]


@pytest.mark.parametrize("start", [REACHABLE, STALE, DELAY, PROBE])
@pytest.mark.parametrize(
    ("solicited", "override", "carried", "from_reachable", "from_other", "recorded"),
    ADVERT_EXPECTATIONS,
)
def test_advert_on_a_resolved_entry_follows_section_7_2_5(
    start: NeighborState,
    solicited: bool,
    override: bool,
    carried: bytes | None,
    from_reachable: NeighborState | str,
    from_other: NeighborState | str,
    recorded: bool,
) -> None:
    cache = make_cache()
    now = drive_to(cache, start, 10.0)
    advert(cache, carried, now + 0.5, s=solicited, o=override)
    expected = from_reachable if start is REACHABLE else from_other
    assert state_of(cache) is (start if expected == "same" else expected)
    entry = cache.lookup(IF, ADDR)
    assert entry is not None
    assert entry.mac == (carried if recorded and carried else MAC1)


@pytest.mark.parametrize(("solicited", "expected"), [(True, REACHABLE), (False, DELAY)])
@pytest.mark.parametrize("override", [False, True])
def test_advert_resolves_incomplete_and_releases_in_order(
    solicited: bool, expected: NeighborState, override: bool
) -> None:
    cache = make_cache()
    for i in range(3):
        mac, events = cache.resolve(IF, ADDR, b"p%d" % i, 1.0 + i / 10)
        assert mac is None
    events = advert(cache, MAC1, 1.5, s=solicited, o=override, r=True)
    assert events == [Release(IF, ADDR, MAC1, [b"p0", b"p1", b"p2"])]
    entry = cache.lookup(IF, ADDR)
    assert entry is not None and entry.mac == MAC1 and entry.is_router and not entry.queue
    # unsolicited: STALE, then the released packets make it DELAY (RFC 4861 §7.3.3)
    assert entry.state is expected


def test_advert_without_address_is_ignored_while_incomplete() -> None:
    cache = make_cache()
    cache.resolve(IF, ADDR, b"p", 0.0)
    assert advert(cache, None, 0.2, s=True, o=True) == []
    assert state_of(cache) is INCOMPLETE


def test_advert_for_unknown_neighbor_creates_nothing() -> None:
    cache = make_cache()
    assert advert(cache, MAC1, 0.0, s=True, o=True) == []
    assert cache.lookup(IF, ADDR) is None
    assert cache.generation == 0


# --- scenarios --------------------------------------------------------------------------


def test_queue_overflow_drops_oldest() -> None:
    cache = make_cache(queue_len=3)
    overflow: list[NeighborEvent] = []
    for i in range(5):
        _, events = cache.resolve(IF, ADDR, b"p%d" % i, 0.0)
        overflow += [e for e in events if isinstance(e, QueueOverflow)]
    assert overflow == [QueueOverflow(IF, ADDR, b"p0"), QueueOverflow(IF, ADDR, b"p1")]
    events = advert(cache, MAC1, 0.5, s=True, o=False)
    assert events == [Release(IF, ADDR, MAC1, [b"p2", b"p3", b"p4"])]


def test_resolution_fails_after_max_multicast_solicit_at_retrans_intervals() -> None:
    cache = make_cache(retrans_timer=1.0, max_multicast_solicit=3)
    sent_at: list[float] = []
    failed: list[tuple[float, ResolutionFailed]] = []
    _, events = cache.resolve(IF, ADDR6, b"ping", 0.0)
    sent_at += [0.0 for e in events if isinstance(e, Solicit)]
    cache.resolve(IF, ADDR6, b"ping2", 0.5)
    for step in range(1, 41):  # a fake clock ticking every 0.125 s up to 5 s
        now = step * 0.125
        for event in cache.tick(now):
            if isinstance(event, Solicit):
                assert event.unicast_mac is None and event.addr == ADDR6
                sent_at.append(now)
            elif isinstance(event, ResolutionFailed):
                failed.append((now, event))
    assert sent_at == [0.0, 1.0, 2.0]
    assert failed == [(3.0, ResolutionFailed(IF, ADDR6, [b"ping", b"ping2"]))]
    assert cache.lookup(IF, ADDR6) is None


def test_stale_delay_probe_then_confirmed_by_solicited_advert() -> None:
    cache = make_cache()
    cache.received_solicit_or_request(IF, ADDR, MAC1, 0.0)
    assert state_of(cache) is STALE
    mac, events = cache.resolve(IF, ADDR, b"x", 10.0)
    assert (mac, events, state_of(cache)) == (MAC1, [], DELAY)
    assert cache.tick(14.9) == []
    assert cache.tick(15.0) == [Solicit(IF, ADDR, MAC1)]  # DELAY_FIRST_PROBE_TIME later
    assert state_of(cache) is PROBE
    mac, _ = cache.resolve(IF, ADDR, b"y", 15.2)
    assert mac == MAC1  # PROBE still sends to the cached address
    assert cache.tick(16.0) == [Solicit(IF, ADDR, MAC1)]
    assert advert(cache, MAC1, 16.3, s=True, o=False) == []
    assert state_of(cache) is REACHABLE


def test_probe_failure_after_max_unicast_solicit() -> None:
    cache = make_cache(max_unicast_solicit=2)
    cache.received_solicit_or_request(IF, ADDR, MAC1, 0.0)
    cache.resolve(IF, ADDR, b"x", 0.0)
    log = [(t, cache.tick(t)) for t in (5.0, 6.0, 7.0)]
    assert log == [
        (5.0, [Solicit(IF, ADDR, MAC1)]),
        (6.0, [Solicit(IF, ADDR, MAC1)]),
        (7.0, [ResolutionFailed(IF, ADDR, [])]),
    ]
    assert cache.lookup(IF, ADDR) is None


def test_each_probe_round_gets_its_full_count() -> None:
    cache = make_cache(max_unicast_solicit=3)
    cache.received_solicit_or_request(IF, ADDR, MAC1, 0.0)
    cache.resolve(IF, ADDR, b"x", 0.0)
    cache.tick(5.0)
    cache.tick(6.0)  # two unicast probes out, then the neighbor answers
    advert(cache, MAC1, 6.5, s=True, o=False)
    entry = cache.lookup(IF, ADDR)
    assert entry is not None and entry.state is REACHABLE
    now = entry.expires
    cache.tick(now)  # -> STALE
    cache.resolve(IF, ADDR, b"y", now)  # -> DELAY
    probes = [
        (t, e) for t in (now + 5, now + 6, now + 7, now + 8) for e in cache.tick(t)
    ]
    assert probes == [
        (now + 5, Solicit(IF, ADDR, MAC1)),
        (now + 6, Solicit(IF, ADDR, MAC1)),
        (now + 7, Solicit(IF, ADDR, MAC1)),
        (now + 8, ResolutionFailed(IF, ADDR, [])),
    ]


def test_confirmation_in_delay_avoids_probing() -> None:
    cache = make_cache()
    cache.received_solicit_or_request(IF, ADDR, MAC1, 0.0)
    cache.resolve(IF, ADDR, b"x", 1.0)
    cache.confirm_reachable(IF, ADDR, 2.0)
    assert state_of(cache) is REACHABLE
    assert [e for t in (6.0, 7.0, 8.0) for e in cache.tick(t)] == []


def test_reachable_expires_to_stale_lazily_and_on_tick() -> None:
    cache = make_cache()
    drive_to(cache, REACHABLE, 0.0)
    deadline = cache.reachable_time
    mac, _ = cache.resolve(IF, ADDR, b"a", deadline - 0.01)
    assert mac == MAC1 and state_of(cache) is REACHABLE
    # No tick in between: the next use still sees the timeout first, then sends (-> DELAY).
    mac, events = cache.resolve(IF, ADDR, b"b", deadline)
    assert (mac, events, state_of(cache)) == (MAC1, [], DELAY)

    other = make_cache()
    drive_to(other, REACHABLE, 0.0)
    assert other.tick(other.reachable_time) == []
    assert state_of(other) is STALE


def test_stale_entries_are_garbage_collected() -> None:
    cache = make_cache(gc_stale=60.0)
    cache.received_solicit_or_request(IF, ADDR, MAC1, 0.0)
    cache.received_solicit_or_request(IF, OTHER, MAC2, 30.0)
    cache.tick(60.0)
    assert state_of(cache) is None and state_of(cache, OTHER) is STALE
    cache.tick(90.0)
    assert len(cache) == 0


@pytest.mark.parametrize("seed", range(20))
def test_reachable_time_is_randomised_within_bounds(seed: int) -> None:
    cache = NeighborCache(NeighborTimers(reachable_time=30.0), random.Random(seed))
    value = cache.reachable_time
    assert 30.0 * MIN_RANDOM_FACTOR <= value <= 30.0 * MAX_RANDOM_FACTOR
    cache.resolve(IF, ADDR, b"p", 0.0)
    advert(cache, MAC1, 0.5, s=True, o=False)
    entry = cache.lookup(IF, ADDR)
    assert entry is not None and entry.expires == 0.5 + value
    cache.timers.reachable_time = 10.0  # the sysctl changed: a new draw from the new base
    assert 5.0 <= cache.reachable_time <= 15.0


def test_reachable_time_draws_differ_and_are_redrawn_over_hours() -> None:
    draws = {
        NeighborCache(NeighborTimers(), random.Random(seed)).reachable_time for seed in range(10)
    }
    assert len(draws) == 10
    cache = NeighborCache(NeighborTimers(), random.Random(3))
    first = cache.reachable_time
    cache.tick(0.0)
    cache.tick(4 * 3600.0)
    assert cache.reachable_time != first
    assert 15.0 <= cache.reachable_time <= 45.0


def test_table_bound_evicts_stale_before_incomplete_with_packets() -> None:
    cache = make_cache(max_entries=4)
    waiting = bytes([192, 0, 2, 1])
    cache.resolve(IF, waiting, b"held", 0.0)  # INCOMPLETE with a packet, the oldest
    for i in range(3):
        cache.received_solicit_or_request(IF, bytes([192, 0, 2, 10 + i]), MAC1, 1.0 + i)
    assert len(cache) == 4
    _, events = cache.resolve(IF, bytes([192, 0, 2, 99]), b"new", 5.0)
    assert len(cache) <= 4
    assert cache.lookup(IF, waiting) is not None  # the STALE ones went first
    assert cache.lookup(IF, bytes([192, 0, 2, 10])) is None  # oldest STALE
    assert not any(isinstance(e, ResolutionFailed) and e.packets for e in events)


def test_table_bound_evicts_resolved_entries_before_waiting_ones() -> None:
    cache = make_cache(max_entries=3)
    waiting = bytes([192, 0, 2, 1])
    cache.resolve(IF, waiting, b"held", 0.0)
    for i in range(2):
        address = bytes([192, 0, 2, 10 + i])
        cache.resolve(IF, address, b"p", 1.0 + i)
        cache.received_advert(
            IF, address, MAC1, solicited=True, override=True, is_router=False, now=1.0 + i
        )
    assert [state_of(cache, bytes([192, 0, 2, 10 + i])) for i in range(2)] == [REACHABLE] * 2
    _, events = cache.resolve(IF, bytes([192, 0, 2, 99]), b"new", 5.0)
    assert cache.lookup(IF, waiting) is not None
    assert cache.lookup(IF, bytes([192, 0, 2, 10])) is None  # the oldest REACHABLE one
    assert cache.lookup(IF, bytes([192, 0, 2, 11])) is not None
    assert ResolutionFailed(IF, bytes([192, 0, 2, 10]), []) in events


def test_table_bound_with_only_waiting_entries_fails_the_oldest() -> None:
    cache = make_cache(max_entries=3)
    for i in range(3):
        cache.resolve(IF, bytes([192, 0, 2, i]), b"p%d" % i, float(i))
    _, events = cache.resolve(IF, bytes([192, 0, 2, 50]), b"new", 2.5)
    assert len(cache) == 3
    assert ResolutionFailed(IF, bytes([192, 0, 2, 0]), [b"p0"]) in events
    assert cache.lookup(IF, bytes([192, 0, 2, 50])) is not None


def test_entries_are_keyed_by_interface_and_family() -> None:
    cache = make_cache()
    cache.received_solicit_or_request(1, ADDR, MAC1, 0.0)
    cache.received_solicit_or_request(2, ADDR, MAC2, 0.0)
    cache.received_solicit_or_request(1, ADDR6, MAC2, 0.0)
    assert {(e.ifindex, e.addr, e.mac) for e in cache.entries()} == {
        (1, ADDR, MAC1), (2, ADDR, MAC2), (1, ADDR6, MAC2)}
    cache.flush(1)
    assert [(e.ifindex, e.addr) for e in cache.entries()] == [(2, ADDR)]
    with pytest.raises(ValueError, match="4 or 16"):
        cache.resolve(1, b"\x01\x02", b"p", 0.0)


def test_solicit_from_incomplete_neighbor_releases_queue() -> None:
    cache = make_cache()
    cache.resolve(IF, ADDR, b"q", 0.0)
    events = cache.received_solicit_or_request(IF, ADDR, MAC2, 0.3)
    assert events == [Release(IF, ADDR, MAC2, [b"q"])]
    assert state_of(cache) is DELAY


def test_static_entry_never_changes() -> None:
    cache = make_cache()
    cache.resolve(IF, ADDR, b"waiting", 0.0)
    assert cache.add_static(IF, ADDR, MAC1, 0.1) == [Release(IF, ADDR, MAC1, [b"waiting"])]
    advert(cache, MAC2, 0.2, s=False, o=True)
    cache.received_solicit_or_request(IF, ADDR, MAC2, 0.3)
    assert cache.tick(10_000.0) == []
    assert cache.resolve(IF, ADDR, b"x", 10_000.0) == (MAC1, [])
    entry = cache.lookup(IF, ADDR)
    assert entry is not None and entry.permanent and entry.mac == MAC1
    cache.flush()
    assert cache.lookup(IF, ADDR) is not None
    assert cache.delete(IF, ADDR) is not None and len(cache) == 0


def test_generation_moves_only_on_state_or_address_change() -> None:
    cache = make_cache()
    g0 = cache.generation
    cache.resolve(IF, ADDR, b"a", 0.0)
    g1 = cache.generation
    cache.resolve(IF, ADDR, b"b", 0.1)  # queued, no change
    assert cache.generation == g1 > g0
    advert(cache, MAC1, 0.2, s=True, o=True)
    g2 = cache.generation
    cache.resolve(IF, ADDR, b"c", 0.3)  # REACHABLE: send, no change
    advert(cache, MAC1, 0.4, s=True, o=False)  # re-confirm, no change
    assert cache.generation == g2 > g1
    advert(cache, MAC2, 0.5, s=False, o=True)  # new address
    assert cache.generation > g2


# --- random operation sequences: invariants ----------------------------------------------

ADDRS = [bytes([192, 0, 2, i]) for i in range(1, 7)] + [
    bytes.fromhex(f"20010db800000000000000000000000{i}") for i in range(1, 4)
]
MACS = [bytes.fromhex(f"02000000000{i}") for i in range(1, 4)]

operation = st.one_of(
    st.tuples(st.just("resolve"), st.sampled_from(ADDRS)),
    st.tuples(
        st.just("advert"), st.sampled_from(ADDRS), st.sampled_from([None, *MACS]),
        st.booleans(), st.booleans(), st.booleans(),
    ),
    st.tuples(st.just("solicit"), st.sampled_from(ADDRS), st.sampled_from(MACS)),
    st.tuples(st.just("confirm"), st.sampled_from(ADDRS)),
    st.tuples(st.just("wait"), st.floats(0.0, 40.0)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, max_size=60), st.integers(2, 6), st.integers(1, 3))
def test_random_sequences_keep_every_packet_accounted_for(
    ops: list[tuple[Any, ...]], max_entries: int, queue_len: int
) -> None:
    cache = make_cache(max_entries=max_entries, queue_len=queue_len, gc_stale=100.0)
    now = 0.0
    sent: set[bytes] = set()  # every packet handed to resolve
    out: list[bytes] = []  # every packet that came back: sent now, released, failed, dropped
    generation = cache.generation

    def collect(events: list[NeighborEvent]) -> None:
        for event in events:
            if isinstance(event, Release | ResolutionFailed):
                out.extend(event.packets)
            elif isinstance(event, QueueOverflow):
                out.append(event.dropped)

    for number, op in enumerate(ops):
        kind = op[0]
        if kind == "resolve":
            packet = b"packet %d" % number
            sent.add(packet)
            mac, events = cache.resolve(IF, op[1], packet, now)
            if mac is not None:
                out.append(packet)
            collect(events)
        elif kind == "advert":
            _, addr, mac, s, o, r = op
            collect(cache.received_advert(IF, addr, mac, solicited=s, override=o,
                                          is_router=r, now=now))
        elif kind == "solicit":
            collect(cache.received_solicit_or_request(IF, op[1], op[2], now))
        elif kind == "confirm":
            cache.confirm_reachable(IF, op[1], now)
        else:
            now += op[1]
            collect(cache.tick(now))
        assert cache.generation >= generation
        generation = cache.generation

        assert len(cache) <= max_entries
        for entry in cache.entries():
            if entry.state is INCOMPLETE:
                assert entry.mac is None and 1 <= len(entry.queue) <= queue_len
            else:
                assert entry.mac is not None and not entry.queue

    queued = [p for entry in cache.entries() for p in entry.queue]
    assert sorted(out + queued) == sorted(sent)  # each packet exactly once
    # a long quiet time: each tick fires every overdue timer once (and re-arms it from `now`);
    # no chain is longer than DELAY -> PROBE -> 3 probes -> gone, so ten ticks empty the table
    for step in range(1, 11):
        collect(cache.tick(now + step * 1000.0))
    assert len(cache) == 0
    assert sorted(out) == sorted(sent)
