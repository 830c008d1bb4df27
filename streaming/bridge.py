"""`python -m streaming.bridge` (`churn-stream`): customer events from Kafka, scored by the churn
bento in micro-batches, at least once.

One micro-batch at a time:
  1. poll until `max_batch` messages, or `max_wait_ms` after the first one;
  2. decode and validate every message (`streaming.messages`);
  3. score all the valid ones in ONE call (`streaming.scorer`); when that fails, pause the
     partitions, keep polling (so the group keeps this member), back off and retry;
  4. produce a result or a dead letter per message, in offset order, and wait for every ack;
  5. only then commit offset + 1 per partition.
Dying anywhere before step 5 leaves the batch uncommitted, so it is redone: nothing is lost, and
duplicates (same `source` coordinates) are limited to that one batch.
"""

import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from models.predictor import load_predictor
from streaming.clients import ensure_topics, make_consumer, make_producer
from streaming.inflight import InFlight, Rebalance
from streaming.logs import configure, log
from streaming.messages import decode, error_record, latency_seconds, result_record
from streaming.metrics import BridgeMetrics, reason_label
from streaming.scorer import HttpScorer, InProcessScorer, Outcome, Scorer, ScoringUnavailableError
from streaming.settings import StreamSettings, load_settings

logger = logging.getLogger("streaming.bridge")
IDLE_POLL_MS = 500  # also bounds how long a stop request waits while the topic is idle
BACKOFF_POLL_S = 0.5  # poll() at least this often while backing off


class Bridge:
    def __init__(
        self,
        settings: StreamSettings,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        scorer: Scorer,
        metrics: BridgeMetrics,
    ) -> None:
        self.settings, self.consumer, self.producer = settings, consumer, producer
        self.scorer, self.metrics = scorer, metrics
        self.inflight = InFlight()
        self._as_of = settings.effective_as_of()  # fixed while a batch is in flight
        self._started = 0.0
        self._paused = False
        self._stop = threading.Event()
        self._totals = {"consumed": 0, "produced": 0, "dead_lettered": 0, "batches": 0}
        self._last_report = (time.monotonic(), 0)

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self._stop.set()

    def run(self) -> None:
        listener = Rebalance(self.consumer, self.inflight, self.metrics, lambda: self._paused)
        self.consumer.subscribe([self.settings.input_topic], listener=listener)
        shown = {"input_topic", "output_topic", "error_topic", "group", "max_batch", "max_wait_ms"}
        log(logger, logging.INFO, "bridge started", scorer=self.scorer.name,
            **self.settings.model_dump(include=shown))  # fmt: skip
        while not self._stop.is_set():
            self._collect()
            self._process()
            self._report()
        log(logger, logging.INFO, "bridge stopped", **self._totals)

    def close(self) -> None:
        """Leave the group; a stopped bridge never commits what it has not delivered."""
        try:
            self.producer.close(timeout=10)
        finally:
            self.consumer.close(autocommit=False)
            self.scorer.close()

    def _poll(self, timeout_ms: float) -> None:
        """The one place records enter: every record poll() returns joins the batch."""
        if not len(self.inflight):
            self._as_of = self.settings.effective_as_of()
        room = max(1, self.settings.max_batch - len(self.inflight))
        records = self.consumer.poll(timeout_ms=max(0, int(timeout_ms)), max_records=room)
        if not records:
            return
        if not len(self.inflight):
            self._started = time.monotonic()
        for tp, recs in records.items():
            self.inflight.extend(decode(r, self._as_of) for r in recs)
            self.metrics.consumed.labels(tp.topic, str(tp.partition)).inc(len(recs))
            self._totals["consumed"] += len(recs)

    def _collect(self) -> None:
        self._poll(IDLE_POLL_MS)
        deadline = time.monotonic() + self.settings.max_wait_ms / 1000
        while 0 < len(self.inflight) < self.settings.max_batch and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._poll(remaining * 1000)

    def _process(self) -> None:
        outcomes = self._score_with_retries()
        self._resume()
        if outcomes is not None and len(self.inflight):
            self._deliver(outcomes)

    def _score_with_retries(self) -> list[Outcome] | None:
        """Outcomes of the batch's valid messages; None when the batch is gone (all revoked, or a
        stop requested while the scorer is down: it stays uncommitted and is redone)."""
        backoff = self.settings.retry_backoff_ms / 1000
        while len(self.inflight):
            valid = [m for m in self.inflight.messages if m.request is not None]
            try:
                return self._score(valid)
            except ScoringUnavailableError as exc:
                self.metrics.service_errors.labels(exc.kind).inc()
                log(logger, logging.WARNING, "scoring failed; consumption paused, retrying",
                    error=str(exc), retry_in_s=backoff, batch=len(self.inflight))  # fmt: skip
            self._wait_paused(backoff)
            if self._stop.is_set():
                dropped = self.inflight.abandon()
                log(logger, logging.WARNING, "stopping; unscored batch left uncommitted",
                    batch=dropped)  # fmt: skip
                return None
            self.metrics.service_retries.inc()
            backoff = min(backoff * 2, self.settings.retry_max_backoff_ms / 1000)
        return None

    def _score(self, valid: list) -> list[Outcome]:
        if not valid:
            return []
        self.metrics.service_calls.inc()
        started = time.monotonic()
        outcomes = self.scorer.score(valid, self._as_of)
        self.metrics.service_seconds.observe(time.monotonic() - started)
        return outcomes

    def _wait_paused(self, seconds: float) -> None:
        """Back off without leaving the group: keep calling poll() with every partition paused."""
        self._paused = True
        self.metrics.paused.set(1)
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (remaining := deadline - time.monotonic()) > 0:
            self.consumer.pause(*self.consumer.assignment())
            self._poll(min(remaining, BACKOFF_POLL_S) * 1000)
            self._report()

    def _resume(self) -> None:
        if self._paused:
            self.consumer.resume(*self.consumer.paused())
            self._paused = False
            self.metrics.paused.set(0)

    def _deliver(self, outcomes: list[Outcome]) -> None:
        """Produce one record per message, in order; wait for every ack; then commit."""
        now, scored = datetime.now(UTC), iter(outcomes)
        futures, produced, dead = [], 0, []
        for msg in self.inflight.messages:
            outcome = next(scored) if msg.request is not None else None
            if isinstance(outcome, dict):
                key, value = result_record(msg, outcome, now)
                topic, produced = self.settings.output_topic, produced + 1
                self.metrics.end_to_end_seconds.observe(max(0.0, latency_seconds(msg, now)))
            else:
                problems = [outcome] if outcome is not None else msg.problems
                key, value = error_record(msg, problems, now, self.settings.max_error_payload_bytes)
                topic = self.settings.error_topic
                dead.append(reason_label(problems[0]))
            futures.append(self.producer.send(topic, key=key, value=value))
        self.producer.flush()
        for future in futures:
            future.get()  # raises if the broker refused a record: the batch stays uncommitted
        self.metrics.produced.inc(produced)
        for reason in dead:
            self.metrics.dead_lettered.labels(reason).inc()
        self._totals["produced"] += produced
        self._totals["dead_lettered"] += len(dead)
        self._commit()

    def _commit(self) -> None:
        size = len(self.inflight)
        offsets = self.inflight.take_offsets()
        try:
            self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except KafkaError as exc:
            # Everything is delivered, only the bookmark failed (a rebalance): keep it for the
            # next commit. A partition that moved meanwhile is redone by its new owner.
            self.metrics.commit_failures.inc()
            log(logger, logging.WARNING, "offset commit refused; will retry", error=repr(exc))
            self.inflight.commit_refused(offsets, self.consumer.assignment())
            return
        self.inflight.commit_done(offsets)
        self.metrics.commits.inc()
        self.metrics.batch_size.observe(size)
        self.metrics.batch_seconds.observe(time.monotonic() - self._started)
        self._totals["batches"] += 1

    def _report(self) -> None:
        """Every `stats_interval_s`: refresh the lag gauges and log the throughput."""
        now = time.monotonic()
        last_time, last_consumed = self._last_report
        if now - last_time < self.settings.stats_interval_s:
            return
        self._last_report = (now, self._totals["consumed"])
        committed = dict(self.inflight.committed)
        try:
            ends = self.consumer.end_offsets(list(committed), timeout_ms=5000) if committed else {}
        except KafkaError as exc:
            log(logger, logging.WARNING, "could not read end offsets", error=repr(exc))
            ends = {}
        lag = 0
        for tp, end in ends.items():
            behind = max(0, end - committed[tp])
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(behind)
            lag += behind
        rate = (self._totals["consumed"] - last_consumed) / (now - last_time)
        log(logger, logging.INFO, "throughput", consumed_per_s=round(rate, 1), lag=lag,
            paused=self._paused, **self._totals)  # fmt: skip


def build_scorer(settings: StreamSettings) -> Scorer:
    if settings.in_process:
        return InProcessScorer(load_predictor(settings.model_tag))
    return HttpScorer(settings.service_url, settings.service_timeout_s)


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(argv)
    configure(settings.log_level)
    scorer = build_scorer(settings)
    ensure_topics(settings, [settings.input_topic, settings.output_topic, settings.error_topic])
    metrics = BridgeMetrics()
    bridge = Bridge(settings, make_consumer(settings), make_producer(settings), scorer, metrics)
    signal.signal(signal.SIGTERM, bridge.stop)
    signal.signal(signal.SIGINT, bridge.stop)
    metrics.serve(settings.metrics_port)
    try:
        bridge.run()
    finally:
        bridge.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
