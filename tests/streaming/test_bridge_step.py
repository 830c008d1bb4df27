"""The Kafka bridge one `_step` at a time, without a broker or a service: a fake consumer, a fake
producer with acks under the test's control, a fake scorer and a fake clock (the bridge's
backoff waits on it, so nothing here waits on elapsed time).

At least once, as streaming/bridge.py promises: a batch's offsets are committed only after
every record produced for it is acknowledged; while the scorer is down the partitions are
paused, nothing is committed, and the same messages are scored again when it is back.
"""

from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from models.samples import AS_OF, event
from streaming.bridge import Bridge
from streaming.messages import Message
from streaming.metrics import BridgeMetrics
from streaming.scorer import ScoringUnavailableError
from streaming.settings import StreamSettings
from tests.streaming.fakes import FakeClock, FakeConsumer, FakeProducer, consumer_record

OUT, ERR = "predictions", "prediction-errors"
BACKOFF_MS = 200


class FakeScorer:
    """Answers every valid message with fixed scores; the next `down` calls fail like an
    outage (connection refused)."""

    name = "fake"

    def __init__(self) -> None:
        self.down = 0  # calls still to fail
        self.calls: list[list[int]] = []  # the offsets each call was given
        self.closed = False

    def score(self, messages: Sequence[Message], as_of: date) -> list[dict[str, Any]]:
        self.calls.append([m.offset for m in messages])
        if self.down:
            self.down -= 1
            raise ScoringUnavailableError("connect", "connection refused")
        return [
            {"customer_id": m.customer_id, "prediction": 0, "churn_probability": 0.25,
             "probability": 0.75, "confidence_level": "medium", "model_version": "fake:1"}
            for m in messages
        ]  # fmt: skip

    def close(self) -> None:
        self.closed = True


def batch(offsets: range, bad: int | None = None) -> list:
    """Records of events at `offsets`; the one at `bad` has an invalid age (a dead letter)."""
    return [
        consumer_record(event(i, age=-1) if i == bad else event(i), offset=i, key=b"in")
        for i in offsets
    ]


class Rig:
    """A bridge on fakes, all writing to one log."""

    def __init__(self, batches: list[list], scorer: FakeScorer, clock: FakeClock) -> None:
        self.log: list[tuple] = []
        self.consumer = FakeConsumer(batches, self.log, clock)
        self.producer = FakeProducer(self.log)
        self.scorer, self.metrics = scorer, BridgeMetrics()
        settings = StreamSettings(
            output_topic=OUT, error_topic=ERR, max_batch=4, max_wait_ms=0,
            retry_backoff_ms=BACKOFF_MS, retry_max_backoff_ms=1_000,
            stats_interval_s=3600, as_of=AS_OF,
        )  # fmt: skip
        self.bridge = Bridge(
            settings, self.consumer, self.producer, scorer, self.metrics, clock=clock.monotonic
        )

    def submit_first_batch(self) -> None:
        """Two steps: poll (four records collected), then hand the full batch to the scorer;
        then wait, on the scoring call's future rather than the clock, for it to be done."""
        self.bridge._step()
        assert self.bridge.inflight.collected() == 4
        self.bridge._step()
        head = self.bridge.inflight.head()
        assert head is not None
        assert head.future is not None
        head.future.exception(timeout=30)

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rig(clock: FakeClock) -> Iterator[Callable[..., Rig]]:
    """Makes bridges on fakes (`rig(batches, scorer)`), closing each after the test."""
    made: list[Rig] = []

    def make(batches: list[list], scorer: FakeScorer) -> Rig:
        made.append(Rig(batches, scorer, clock))
        return made[-1]

    try:
        yield make
    finally:
        for each in made:
            each.bridge.close()


def test_a_batch_is_produced_in_order_and_committed_only_after_every_ack(rig):
    r = rig([batch(range(0, 4), bad=2), batch(range(4, 8))], FakeScorer())
    r.submit_first_batch()
    assert r.scorer.calls == [[0, 1, 3]]  # the invalid event never reaches the scorer
    assert (r.producer.sent, r.consumer.commits) == ([], [])

    r.log.clear()
    r.bridge._step()  # scored: delivered, then committed
    keys = [b"c-00000", b"c-00001", b"in", b"c-00003"]  # a dead letter keeps the record's key
    assert r.log == [
        *[("send", topic, key) for topic, key in zip([OUT, OUT, ERR, OUT], keys, strict=True)],
        ("flush",),
        *[("ack", key) for key in keys],
        ("commit", {r.consumer.tp: 4}),
    ]
    assert [v["source"]["offset"] for v in r.producer.values] == [0, 1, 2, 3]
    assert r.producer.values[2]["error"] == "age: must be between 0 and 120"
    assert r.bridge.inflight.head() is None
    assert len(r.consumer.batches) == 1  # the second batch is still the broker's
    assert r.sample("churn_stream_commits_total") == 1
    assert r.sample("churn_stream_results_produced_total") == 3
    assert r.sample("churn_stream_dead_letters_total", field="age", code="out_of_range") == 1


def test_a_refused_ack_leaves_the_batch_uncommitted(rig):
    r = rig([batch(range(0, 4))], FakeScorer())
    r.producer.refuse[b"c-00001"] = KafkaTimeoutError("no ack in time")
    r.submit_first_batch()
    with pytest.raises(KafkaTimeoutError):
        r.bridge._step()
    assert ("refused", b"c-00001") in r.log
    assert r.consumer.commits == []
    head = r.bridge.inflight.head()  # still in hand, uncommitted: the next owner redoes it
    assert head is not None
    assert [m.offset for m in head.messages] == [0, 1, 2, 3]
    assert r.sample("churn_stream_commits_total") == 0


def test_a_scorer_outage_pauses_commits_nothing_and_retries_the_same_messages(rig, clock):
    scorer = FakeScorer()
    scorer.down = 2
    r = rig([batch(range(0, 4)), batch(range(4, 8))], scorer)
    r.submit_first_batch()
    started = clock.now
    r.log.clear()
    r.bridge._step()  # fails twice, backing off paused, then delivers when the scorer is back

    first_send = next(i for i, entry in enumerate(r.log) if entry[0] == "send")
    backing_off = r.log[:first_send]
    assert backing_off  # the group is kept: poll() goes on while backing off
    assert all(entry == ("poll", "paused", 0) for entry in backing_off)  # nothing committed
    assert r.log[-1] == ("commit", {r.consumer.tp: 4})
    assert r.scorer.calls == [[0, 1, 2, 3]] * 3  # the same messages each time
    # Backed off 0.2 s, then 0.4 s (doubled), on the fake clock (to a poll's millisecond).
    assert clock.now - started == pytest.approx(3 * BACKOFF_MS / 1000, abs=0.003)
    assert r.consumer.paused() == set()  # resumed once scored
    assert len(r.consumer.batches) == 1  # nothing consumed while paused
    assert r.sample("churn_stream_paused") == 0
    assert r.sample("churn_stream_service_errors_total", kind="connect") == 2
    assert r.sample("churn_stream_service_retries_total") == 2


def test_stopped_during_an_outage_the_batch_is_left_uncommitted(rig):
    scorer = FakeScorer()
    scorer.down = 1_000
    r = rig([batch(range(0, 4))], scorer)
    r.submit_first_batch()

    def sigterm_at_the_third_poll() -> None:
        if sum(entry[0] == "poll" for entry in r.log) == 3:
            r.bridge.stop()

    r.consumer.on_poll = sigterm_at_the_third_poll
    r.log.clear()
    r.bridge._step()
    assert r.log == [("poll", "paused", 0)] * 3
    assert (r.producer.sent, r.consumer.commits) == ([], [])
    assert r.bridge.inflight.head() is None  # dropped uncommitted: the next consumer redoes it
    assert len(r.scorer.calls) >= 2  # retried, the same messages each time, until stopped
    assert all(offsets == [0, 1, 2, 3] for offsets in r.scorer.calls)
