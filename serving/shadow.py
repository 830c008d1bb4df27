"""The shadow runner: a bounded queue and one thread that score served requests with both the
served and the candidate model, off the request path, and keep the comparison (serving/rollout.py).

A request is put on the queue once its answer is built; a full queue drops the shadow scoring
(counted), never the answer. A candidate that raises or returns something that is not a
probability per row is counted as an error; a slow one fills the queue. Either way the record
still reaches the prediction log, without the other model's score.
"""

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from prometheus_client import Counter, Histogram

from models.comparison import ComparisonState
from monitoring.log import NoPredictionLog
from monitoring.records import Served, Shadow

logger = logging.getLogger(__name__)

PAIRS = Counter("churn_candidate_pairs", "Customers scored by both the served and candidate model")
DISAGREEMENTS = Counter(
    "churn_candidate_disagreements", "Pairs whose decisions differ at the served threshold"
)
ABS_DELTA = Histogram(
    "churn_candidate_abs_delta",
    "|P(churn) of the candidate - P(churn) of the served model| per pair",
    buckets=[0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
)
ERRORS = Counter(
    "churn_candidate_errors",
    "Requests whose shadow scoring the candidate failed (it raised, or returned no probability)",
)
DROPPED = Counter(
    "churn_candidate_dropped", "Sampled requests not shadow-scored: the shadow queue was full"
)
CPU = Counter(
    "churn_candidate_cpu_seconds",
    "CPU time of the shadow thread's model calls, by model (served | candidate)",
    ["model"],
)
CALLS = Counter("churn_candidate_calls", "Shadow thread's model calls, by model", ["model"])
Probability = Callable[[np.ndarray], np.ndarray]
_STOP = object()
# Queued requests scored together, up to this many customers, gathered for this long after the
# first (see `ShadowRunner._gather`): the comparison lags the traffic by that much.
MAX_GROUP_ROWS = 512
LINGER_S = 0.05


class ShadowRunner:
    """The queue and thread that score handed-over requests with both models, off the request
    path. `served` and `candidate` are the models' P(churn) functions (a fake in unit tests)."""

    def __init__(
        self,
        served: tuple[str, Probability],
        candidate: tuple[str, Probability],
        log: NoPredictionLog,
        max_queued: int,
        threshold: float,
        linger_s: float = LINGER_S,
    ) -> None:
        (self.served_tag, self._served), (self.candidate_tag, self._candidate) = served, candidate
        self.log = log
        self.linger_s = linger_s
        self._queue: queue.Queue[Any] = queue.Queue(max_queued)
        self._lock = threading.Lock()
        self.state = ComparisonState(threshold)
        self.errors = self.dropped = 0
        self.cpu = {"served": 0.0, "candidate": 0.0}
        self.calls = {"served": 0, "candidate": 0}
        self.rows = {"served": 0, "candidate": 0}
        self._served_first = False
        self._thread = threading.Thread(target=self._run, name="shadow-scoring", daemon=True)
        self._thread.start()

    def submit(self, served: Served) -> None:
        """Queue one request for shadow scoring; never blocks. When the queue is full the
        record goes to the log as it is."""
        try:
            self._queue.put_nowait(served)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            DROPPED.inc()
            self.log.hand_over(served)

    def _run(self) -> None:
        stop = False
        while not stop:
            items = self._gather()
            stop = items[-1] is _STOP
            work = [item for item in items if item is not _STOP]
            try:
                for record in self._score(work) if work else []:
                    self.log.hand_over(record)
            except Exception:  # the served model failed here: the records are still logged
                logger.exception("shadow scoring failed")
                for item in work:
                    self.log.hand_over(item)
            finally:
                for _ in items:
                    self._queue.task_done()

    def _gather(self) -> list[Any]:
        """The next request and whatever else is queued `linger_s` later, up to
        `MAX_GROUP_ROWS` rows: under load one pair of model calls scores many requests, and
        the thread wakes and takes the interpreter from the event loop fewer times."""
        items = [self._queue.get()]
        rows = getattr(items[0], "rows", 0)
        if items[0] is not _STOP and self.linger_s:
            time.sleep(self.linger_s)  # the requests arriving meanwhile wake no one
        while items[-1] is not _STOP and rows < MAX_GROUP_ROWS:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
            rows += getattr(items[-1], "rows", 0)
        return items

    def _timed(self, model: str, fn: Probability, matrix: np.ndarray) -> np.ndarray:
        started = time.thread_time()
        try:
            p = np.asarray(fn(matrix), np.float64)
        finally:
            spent = time.thread_time() - started
            with self._lock:
                self.cpu[model] += spent
                self.calls[model] += 1
                self.rows[model] += len(matrix)
            CPU.labels(model).inc(spent)
            CALLS.labels(model).inc()
        if p.shape != (len(matrix),) or not np.all((p >= 0) & (p <= 1)):
            raise ValueError(f"{model} model returned {p.shape} values outside [0, 1]")
        return p

    def _score(self, items: list[Served]) -> list[Served]:
        """`items` with the other model's scores (`Shadow`), their pairs compared; as they
        are when the candidate fails."""
        matrix = np.vstack([item.predictions.matrix for item in items])
        answered = np.concatenate([item.predictions.scores.churn_probability for item in items])
        versions = [v for item in items for v in item.predictions.row_versions()]
        by_candidate = np.array([v == self.candidate_tag for v in versions], bool)
        # Which model runs first alternates, so neither always pays for a cold cache.
        self._served_first = first = not self._served_first
        served_p = self._timed("served", self._served, matrix) if first else None
        try:
            candidate_p = self._timed("candidate", self._candidate, matrix)
        except Exception:
            logger.warning("the candidate %s failed", self.candidate_tag, exc_info=True)
            with self._lock:
                self.errors += len(items)
            ERRORS.inc(len(items))
            return items
        if served_p is None:
            served_p = self._timed("served", self._served, matrix)
        # The answering model's side is the answer itself (cached or not, the same bits).
        served_side = np.where(by_candidate, served_p, answered)
        candidate_side = np.where(by_candidate, answered, candidate_p)
        with self._lock:
            self.state.add(served_side, candidate_side)
        delta = np.abs(served_side - candidate_side)
        PAIRS.inc(len(delta))
        t = self.state.threshold
        DISAGREEMENTS.inc(int(np.count_nonzero((served_side >= t) != (candidate_side >= t))))
        for d in delta.tolist():
            ABS_DELTA.observe(d)
        other = np.where(by_candidate, served_p, candidate_p)
        other_tags = [self.served_tag if c else self.candidate_tag for c in by_candidate.tolist()]
        out, start = [], 0
        for item in items:
            end = start + item.rows
            shadow = Shadow(other_tags[start:end], other[start:end])
            out.append(dataclasses.replace(item, shadow=shadow))
            start = end
        return out

    def join(self) -> None:
        """Wait until every queued request is scored (tests; shutdown uses `close`)."""
        self._queue.join()

    def close(self, timeout: float = 10.0) -> None:
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def report(self) -> dict[str, Any]:
        with self._lock:
            comparison = self.state.result()
            cpu, calls, rows = dict(self.cpu), dict(self.calls), dict(self.rows)
            errors, dropped = self.errors, self.dropped
        per_call = {m: cpu[m] / calls[m] if calls[m] else None for m in cpu}
        per_customer = {m: cpu[m] / rows[m] if rows[m] else None for m in cpu}
        ratio = None
        if per_call["served"] and per_call["candidate"] is not None:
            ratio = per_call["candidate"] / per_call["served"]
        return {
            "comparison": comparison,
            "candidate_errors": errors,
            "dropped": dropped,
            "cpu_seconds_per_call": per_call,
            "cpu_seconds_per_customer": per_customer,
            "calls": calls,
            "customers_scored": rows,
            "cpu_ratio": ratio,
        }
