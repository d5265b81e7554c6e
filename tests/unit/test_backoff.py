"""Retry delays (docs/design.md, "Guarantees"): exponential backoff, full jitter, Retry-After as a floor."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.backoff import retry_delay

BASE = 5.0
CAP = 900.0


def window(attempt: int, base: float = BASE, cap: float = CAP) -> float:
    return min(cap, base * 2.0 ** (attempt - 1))


@pytest.mark.parametrize("attempt", range(1, 13))
def test_each_attempt_waits_within_its_window(attempt: int) -> None:
    rng = random.Random(attempt)
    delays = [retry_delay(attempt, BASE, CAP, rng=rng) for _ in range(300)]
    assert all(0 <= delay <= window(attempt) for delay in delays)
    # The window doubles until the cap: the largest draw comes close to it.
    assert max(delays) >= 0.9 * window(attempt)


def test_the_window_doubles_then_stops_at_the_cap() -> None:
    expected = [5, 10, 20, 40, 80, 160, 320, 640, 900, 900, 900, 900]
    assert [window(n) for n in range(1, 13)] == expected
    for attempt, ceiling in enumerate(expected, start=1):
        rng = random.Random(0)
        assert max(retry_delay(attempt, BASE, CAP, rng=rng) for _ in range(500)) <= ceiling


def test_full_jitter_spreads_over_the_whole_window() -> None:
    rng = random.Random(20261124)
    ceiling = window(6)  # 160 s
    delays = [retry_delay(6, BASE, CAP, rng=rng) for _ in range(1000)]
    buckets = {int(delay // (ceiling / 10)) for delay in delays}
    assert buckets >= set(range(10)), "every tenth of the window is used"
    assert min(delays) < 0.05 * ceiling
    assert max(delays) > 0.95 * ceiling
    assert 0.4 * ceiling < sum(delays) / len(delays) < 0.6 * ceiling
    assert len(set(delays)) > 990, "no lockstep: draws differ"


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(1)
    delays = [retry_delay(1, BASE, CAP, retry_after=30.0, rng=rng) for _ in range(200)]
    assert all(delay >= 30.0 for delay in delays)


def test_retry_after_is_a_floor_even_above_the_cap() -> None:
    rng = random.Random(2)
    assert retry_delay(12, BASE, CAP, retry_after=3600.0, rng=rng) == 3600.0
    assert retry_delay(3, BASE, 10.0, retry_after=11.0, rng=rng) == 11.0


def test_a_retry_after_below_the_draw_changes_nothing() -> None:
    assert retry_delay(8, BASE, CAP, retry_after=0.0, rng=random.Random(3)) == retry_delay(
        8, BASE, CAP, rng=random.Random(3)
    )


def test_the_same_seed_gives_the_same_delay() -> None:
    assert retry_delay(4, BASE, CAP, rng=random.Random(9)) == retry_delay(4, BASE, CAP, rng=random.Random(9))


def test_without_an_rng_it_still_stays_in_the_window() -> None:
    assert all(0 <= retry_delay(3, BASE, CAP) <= 20 for _ in range(100))


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=100),
    base=st.floats(min_value=0.001, max_value=600),
    cap=st.floats(min_value=1, max_value=86_400),
    retry_after=st.none() | st.floats(min_value=0, max_value=100_000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_bounds_hold_for_any_settings(
    attempt: int, base: float, cap: float, retry_after: float | None, seed: int
) -> None:
    delay = retry_delay(attempt, base, cap, retry_after, random.Random(seed))
    ceiling = min(cap, base * 2 ** (attempt - 1))
    floor = retry_after or 0.0
    assert delay >= 0
    assert delay >= floor
    assert delay <= max(ceiling, floor)
