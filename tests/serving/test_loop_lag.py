"""The event-loop lag probe reports a blocked loop, and a free one as near zero."""

import asyncio
import time

import pytest

from serving import loop_lag, metrics


def lag_sum_and_count() -> tuple[float, float]:
    samples = {s.name: s.value for s in metrics.EVENT_LOOP_LAG.collect()[0].samples}
    return samples["churn_event_loop_lag_seconds_sum"], samples[
        "churn_event_loop_lag_seconds_count"
    ]


def test_a_blocked_loop_shows_as_lag():
    async def block_once() -> None:
        await asyncio.sleep(0.005)  # the probe is asleep now
        time.sleep(0.3)  # CPU work on the loop: the probe wakes up late

    async def main() -> None:
        await asyncio.gather(loop_lag.probe(interval=0.05, rounds=1), block_once())

    total, count = lag_sum_and_count()
    asyncio.run(main())
    new_total, new_count = lag_sum_and_count()
    assert new_count == count + 1
    assert new_total - total >= 0.2  # it slept 0.05 s and woke ~0.25 s late


def clock_reading(*readings: float):
    """A clock that gives these readings, in turn (the probe reads it before and after)."""
    values = iter(readings)
    return lambda: next(values)


def observed(*readings: float, interval: float = 0.1) -> float:
    """What one round of the probe adds to the lag's sum, on a clock with these readings."""
    total, count = lag_sum_and_count()
    asyncio.run(loop_lag.probe(interval=interval, rounds=1, clock=clock_reading(*readings)))
    new_total, new_count = lag_sum_and_count()
    assert new_count == count + 1
    return new_total - total


def test_the_lag_is_how_much_later_than_asked_the_timer_fired():
    assert observed(100.0, 100.35, interval=0.1) == pytest.approx(0.25)


def test_a_timer_on_time_is_no_lag_and_an_early_one_not_negative():
    assert observed(100.0, 100.1, interval=0.1) == pytest.approx(0.0, abs=1e-12)
    assert observed(100.0, 100.05, interval=0.1) == 0.0
