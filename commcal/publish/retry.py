"""How long a transient failure waits before its next attempt.

Exponential backoff with *equal* jitter (AWS Architecture Blog, "Exponential Backoff And
Jitter"): the wait is drawn uniformly from [ceiling / 2, ceiling], where the ceiling starts at
`publish.retry_delay` for the first retry, doubles with each attempt, and stops at
MAX_RETRY_DELAY (or at `retry_delay` itself when that is set longer). Deliveries that failed
together (a channel's outage) spread out over the upper half instead of retrying in lock-step,
and no wait grows without bound. A server's Retry-After (HTTP 429/503) is a floor: never retry
sooner than it asks.

Why equal rather than full jitter ([0, ceiling]): the floor of half the ceiling is a promise a
user can reason with. A send that may have arrived is retried only while the network still
remembers its idempotency key (Mastodon: one hour); with `retry_delay: 3h` equal jitter never
retries inside that hour, so such a send is always left `unknown` for a person, whereas full
jitter would sometimes retry it after a few minutes and sometimes not: the same failure would
end in different states from run to run.

Whether a run waits for the retry itself or leaves the delivery `pending` for a later run is
decided by the ceiling, not by the draw (`publisher.MAX_INLINE_WAIT`): with a `retry_delay` of
10m a run never sits out a short draw, it leaves the retry to the next run, as it always did;
the draw only spreads when that retry comes due.
"""

from __future__ import annotations

import math
import random

# The longest ceiling the doubling reaches: one hour. With the default retry_delay (30s) it is
# reached at the 8th attempt; max_attempts (5 by default, at most 100) bounds the retries.
MAX_RETRY_DELAY = 3600.0
# The longest Retry-After taken as asked: 30 days. A server may ask for any delta-seconds
# (RFC 9110 10.2.3: 99999999999 is past the year 9999, where no datetime goes) or send what
# float() reads as inf; past this, a delivery is long beyond its max_late anyway.
MAX_RETRY_AFTER = 30 * 86400.0


def ceiling(attempt: int, base: float) -> float:
    """The longest wait after failed attempt number `attempt` (1 for the first)."""
    doublings = min(max(0, attempt - 1), 64)  # 2**64 * any base is past the cap already
    return min(max(MAX_RETRY_DELAY, base), base * 2.0**doublings)


def backoff(
    attempt: int,
    retry_after: float | None,
    base: float,
    *,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 for the first)."""
    top = ceiling(attempt, base)
    delay = (rng or random).uniform(top / 2, top)
    if retry_after is None or math.isnan(retry_after):
        return delay
    return max(delay, min(retry_after, MAX_RETRY_AFTER))
