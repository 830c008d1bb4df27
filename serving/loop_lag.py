"""An event-loop lag probe: how late a timer fires tells how long the loop was blocked.

Every `INTERVAL_S` the probe sleeps and measures how much later than asked it woke up; the
excess goes to `churn_event_loop_lag_seconds`. A loop kept free answers within a millisecond or
two; a stall (CPU work on the loop, a long garbage collection) shows as a high bucket, which is
what an operator needs to see before it shows as a long p99.
"""

import asyncio
from collections.abc import Callable

from serving import metrics

INTERVAL_S = 0.1


async def probe(
    interval: float = INTERVAL_S,
    rounds: int | None = None,
    clock: Callable[[], float] | None = None,
) -> None:
    """Measure the lag every `interval` seconds, forever (or `rounds` times, for tests), on the
    loop's own clock unless given another."""
    now = clock or asyncio.get_running_loop().time
    done = 0
    while rounds is None or done < rounds:
        asked = now()
        await asyncio.sleep(interval)
        metrics.EVENT_LOOP_LAG.observe(max(0.0, now() - asked - interval))
        done += 1


_task: "asyncio.Task[None] | None" = None


def start() -> None:
    """Start this worker's probe once, on the running loop (called from the first request)."""
    global _task
    if _task is None:
        _task = asyncio.get_running_loop().create_task(probe())
