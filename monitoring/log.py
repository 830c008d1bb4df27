"""The prediction log: every served prediction as one JSON line, written on a background thread.
Off unless `CHURN_PREDICTION_LOG=DIR` is set (docs/monitoring.md).

Nothing of it runs on the event loop but a hand-over: an endpoint passes what it already built
(`monitoring.records.Served`) and returns. One writer thread turns what is queued into columns
and writes them in one block (`monitoring.writer`). The queue is bounded in rows: a hand-over
that does not fit is dropped, counted in `churn_prediction_log_dropped_total` and warned about
once; a request never waits for the log and never fails because of it.
"""

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from monitoring.records import NAMES, Columns, Served
from monitoring.writer import MONITOR_NAME, MonitorWriter

logger = logging.getLogger(__name__)

DROPPED = Counter(
    "churn_prediction_log_dropped",
    "Served predictions not written to the prediction log (CHURN_PREDICTION_LOG): its queue "
    "was full, or the log was still writing when the service stopped",
)
# At most this many rows wait for the writer (~2 s of its work); a hand-over that would pass it
# is dropped.
MAX_PENDING_ROWS = 20_000
# Queued hand-overs are written together, up to this many rows: a `with bentoml.monitor` block
# costs several times one row's write, so one block per request would cost the service much of
# its throughput (benchmarks/README.md, "Prediction log"). With fewer queued, the writer waits
# up to `LINGER_S` for more, woken by each arrival.
MAX_BLOCK_ROWS = 2_000
LINGER_S = 0.1
# On shutdown, how long the writer may take to write what is queued.
CLOSE_TIMEOUT_S = 10.0

Writer = Callable[[Columns], None]
_STOP = object()


class NoPredictionLog:
    """The log switched off: every hand-over is a no-op."""

    enabled = False

    def hand_over(self, served: Served) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        pass


class PredictionLog(NoPredictionLog):
    """Queue + writer thread; `write` gets the columns of one or more hand-overs at a time."""

    enabled = True

    def __init__(
        self,
        write: Writer,
        max_pending_rows: int = MAX_PENDING_ROWS,
        max_block_rows: int = MAX_BLOCK_ROWS,
        linger_s: float = LINGER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self.max_pending_rows = max_pending_rows
        self.max_block_rows = max_block_rows
        self.linger_s = linger_s
        self.clock = clock
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # rows handed over and not yet written (or given up)
        self.written = 0
        self.dropped = 0
        self._warned = False
        self.closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # in-process use (no shutdown hook): write what is queued

    @classmethod
    def open(cls, directory: Path | None) -> NoPredictionLog:
        """The log into `directory` (created now, so a bad path fails the start), or none."""
        if directory is None:
            return NoPredictionLog()
        directory.mkdir(parents=True, exist_ok=True)
        logger.info("prediction log on: %s", directory / MONITOR_NAME)
        return cls(MonitorWriter(directory))

    def hand_over(self, served: Served) -> None:
        """Queue what one request served; never blocks and never raises."""
        rows = served.rows
        if not rows:
            return
        with self._lock:
            accepted = not self.closed and self._pending + rows <= self.max_pending_rows
            if accepted:
                self._pending += rows
            else:
                self.dropped += rows
                first, self._warned = not self._warned, True
        if accepted:
            self._queue.put(served)
            return
        DROPPED.inc(rows)
        if first:
            logger.warning(
                "prediction log: %s; dropping predictions (counted in "
                "churn_prediction_log_dropped_total, this warning is not repeated)",
                "closed" if self.closed else f"over {self.max_pending_rows} rows waiting",
            )

    # The writer thread.

    def _run(self) -> None:
        stop = False
        while not stop:
            items = self._gather()
            stop = _STOP in items
            work = [item for item in items if item is not _STOP]
            if work:
                self._write_items(work)

    def _gather(self) -> list[Any]:
        """The next hand-overs to write: up to `max_block_rows` rows, or what arrived within
        `linger_s` of the first (each arrival wakes the wait), or everything before a stop."""
        items = [self._queue.get()]
        rows = getattr(items[0], "rows", 0)
        deadline = self.clock() + self.linger_s
        while rows < self.max_block_rows and items[-1] is not _STOP:
            left = deadline - self.clock()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            items.append(item)
            rows += getattr(item, "rows", 0)
        return items

    def _write_items(self, items: list[Served]) -> None:
        rows = sum(item.rows for item in items)
        written = 0
        try:
            parts = []
            for item in items:
                try:
                    parts.append(item.columns())
                except ValueError:  # a hand-over that does not add up must not lose the others
                    logger.exception("prediction log: cannot read a hand-over; skipped")
            if parts:
                merged = {name: [v for part in parts for v in part[name]] for name in NAMES}
                self._write(merged)
                written = len(merged[NAMES[0]])
        except Exception:  # whatever BentoML's monitor raises: counted, and the writer goes on
            logger.exception("prediction log: writing %d rows failed; they are dropped", rows)
        finally:
            if rows - written:
                DROPPED.inc(rows - written)
            with self._lock:
                self.written += written
                self.dropped += rows - written
                self._pending -= rows
                if not self._pending:
                    self._idle.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything handed over so far is written; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is queued (for up to `timeout` seconds) and stop the thread; later
        hand-overs are dropped. Called by the service's shutdown hook, and at exit."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        atexit.unregister(self.close)
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._lock:
                left = self._pending
            DROPPED.inc(left)
            logger.warning("prediction log: %d rows not written within %.0f s", left, timeout)
