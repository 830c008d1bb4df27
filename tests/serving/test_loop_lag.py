"""The event-loop lag probe reports a blocked loop, and a free one as near zero."""

import asyncio
import time

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


def test_a_free_loop_shows_little_lag():
    total, count = lag_sum_and_count()
    asyncio.run(loop_lag.probe(interval=0.01, rounds=5))
    new_total, new_count = lag_sum_and_count()
    assert new_count == count + 5
    assert new_total - total < 0.5  # five timers, none held up by this test
