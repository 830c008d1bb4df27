"""The prediction log: every served prediction as one JSON line, written with BentoML's
inference-monitoring API (`bentoml.monitor`) on a background thread. Off unless
`CHURN_PREDICTION_LOG=DIR` is set (docs/monitoring.md).

Nothing of it runs on the event loop but a hand-over: an endpoint passes what it has already
built (its response objects, the feature matrix the model saw) and returns. One writer thread
turns what is queued into columns and logs them with `log_batch`, one column at a time, in one
`with bentoml.monitor(...)` block per write. The queue is bounded in rows: a hand-over that
does not fit is dropped, counted in `churn_prediction_log_dropped_total` and warned about once;
a request never waits for the log and never fails because of it.

Files (BentoML's default monitor): DIR/churn_predictions/data/data.<worker>.log, one JSON
object per prediction (`COLUMNS`, then BentoML's own `timestamp`, `request_id` and `trace_id`),
rotated daily, and the column list in DIR/churn_predictions/schema/schema.<worker>.log.
"""

import atexit
import contextvars
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd

from models.contract import DATE_COLUMN, ERROR_COLUMN, ID_COLUMN
from models.predictor import Scores
from models.schema import PredictRequest
from serving import metrics
from serving.responses import new_request_ids
from serving.schema import ServedBatchResponse, ServedPrediction
from serving.scoring import ThreadScorer

logger = logging.getLogger(__name__)

MONITOR_NAME = "churn_predictions"
# (name, BentoML role, BentoML data type) of each logged column, in file order. BentoML knows
# the roles feature, prediction and target and warns once per logged value for any other, so
# what is not a model input is logged as `prediction` (what, when, for whom and how it was
# scored). BentoML's default monitor overwrites `request_id` and `timestamp` with its own trace
# id and local time: hence `prediction_request_id` and `scored_at`.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("prediction_request_id", "prediction", "categorical"),
    ("endpoint", "prediction", "categorical"),
    ("batch_id", "prediction", "categorical"),
    ("customer_id", "prediction", "categorical"),
    ("model_version", "prediction", "categorical"),
    ("as_of", "prediction", "categorical"),
    ("age", "feature", "numerical"),
    ("income", "feature", "numerical"),
    ("purchase_history", "feature", "numerical"),
    ("last_purchase_date", "feature", "categorical"),
    ("days_since_purchase", "feature", "numerical"),
    ("churn_probability", "prediction", "numerical"),
    ("prediction", "prediction", "categorical"),
    ("confidence_level", "prediction", "categorical"),
    ("cached", "prediction", "categorical"),
    ("scored_at", "prediction", "categorical"),
)
NAMES = tuple(name for name, _, _ in COLUMNS)
# At most this many rows wait for the writer (~2 s of its work; a queued row holds its response
# object, ~1.5 kB); a hand-over that would pass it is dropped.
MAX_PENDING_ROWS = 20_000
# Queued hand-overs are written together, up to this many rows: a `with bentoml.monitor` block
# costs several times one row's write (0.3-0.7 ms against ~0.1 ms here). When fewer are queued
# the writer waits this long for more before writing: one block per request cost 40% of
# /predict's throughput in the serving benchmark, one per `LINGER_S` a fraction of that.
MAX_BLOCK_ROWS = 2_000
LINGER_S = 0.1
# On shutdown, how long the writer may take to write what is queued.
CLOSE_TIMEOUT_S = 10.0

Columns = dict[str, list[Any]]
Writer = Callable[[Columns], None]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _matrix_columns(matrix: np.ndarray) -> Columns:
    """The model's inputs, as it saw them (floats: `models.features.feature_matrix`)."""
    return {
        "age": matrix[:, 0].tolist(),
        "income": matrix[:, 1].tolist(),
        "purchase_history": matrix[:, 2].tolist(),
        "days_since_purchase": matrix[:, 3].tolist(),
    }


@dataclass(frozen=True, slots=True)
class _Served:
    """The predictions of /predict (one) or /predict/batch (its valid items)."""

    endpoint: str
    predictions: Sequence[ServedPrediction]
    requests: Sequence[PredictRequest]
    matrix: np.ndarray
    as_of: date
    batch_id: str | None

    @property
    def rows(self) -> int:
        return len(self.predictions)

    def columns(self) -> Columns:
        p, n = self.predictions, len(self.predictions)
        if len(self.requests) != n or len(self.matrix) != n:
            raise ValueError(f"{self.endpoint}: {n} predictions, {len(self.matrix)} scored rows")
        dates = (r.features.last_purchase_date for r in self.requests)
        return {
            "prediction_request_id": [x.request_id for x in p],
            "endpoint": [self.endpoint] * n,
            "batch_id": [self.batch_id] * n,
            "customer_id": [x.customer_id for x in p],
            "model_version": [x.model_version for x in p],
            "as_of": [self.as_of.isoformat()] * n,
            **_matrix_columns(self.matrix),
            "last_purchase_date": [None if d is None else d.isoformat() for d in dates],
            "churn_probability": [x.churn_probability for x in p],
            "prediction": [x.prediction for x in p],
            "confidence_level": [x.confidence_level for x in p],
            "cached": [x.cached for x in p],
            "scored_at": [_iso(x.timestamp) for x in p],
        }


@dataclass(frozen=True, slots=True)
class _Frame:
    """The valid rows of one /predict/dataframe request (its answer has no ids or times: the
    log makes a `prediction_request_id` per row and a `batch_id` per request)."""

    frame: pd.DataFrame
    out: pd.DataFrame
    matrix: np.ndarray
    cached: np.ndarray
    as_of: date
    model_version: str
    scored_at: datetime

    @property
    def rows(self) -> int:
        return len(self.matrix)

    def columns(self) -> Columns:
        valid = self.out[ERROR_COLUMN].isna().to_numpy()
        n = int(valid.sum())
        if n != len(self.matrix) or len(self.cached) != n:
            raise ValueError(f"dataframe: {n} valid rows, {len(self.matrix)} scored rows")
        ok = self.out[valid]
        # The date is what the model used where the row has one; else its days were used.
        if DATE_COLUMN in self.frame.columns:
            dated = self.frame[DATE_COLUMN].notna().to_numpy()[valid]
        else:
            dated = np.zeros(n, bool)
        day = self.as_of.toordinal()
        days = self.matrix[:, 3].tolist()
        return {
            "prediction_request_id": new_request_ids(n),
            "endpoint": ["dataframe"] * n,
            "batch_id": [str(uuid.uuid4())] * n,
            "customer_id": ok[ID_COLUMN].tolist(),
            "model_version": [self.model_version] * n,
            "as_of": [self.as_of.isoformat()] * n,
            **_matrix_columns(self.matrix),
            "last_purchase_date": [
                date.fromordinal(day - int(d)).isoformat() if has else None
                for d, has in zip(days, dated.tolist(), strict=True)
            ],
            "churn_probability": ok["churn_probability"].tolist(),
            "prediction": ok["prediction"].to_numpy(np.int64).tolist(),
            "confidence_level": ok["confidence_level"].tolist(),
            "cached": self.cached.tolist(),
            "scored_at": [_iso(self.scored_at)] * n,
        }


class MatrixTap:
    """A `ThreadScorer` that keeps the matrix it was last asked to score: handed to
    `models.predict.score_requests` / `score_frame` in its place, it gives the log the very
    features the model saw without building them a second time."""

    def __init__(self, inner: ThreadScorer) -> None:
        self.inner = inner
        self.matrix = np.empty((0, 4), np.float64)

    def score(self, matrix: np.ndarray) -> Scores:
        self.matrix = matrix
        return self.inner.score(matrix)

    @property
    def as_of(self) -> date:
        return self.inner.as_of

    @property
    def cached(self) -> np.ndarray:
        return self.inner.cached

    @property
    def model_version(self) -> str:
        return self.inner.scorer.predictor.tag


class MonitorWriter:
    """Writes columns with `bentoml.monitor` into `directory` (BentoML's default monitor).

    BentoML keeps one monitor per name and process, so a process logs into one directory."""

    def __init__(self, directory: Path) -> None:
        self.options = {"log_path": str(directory)}
        self._schema_written = False

    def __call__(self, columns: Columns) -> None:
        if not self._schema_written:
            # BentoML 1.4.40 takes the column schema from the first block written, and until
            # then warns "Column name ... is duplicated" for every value but the first of each
            # `log_batch`: the first block is one row.
            self._schema_written = True
            self._block({k: v[:1] for k, v in columns.items()})
            columns = {k: v[1:] for k, v in columns.items()}
            if not columns[NAMES[0]]:
                return
        self._block(columns)

    def _block(self, columns: Columns) -> None:
        # BentoML holds a block's state in context variables and does not reset them when the
        # block fails: a fresh copy of the context per block keeps one failure from breaking
        # every block after it.
        contextvars.copy_context().run(self._write, columns)

    def _write(self, columns: Columns) -> None:
        with bentoml.monitor(MONITOR_NAME, monitor_options=self.options) as mon:
            for name, role, data_type in COLUMNS:
                mon.log_batch(columns[name], name=name, role=role, data_type=data_type)


class NoPredictionLog:
    """The log switched off: every hand-over is a no-op and the scorer is not wrapped."""

    enabled = False

    def tap(self, scorer: ThreadScorer) -> ThreadScorer | MatrixTap:
        return scorer

    def predict(
        self, response: ServedPrediction, request: PredictRequest, matrix: np.ndarray, as_of: date
    ) -> None:
        pass

    def batch(
        self, response: ServedBatchResponse, requests: Sequence[PredictRequest], scorer: Any
    ) -> None:
        pass

    def dataframe(self, frame: pd.DataFrame, out: pd.DataFrame, scorer: Any) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        pass


_STOP = object()


class PredictionLog(NoPredictionLog):
    """Queue + writer thread; `write` gets the columns of one or more hand-overs at a time."""

    enabled = True

    def __init__(
        self,
        write: Writer,
        max_pending_rows: int = MAX_PENDING_ROWS,
        max_block_rows: int = MAX_BLOCK_ROWS,
        linger_s: float = LINGER_S,
    ) -> None:
        self._write = write
        self.max_pending_rows = max_pending_rows
        self.max_block_rows = max_block_rows
        self.linger_s = linger_s
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # rows handed over and not yet written (or given up)
        self.written = 0
        self.dropped = 0
        self._warned = False
        self._closed = False
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

    # Hand-overs: called by the endpoints; they never block and never raise.

    def tap(self, scorer: ThreadScorer) -> MatrixTap:
        return MatrixTap(scorer)

    def predict(
        self, response: ServedPrediction, request: PredictRequest, matrix: np.ndarray, as_of: date
    ) -> None:
        self._hand_over(_Served("predict", (response,), (request,), matrix, as_of, None))

    def batch(
        self, response: ServedBatchResponse, requests: Sequence[PredictRequest], scorer: Any
    ) -> None:
        """`requests`: the valid items, in the order of `response.predictions`; `scorer`: the
        `MatrixTap` they were scored with."""
        item = _Served(
            "batch", response.predictions, requests, scorer.matrix, scorer.as_of, response.batch_id
        )
        self._hand_over(item)

    def dataframe(self, frame: pd.DataFrame, out: pd.DataFrame, scorer: Any) -> None:
        """`out`: the answer to `frame`; `scorer`: the `MatrixTap` its valid rows went through."""
        m = scorer.matrix
        item = _Frame(
            frame, out, m, scorer.cached, scorer.as_of, scorer.model_version, datetime.now(UTC)
        )
        self._hand_over(item)

    def _hand_over(self, item: _Served | _Frame) -> None:
        rows = item.rows
        if not rows:
            return
        with self._lock:
            accepted = not self._closed and self._pending + rows <= self.max_pending_rows
            if accepted:
                self._pending += rows
            else:
                self.dropped += rows
                first, self._warned = not self._warned, True
        if accepted:
            self._queue.put(item)
            return
        metrics.PREDICTION_LOG_DROPPED.inc(rows)
        if first:
            logger.warning(
                "prediction log: %s; dropping predictions (counted in "
                "churn_prediction_log_dropped_total, this warning is not repeated)",
                "closed" if self._closed else f"over {self.max_pending_rows} rows waiting",
            )

    # The writer thread.

    def _run(self) -> None:
        stop = False
        while not stop:
            items = [self._queue.get()]
            rows = self._take(items, getattr(items[0], "rows", 0))
            if rows < self.max_block_rows and _STOP not in items and self.linger_s > 0:
                time.sleep(self.linger_s)  # let more arrive: one block for all of them
                rows = self._take(items, rows)
            stop = _STOP in items
            work = [item for item in items if item is not _STOP]
            if work:
                self._write_items(work, rows)

    def _take(self, items: list[Any], rows: int) -> int:
        """Append what is queued to `items` up to `max_block_rows` (or `_STOP`); the rows."""
        while rows < self.max_block_rows and _STOP not in items[-1:]:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
            rows += getattr(items[-1], "rows", 0)
        return rows

    def _write_items(self, items: list[Any], rows: int) -> None:
        written = 0
        try:
            parts = []
            for item in items:
                try:
                    parts.append(item.columns())
                except Exception:  # a bug in one hand-over must not lose the others
                    logger.exception("prediction log: cannot read a hand-over; skipped")
            if parts:
                merged = {name: [v for part in parts for v in part[name]] for name in NAMES}
                self._write(merged)
                written = len(merged[NAMES[0]])
        except Exception:
            logger.exception("prediction log: writing %d rows failed; they are dropped", rows)
        finally:
            if rows - written:
                metrics.PREDICTION_LOG_DROPPED.inc(rows - written)
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
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._lock:
                left = self._pending
            metrics.PREDICTION_LOG_DROPPED.inc(left)
            logger.warning("prediction log: %d rows not written within %.0f s", left, timeout)
