"""One neighbor cache for ARP (IPv4) and Neighbor Discovery (IPv6), sans-IO.

Entries are keyed by (ifindex, addr) where addr is a packed address (4 or 16 bytes). The
caller passes `now` (monotonic seconds) and gets *events* back; it turns them into frames:

- `Solicit(ifindex, addr, unicast_mac)`: send an NS (or ARP request) for `addr`; to the
  solicited-node multicast group / broadcast when `unicast_mac` is None, else unicast to it.
- `Release(ifindex, addr, mac, packets)`: resolution succeeded, send the queued packets to
  `mac` in the order they were queued (illumos `nce_resolv_ok`, seed 000).
- `ResolutionFailed(ifindex, addr, packets)`: resolution (or unicast probing) failed, or the
  entry was evicted; answer each packet with ICMP host / ICMPv6 address unreachable.
- `QueueOverflow(ifindex, addr, dropped)`: an INCOMPLETE entry's queue was full and its oldest
  packet was dropped (the router counts it).

Every state change goes through the table in `appliance/core/neighbor_states.py`; this module
classifies inputs into table events and carries out the table's actions.

How the router feeds it:
- IPv6: NA -> `received_advert(..., solicited=S, override=O, is_router=R)` with the target
  link-layer option (None if absent); NS / RS / Redirect carrying a source (target) link-layer
  option -> `received_solicit_or_request`.
- IPv4: ARP reply -> `received_advert(..., solicited=True, override=True, is_router=False)`;
  ARP request (including gratuitous ARP) -> `received_solicit_or_request`.

`generation` is bumped whenever an entry appears, disappears, or changes state or address:
the fast path keeps a snapshot of the entries and rebuilds it when the number moves.

Timers are checked in `tick(now)` and also lazily whenever an entry is touched, so an entry
whose REACHABLE time ran out between ticks is treated as STALE on its next use.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from appliance.core.neighbor_states import (
    TIMER_EVENTS,
    Action,
    Event,
    NeighborState,
    advert_event,
    transition,
)

__all__ = [
    "NeighborCache",
    "NeighborEntry",
    "NeighborEvent",
    "NeighborState",
    "NeighborTimers",
    "QueueOverflow",
    "Release",
    "ResolutionFailed",
    "Solicit",
]

# RFC 4861 §10: ReachableTime is BaseReachableTime times a uniform random factor in
# [MIN_RANDOM_FACTOR, MAX_RANDOM_FACTOR], drawn again "at least every few hours" (§6.3.4).
MIN_RANDOM_FACTOR = 0.5
MAX_RANDOM_FACTOR = 1.5
REACHABLE_TIME_REDRAW = 3 * 3600.0


@dataclass(frozen=True, slots=True)
class Solicit:
    """Send a solicitation (NS / ARP request) for `addr` out of `ifindex`."""

    ifindex: int
    addr: bytes
    unicast_mac: bytes | None  # None = multicast (solicited-node group) or ARP broadcast


@dataclass(frozen=True, slots=True)
class Release:
    """Resolution succeeded: send `packets` (in queue order) to `mac`."""

    ifindex: int
    addr: bytes
    mac: bytes
    packets: list[bytes]


@dataclass(frozen=True, slots=True)
class ResolutionFailed:
    """Resolution failed or the entry was evicted; `packets` never left."""

    ifindex: int
    addr: bytes
    packets: list[bytes]


@dataclass(frozen=True, slots=True)
class QueueOverflow:
    """The queue of an INCOMPLETE entry was full: `dropped` (its oldest packet) is gone."""

    ifindex: int
    addr: bytes
    dropped: bytes


NeighborEvent = Solicit | Release | ResolutionFailed | QueueOverflow


@dataclass
class NeighborTimers:
    """Protocol constants (RFC 4861 §10) and table limits; seconds unless counted."""

    reachable_time: float = 30.0  # BaseReachableTime (REACHABLE_TIME)
    retrans_timer: float = 1.0  # RetransTimer (RETRANS_TIMER)
    delay_first_probe: float = 5.0  # DELAY_FIRST_PROBE_TIME
    max_multicast_solicit: int = 3  # MAX_MULTICAST_SOLICIT
    max_unicast_solicit: int = 3  # MAX_UNICAST_SOLICIT
    queue_len: int = 16  # packets held per INCOMPLETE entry
    max_entries: int = 4096  # table bound
    gc_stale: float = 600.0  # a STALE entry unused this long is removed


@dataclass(slots=True)
class NeighborEntry:
    """One neighbor. Mutated only by NeighborCache."""

    ifindex: int
    addr: bytes
    mac: bytes | None
    state: NeighborState
    updated: float  # when the state, the address or the reachability confirmation last changed
    probes: int = 0  # solicitations sent in the current INCOMPLETE / PROBE round
    is_router: bool = False
    queue: deque[bytes] = field(default_factory=deque)
    expires: float = math.inf  # when the state's timer fires (see TIMER_EVENTS)
    permanent: bool = False  # static entry: never changes, never expires, never evicted


Key = tuple[int, bytes]
INCOMPLETE = NeighborState.INCOMPLETE


class NeighborCache:
    """The neighbor cache: RFC 4861 states for ARP and ND entries alike."""

    def __init__(self, timers: NeighborTimers | None = None, rng: random.Random | None = None):
        self.timers = timers if timers is not None else NeighborTimers()
        self.rng = rng if rng is not None else random.Random()
        self.generation = 0
        self._entries: dict[Key, NeighborEntry] = {}
        self._next_deadline = math.inf  # no timer fires before this
        self._reachable_base = self.timers.reachable_time
        self._reachable_time = self._draw_reachable_time()
        self._redraw_at: float | None = None

    # --- reachable time (RFC 4861 §6.3.2) -----------------------------------------------

    def _draw_reachable_time(self) -> float:
        factor = self.rng.uniform(MIN_RANDOM_FACTOR, MAX_RANDOM_FACTOR)
        return self._reachable_base * factor

    @property
    def reachable_time(self) -> float:
        """The current ReachableTime: BaseReachableTime x uniform(0.5, 1.5), drawn when the
        base changes and every few hours."""
        if self.timers.reachable_time != self._reachable_base:
            self._reachable_base = self.timers.reachable_time
            self._reachable_time = self._draw_reachable_time()
        return self._reachable_time

    # --- queries ------------------------------------------------------------------------

    def lookup(self, ifindex: int, addr: bytes) -> NeighborEntry | None:
        return self._entries.get((ifindex, addr))

    def entries(self) -> Iterator[NeighborEntry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    # --- inputs -------------------------------------------------------------------------

    def resolve(
        self, ifindex: int, addr: bytes, packet: bytes, now: float
    ) -> tuple[bytes | None, list[NeighborEvent]]:
        """The MAC to send `packet` to now, or None with the packet queued on the entry."""
        key = (ifindex, addr)
        entry = self._entries.get(key)
        if entry is not None:
            if entry.permanent:
                return entry.mac, []
            if entry.state is NeighborState.REACHABLE and entry.expires > now:
                # The table's (REACHABLE, PACKET_TO_SEND) row, SEND_PACKET and no change,
                # answered without the lookup: this is the per-packet common case.
                return entry.mac, []
        elif len(addr) not in (4, 16):
            raise ValueError(f"neighbor address must be 4 or 16 bytes, not {len(addr)}")
        events: list[NeighborEvent] = []
        entry = self._run_timers(key, entry, now, events)
        mac = self._step(key, entry, Event.PACKET_TO_SEND, now, events, packet=packet)
        return mac, events

    def received_advert(
        self,
        ifindex: int,
        addr: bytes,
        mac: bytes | None,
        *,
        solicited: bool,
        override: bool,
        is_router: bool,
        now: float,
    ) -> list[NeighborEvent]:
        """A Neighbor Advertisement (or ARP reply) for `addr`; `mac` is its target
        link-layer address, None when the option is absent (RFC 4861 §7.2.5)."""
        key = (ifindex, addr)
        entry = self._entries.get(key)
        if entry is not None and entry.permanent:
            return []
        events: list[NeighborEvent] = []
        entry = self._run_timers(key, entry, now, events)
        if mac is None:
            lladdr = "NONE"
        elif entry is not None and entry.mac == mac:
            lladdr = "SAME"
        else:
            lladdr = "DIFF"
        event = advert_event(solicited, override, lladdr)
        self._step(key, entry, event, now, events, mac=mac, is_router=is_router)
        return events

    def received_solicit_or_request(
        self, ifindex: int, addr: bytes, mac: bytes | None, now: float
    ) -> list[NeighborEvent]:
        """An NS / RS / Redirect / ARP request whose sender is `addr` with link-layer
        address `mac` (RFC 4861 §7.2.3): creates or updates the entry as STALE. A message
        without a link-layer address (mac None) changes nothing."""
        key = (ifindex, addr)
        entry = self._entries.get(key)
        if mac is None or (entry is not None and entry.permanent):
            return []
        if entry is None and len(addr) not in (4, 16):
            raise ValueError(f"neighbor address must be 4 or 16 bytes, not {len(addr)}")
        events: list[NeighborEvent] = []
        entry = self._run_timers(key, entry, now, events)
        same = entry is not None and entry.mac == mac
        event = Event.SOLICIT_SAME if same else Event.SOLICIT_DIFF
        self._step(key, entry, event, now, events, mac=mac)
        return events

    def note_sent(self, ifindex: int, addr: bytes, now: float) -> list[NeighborEvent]:
        """A packet was sent to `addr` with its cached address by someone else (the fast
        path): the table's PACKET_TO_SEND for an entry that has an address, so STALE moves to
        DELAY and the delay timer starts (RFC 4861 §7.3.3). Nothing happens for a missing,
        INCOMPLETE or permanent entry: no packet is queued and no entry is created."""
        key = (ifindex, addr)
        entry = self._entries.get(key)
        if entry is None or entry.permanent or entry.mac is None:
            return []
        events: list[NeighborEvent] = []
        entry = self._run_timers(key, entry, now, events)
        if entry is not None and entry.state is not INCOMPLETE:
            self._step(key, entry, Event.PACKET_TO_SEND, now, events)
        return events

    def confirm_reachable(self, ifindex: int, addr: bytes, now: float) -> None:
        """Upper-layer reachability confirmation (RFC 4861 §7.3.1), e.g. TCP progress."""
        key = (ifindex, addr)
        entry = self._entries.get(key)
        if entry is None or entry.permanent:
            return
        # Timers are not run first: whatever was pending, the neighbor is now known reachable.
        self._step(key, entry, Event.UPPER_LAYER_CONFIRM, now, [])

    def tick(self, now: float) -> list[NeighborEvent]:
        """Fire due timers: retransmissions, DELAY -> PROBE, failures, REACHABLE -> STALE,
        garbage collection of old STALE entries."""
        if self._redraw_at is None:
            self._redraw_at = now + REACHABLE_TIME_REDRAW
        elif now >= self._redraw_at:
            self._redraw_at = now + REACHABLE_TIME_REDRAW
            self._reachable_base = self.timers.reachable_time
            self._reachable_time = self._draw_reachable_time()
        events: list[NeighborEvent] = []
        if now < self._next_deadline:
            return events
        self._next_deadline = math.inf
        for key, entry in list(self._entries.items()):
            if entry.expires <= now:
                survivor = self._run_timers(key, entry, now, events)
                if survivor is not None:
                    self._note_deadline(survivor.expires)
            else:
                self._note_deadline(entry.expires)
        return events

    # --- administration -----------------------------------------------------------------

    def add_static(self, ifindex: int, addr: bytes, mac: bytes, now: float) -> list[NeighborEvent]:
        """A permanent entry (`arp -s`, `ip neigh add ... nud permanent`). Packets queued on an
        INCOMPLETE entry it replaces are released to `mac`."""
        if len(addr) not in (4, 16):
            raise ValueError(f"neighbor address must be 4 or 16 bytes, not {len(addr)}")
        key = (ifindex, addr)
        old = self._entries.get(key)
        events: list[NeighborEvent] = []
        if old is not None and old.queue:
            events.append(Release(ifindex, addr, mac, list(old.queue)))
        self._entries[key] = NeighborEntry(
            ifindex, addr, mac, NeighborState.REACHABLE, now, permanent=True
        )
        self.generation += 1
        return events

    def delete(self, ifindex: int, addr: bytes) -> NeighborEntry | None:
        """Remove an entry (static or not); its queued packets are dropped."""
        entry = self._entries.pop((ifindex, addr), None)
        if entry is not None:
            self.generation += 1
        return entry

    def flush(self, ifindex: int | None = None, *, include_static: bool = False) -> None:
        """Forget the dynamic entries (of one interface); queued packets are dropped."""
        doomed = [
            key
            for key, entry in self._entries.items()
            if (ifindex is None or key[0] == ifindex) and (include_static or not entry.permanent)
        ]
        for key in doomed:
            del self._entries[key]
        if doomed:
            self.generation += 1

    # --- the machine --------------------------------------------------------------------

    @property
    def next_deadline(self) -> float:
        """When `tick` next has a timer to fire (math.inf: none, e.g. only REACHABLE-forever
        static entries); `tick` may be called sooner, never needs to be called later."""
        return min(self._next_deadline, math.inf if self._redraw_at is None else self._redraw_at)

    def _note_deadline(self, when: float) -> None:
        if when < self._next_deadline:
            self._next_deadline = when

    def _timer_event(self, entry: NeighborEntry) -> Event:
        state = entry.state
        if state is NeighborState.INCOMPLETE:
            limit = self.timers.max_multicast_solicit
        elif state is NeighborState.PROBE:
            limit = self.timers.max_unicast_solicit
        else:
            return TIMER_EVENTS[state][0]
        return Event.RETRANS_TIMEOUT if entry.probes < limit else Event.RETRANS_EXHAUSTED

    def _run_timers(
        self, key: Key, entry: NeighborEntry | None, now: float, events: list[NeighborEvent]
    ) -> NeighborEntry | None:
        """Fire every timer of `entry` that is due by `now`; returns the entry, or None if it
        was discarded. Each firing either moves the deadline past `now` or walks towards
        discarding the entry (probe counts only grow), so the loop ends."""
        while entry is not None and not entry.permanent and entry.expires <= now:
            self._step(key, entry, self._timer_event(entry), now, events)
            entry = self._entries.get(key)
        return entry

    def _step(
        self,
        key: Key,
        entry: NeighborEntry | None,
        event: Event,
        now: float,
        events: list[NeighborEvent],
        *,
        mac: bytes | None = None,
        is_router: bool | None = None,
        packet: bytes | None = None,
    ) -> bytes | None:
        """Apply the table's transition for `event`; returns the MAC to send to when the
        actions include SEND_PACKET."""
        move = transition(entry.state if entry is not None else None, event)
        actions = move.actions
        ifindex, addr = key
        if move.new_state is None:
            if entry is not None:
                del self._entries[key]
                self.generation += 1
                if Action.FAIL_QUEUED in actions:
                    events.append(ResolutionFailed(ifindex, addr, list(entry.queue)))
            return None
        if entry is None:
            self._make_room(now, events)
            entry = NeighborEntry(ifindex, addr, None, move.new_state, now)
            self._entries[key] = entry
            self.generation += 1
        elif entry.state is not move.new_state:
            entry.state = move.new_state
            entry.probes = 0
            entry.updated = now
            self.generation += 1

        if Action.RECORD_LLADDR in actions and entry.mac != mac:
            entry.mac = mac
            entry.updated = now
            self.generation += 1
        if Action.UPDATE_IS_ROUTER in actions and is_router is not None:
            entry.is_router = is_router
        if Action.QUEUE_PACKET in actions and packet is not None:
            if len(entry.queue) >= max(1, self.timers.queue_len):
                events.append(QueueOverflow(ifindex, addr, entry.queue.popleft()))
            entry.queue.append(packet)
        released = False
        if Action.RELEASE_QUEUED in actions and entry.queue and entry.mac is not None:
            events.append(Release(ifindex, addr, entry.mac, list(entry.queue)))
            entry.queue.clear()
            released = True
        if Action.SEND_MULTICAST_SOLICIT in actions:
            entry.probes += 1
            events.append(Solicit(ifindex, addr, None))
        if Action.SEND_UNICAST_SOLICIT in actions:
            entry.probes += 1
            events.append(Solicit(ifindex, addr, entry.mac))

        timers = self.timers
        if Action.START_RETRANS_TIMER in actions:
            entry.expires = now + timers.retrans_timer
        elif Action.START_DELAY_TIMER in actions:
            entry.expires = now + timers.delay_first_probe
        elif Action.START_REACHABLE_TIMER in actions:
            entry.expires = now + self.reachable_time
            entry.updated = now
        elif Action.START_GC_TIMER in actions:
            entry.expires = now + timers.gc_stale
        self._note_deadline(entry.expires)

        if released and entry.state is NeighborState.STALE:
            # The released packets were just sent to a STALE neighbor: that is a "packet to
            # send" in STALE (RFC 4861 §7.3.3), which starts the delay timer.
            self._step(key, entry, Event.PACKET_TO_SEND, now, events)
        return entry.mac if Action.SEND_PACKET in actions else None

    def _make_room(self, now: float, events: list[NeighborEvent]) -> None:
        """Evict entries when the table is full: STALE first, then the other resolved
        entries, each group oldest first. INCOMPLETE entries (which always hold a waiting
        packet) go only when nothing else can, one at a time, their packets returned in
        ResolutionFailed."""
        limit = max(1, self.timers.max_entries)
        if len(self._entries) < limit:
            return
        want = len(self._entries) - limit + 1
        batch = max(want, limit // 16)  # free a little more so the next few creations are cheap

        def rank(item: tuple[Key, NeighborEntry]) -> tuple[int, float]:
            state = item[1].state
            group = 0 if state is NeighborState.STALE else 2 if state is INCOMPLETE else 1
            return group, item[1].updated

        candidates = [item for item in self._entries.items() if not item[1].permanent]
        for evicted, item in enumerate(heapq.nsmallest(batch, candidates, key=rank)):
            if item[1].state is INCOMPLETE and evicted >= want:
                break
            self._step(item[0], item[1], Event.EVICT, now, events)
