"""Retry delays: exponential backoff with full jitter, never sooner than the service asked."""

from __future__ import annotations

import random


def retry_delay(
    attempt: int,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt + 1``.

    Full jitter (uniform in [0, min(cap, base * 2**(attempt-1))]) spreads a burst of failing
    commands over the window instead of having them hammer Batch again in lockstep.
    A ``Retry-After`` from the service is a floor, even above the cap.
    """
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    delay = (rng or random).uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
