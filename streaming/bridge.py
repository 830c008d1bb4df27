"""`python -m streaming.bridge` (`churn-stream`): customer events from Kafka, scored by the churn
bento in micro-batches, at least once.

Each micro-batch:
  1. is collected until `max_batch` messages, or `max_wait_ms` after its first one;
  2. has every message decoded and validated (`streaming.messages`);
  3. has all its valid messages scored in ONE call (`streaming.scorer`), on a worker thread,
     while the previous batch is delivered and the next collected; if the call fails, the
     partitions are paused, poll() keeps the group membership, and the same messages are
     retried with backoff;
  4. gets one result or dead letter per message, produced in offset order, every ack awaited;
  5. only then has offset + 1 per partition committed.
Batches are delivered strictly one after the other. Dying anywhere before step 5 leaves a batch
uncommitted, so it is redone: nothing is lost, and duplicates (same `source` coordinates) are
limited to the one batch that was being delivered.

A service that cannot answer (connection refused, timeout, 5xx, 429) is waited for. A service
that refuses the bridge's requests (401/403: no or wrong `--service-token`; any other 4xx but
408 and 429) is a configuration or contract error that no retry would fix: the bridge logs the
status and the service's words once (ERROR), commits nothing of the batches in hand, closes its
clients (leaving the group) and exits with status 3.

Exit status: 0 stopped by SIGTERM/SIGINT (everything delivered is committed); 1 an unexpected
error (e.g. the broker refused a result after the producer's retries); 2 bad flags or
settings; 3 the service refused the bridge's requests (`EXIT_REFUSED`). Whatever the status,
nothing is committed that was not delivered.
"""

import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from datetime import UTC, date, datetime
from types import FrameType

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streaming.clients import ensure_topics, make_consumer, make_producer
from streaming.health import Health, service_probe, start_health_server
from streaming.inflight import Batch, InFlight, Rebalance
from streaming.logs import configure, log
from streaming.messages import (
    Message,
    decode_batch,
    error_record,
    latency_seconds,
    result_record,
)
from streaming.metrics import BridgeMetrics, dead_letter_labels, refresh_lag
from streaming.scorer import Scorer, ScoringRefusedError, ScoringUnavailableError, scorer_for
from streaming.settings import EXIT_REFUSED, StreamSettings, load_settings

logger = logging.getLogger("streaming.bridge")
IDLE_POLL_MS = 500  # also bounds how long a stop request waits while the topic is idle
SCORING_POLL_MS = 5  # poll slices while a batch is scored, to deliver it as soon as it is
BACKOFF_POLL_S = 0.5  # poll() at least this often while backing off
MAX_SUBMITTED = 2  # batches handed to the scorer and not yet delivered


class Bridge:
    def __init__(
        self,
        settings: StreamSettings,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        scorer: Scorer,
        metrics: BridgeMetrics,
        clock: Callable[[], float] = time.monotonic,
        health: Health | None = None,
    ) -> None:
        self.settings, self.consumer, self.producer = settings, consumer, producer
        self.scorer, self.metrics = scorer, metrics
        self._clock = clock  # monotonic seconds; tests step a fake one instead of sleeping
        self.health = health or Health(settings.live_timeout_s, clock)
        self.inflight = InFlight(clock)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
        self._paused = False
        # A plain flag, not a threading.Event: `stop` runs as a signal handler, and Event.set
        # takes a lock that a second signal (SIGTERM twice) would wait on forever, inside the
        # first handler's set(). Every wait in the loop is bounded, so polling the flag is enough.
        self._stopping = False
        self._totals = {"consumed": 0, "produced": 0, "dead_lettered": 0, "batches": 0}
        self._last_report = (self._clock(), 0)

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self._stopping = True

    def run(self) -> None:
        listener = Rebalance(self.consumer, self.inflight, self.metrics, lambda: self._paused)
        self.consumer.subscribe([self.settings.input_topic], listener=listener)
        shown = {"input_topic", "output_topic", "error_topic", "group", "max_batch", "max_wait_ms"}
        log(logger, logging.INFO, "bridge started", scorer=self.scorer.name,
            **self.settings.model_dump(include=shown))  # fmt: skip
        try:
            while not self._stopping:
                self._step()
                self._report()
            # Stop polling; finish what is in hand, in order.
            if self.inflight.collected():
                self._submit(self.inflight.promote())
            while (head := self.inflight.head()) is not None:
                self._finish(head)
        except ScoringRefusedError as exc:
            self._refused(exc)
            raise
        log(logger, logging.INFO, "bridge stopped", **self._totals)

    def _refused(self, exc: ScoringRefusedError) -> None:
        """The service refused a batch: say so once, and keep every batch in hand uncommitted
        (the next bridge, configured right, redoes them)."""
        self._stopping = True
        self.metrics.service_errors.labels(exc.kind).inc()
        dropped = self.inflight.abandon()
        log(logger, logging.ERROR, str(exc), status=exc.status, body=exc.body,
            request=exc.request, uncommitted=dropped)  # fmt: skip
        log(logger, logging.INFO, "bridge stopped", exit_code=EXIT_REFUSED, **self._totals)

    def close(self) -> None:
        """Leave the group; a stopped bridge never commits what it has not delivered."""
        try:
            # A batch queued behind a refused one is never scored.
            self._worker.shutdown(wait=True, cancel_futures=True)
            self.producer.close(timeout=10)
        finally:
            self.consumer.close(autocommit=False)
            self.scorer.close()

    def _step(self) -> None:
        """Move the pipeline on by one event: a batch scored, a batch ready, or new records."""
        head, collecting = self.inflight.head(), self.inflight.collecting
        if head is not None and head.future is not None and head.future.done():
            self._finish(head)
            return
        size, max_batch = self.inflight.collected(), self.settings.max_batch
        wait_s = IDLE_POLL_MS / 1000
        if collecting is not None:
            wait_s = collecting.started + self.settings.max_wait_ms / 1000 - self._clock()
        ready = size >= max_batch or (size > 0 and wait_s <= 0)
        if ready and len(self.inflight.pending) < MAX_SUBMITTED and not self._paused:
            # Queued behind the head's call: scored while the head is being delivered.
            self._submit(self.inflight.promote())
        elif head is not None and head.future is not None and ready:
            wait_for([head.future], timeout=BACKOFF_POLL_S)
        elif head is not None:
            self._poll(min(max(0.0, wait_s) * 1000, SCORING_POLL_MS))
        else:
            self._poll(max(0.0, wait_s) * 1000)

    def _poll(self, timeout_ms: float) -> None:
        """The one place records enter: every record poll() returns joins the collected batch."""
        room = max(1, self.settings.max_batch - self.inflight.collected())
        records = self.consumer.poll(timeout_ms=int(timeout_ms), max_records=room)
        self.health.polled(bool(self.consumer.assignment()))
        if not records:
            return
        collecting = self.inflight.collecting
        as_of = collecting.as_of if collecting else self.settings.as_of_or_today()
        for tp, recs in records.items():
            messages = decode_batch(recs, as_of, tp)
            self.inflight.add(messages, as_of)
            self.metrics.count_policy(messages)
            self.metrics.consumed.labels(tp.topic, str(tp.partition)).inc(len(recs))
            self._totals["consumed"] += len(recs)

    def _submit(self, batch: Batch) -> None:
        valid = [m for m in batch.messages if m.valid]
        batch.future = self._worker.submit(self._score, valid, batch.as_of)

    def _score(self, valid: list[Message], as_of: date) -> None:
        """On the worker thread: one call for the whole batch; outcomes land on the messages."""
        if not valid:
            return
        self.metrics.service_calls.inc()
        started = self._clock()
        try:
            outcomes = self.scorer.score(valid, as_of)
        except (ScoringUnavailableError, ScoringRefusedError):
            self.health.service_answered(False)
            raise
        self.health.service_answered(True)
        self.metrics.service_seconds.observe(self._clock() - started)
        for msg, outcome in zip(valid, outcomes, strict=True):
            msg.outcome = outcome

    def _finish(self, batch: Batch) -> None:
        """Wait for the batch's scores, retrying while the scorer is down, then deliver it.

        A `ScoringRefusedError` is not retried: it goes up to `run`, the batch undelivered."""
        backoff = self.settings.retry_backoff_ms / 1000
        while True:
            assert batch.future is not None
            try:
                batch.future.result()
                break
            except ScoringUnavailableError as exc:
                self.metrics.service_errors.labels(exc.kind).inc()
                log(logger, logging.WARNING, "scoring failed; consumption paused, retrying",
                    error=str(exc), retry_in_s=backoff, batch=len(batch.messages))  # fmt: skip
            self._wait_paused(backoff)
            if self._stopping:
                dropped = self.inflight.abandon()
                log(logger, logging.WARNING, "stopping; unscored messages left uncommitted",
                    messages=dropped)  # fmt: skip
                return
            self.metrics.service_retries.inc()
            backoff = min(backoff * 2, self.settings.retry_max_backoff_ms / 1000)
            self._submit(batch)  # what is left of it: a rebalance may have taken some
        self._resume()
        self._deliver(batch)

    def _wait_paused(self, seconds: float) -> None:
        """Back off without leaving the group: keep calling poll() with every partition paused."""
        self._paused = True
        self.metrics.paused.set(1)
        deadline = self._clock() + seconds
        while not self._stopping and (remaining := deadline - self._clock()) > 0:
            self.consumer.pause(*self.consumer.assignment())
            self._poll(min(remaining, BACKOFF_POLL_S) * 1000)
            self._report()

    def _resume(self) -> None:
        if self._paused:
            self.consumer.resume(*self.consumer.paused())
            self._paused = False
            self.metrics.paused.set(0)

    def _deliver(self, batch: Batch) -> None:
        """Produce one record per message, in order; wait for every ack; then commit."""
        now, futures, produced, dead = datetime.now(UTC), [], 0, []
        for msg in batch.messages:
            if msg.valid and msg.outcome is None:
                raise RuntimeError(f"unscored message at {msg.source()}")
            if isinstance(msg.outcome, dict):
                key, value = result_record(msg, msg.outcome, now)
                topic, produced = self.settings.output_topic, produced + 1
                self.metrics.end_to_end_seconds.observe(max(0.0, latency_seconds(msg, now)))
            else:
                problems = msg.problems if msg.outcome is None else [msg.outcome]
                key, value = error_record(msg, problems, now, self.settings.max_error_payload_bytes)
                topic = self.settings.error_topic
                dead.append(dead_letter_labels(problems[0]))
            futures.append(self.producer.send(topic, key=key, value=value))
        self.producer.flush()
        for future in futures:
            future.get()  # raises if the broker refused a record: the batch stays uncommitted
        self.metrics.produced.inc(produced)
        for labels in dead:
            self.metrics.dead_lettered.labels(*labels).inc()
        self._totals["produced"] += produced
        self._totals["dead_lettered"] += len(dead)
        self._commit(batch)

    def _commit(self, batch: Batch) -> None:
        offsets = self.inflight.delivered(batch)
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
        self.metrics.batch_size.observe(len(batch.messages))
        self.metrics.batch_seconds.observe(self._clock() - batch.started)
        self._totals["batches"] += 1

    def _report(self) -> None:
        """Every `stats_interval_s`: refresh the lag gauges and log the throughput."""
        now = self._clock()
        last_time, last_consumed = self._last_report
        if now - last_time < self.settings.stats_interval_s:
            return
        self._last_report = (now, self._totals["consumed"])
        lag = refresh_lag(self.metrics, self.consumer, dict(self.inflight.committed))
        rate = (self._totals["consumed"] - last_consumed) / (now - last_time)
        log(logger, logging.INFO, "throughput", consumed_per_s=round(rate, 1), lag=lag,
            paused=self._paused, **self._totals)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(argv)
    configure(settings.log_level)
    scorer = scorer_for(settings)
    ensure_topics(settings, [settings.input_topic, settings.output_topic, settings.error_topic])
    metrics = BridgeMetrics()
    probe = None if settings.in_process else service_probe(settings.service_url,
                                                           settings.service_token)  # fmt: skip
    health = Health(settings.live_timeout_s, service_probe=probe)
    bridge = Bridge(settings, make_consumer(settings), make_producer(settings), scorer, metrics,
                    health=health)  # fmt: skip
    signal.signal(signal.SIGTERM, bridge.stop)
    signal.signal(signal.SIGINT, bridge.stop)
    metrics.serve(settings.metrics_port)
    probes = start_health_server(health, settings.health_port) if settings.health_port else None
    try:
        bridge.run()
    except ScoringRefusedError:  # logged once by the bridge, the batches in hand uncommitted
        return EXIT_REFUSED
    finally:
        bridge.close()
        if probes is not None:
            probes.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
