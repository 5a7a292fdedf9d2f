"""Token bucket for ICMP error rate limiting (RFC 1812 §4.3.2.8, RFC 4443 §2.4 (f)).

Sans-IO: the caller passes ``now`` (monotonic seconds); nothing here reads a clock.

Semantics follow the BSD knobs ``net.inet.icmp.icmplim`` and ``net.inet6.icmp6.errppslimit``:
the rate is the number of errors allowed per second, and **0 disables limiting** (every
``allow`` returns True). BSD counts errors per one-second window (``ppsratecheck``); a token
bucket with ``burst`` equal to the rate allows the same number per second on average while
not letting two full windows back to back double the burst at a boundary.

- The bucket starts full (``burst`` tokens).
- Tokens refill continuously at ``rate_per_s`` up to ``burst``.
- ``allow(now)`` takes one token if there is one and says whether the error may be sent.
- A clock that goes backwards refills nothing (the bucket never gains from a bad clock).
- ``set_rate`` changes the rate (a sysctl write) keeping the tokens already earned, capped at
  the new burst; going from unlimited (0) to a limit starts with a full bucket.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """At most ``burst`` at once and ``rate_per_s`` per second on average; 0 = no limit."""

    __slots__ = ("_last", "_tokens", "burst", "denied", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        """``burst`` defaults to one second's worth of tokens (at least 1)."""
        self.rate_per_s = 0.0
        self.burst = 0.0
        self._tokens = 0.0
        self._last: float | None = None
        self.denied = 0
        """How many ``allow`` calls returned False (the router also counts them in Stats)."""
        self.set_rate(rate_per_s, burst)
        self._tokens = self.burst

    @property
    def unlimited(self) -> bool:
        return self.rate_per_s == 0

    def set_rate(self, rate_per_s: float, burst: float | None = None) -> None:
        """Change the rate (0 = unlimited) and burst; earned tokens are kept up to the burst."""
        if rate_per_s < 0:
            raise ValueError(f"rate must be >= 0, got {rate_per_s}")
        if burst is None:
            burst = max(float(rate_per_s), 1.0)
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        was_unlimited = self.rate_per_s == 0
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        # Leaving "unlimited" starts full: nothing was spent while there was no limit.
        self._tokens = self.burst if was_unlimited else min(self._tokens, self.burst)

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (refills, does not take one)."""
        self._refill(now)
        return self._tokens

    def allow(self, now: float) -> bool:
        """True if one more error may be sent at ``now``; takes a token when it says yes."""
        if self.rate_per_s == 0:
            return True
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.denied += 1
        return False

    def _refill(self, now: float) -> None:
        last = self._last
        self._last = now if last is None or now > last else last
        if last is None or now <= last:
            return
        self._tokens = min(self.burst, self._tokens + (now - last) * self.rate_per_s)
