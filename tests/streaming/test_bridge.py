"""The bridge as users run it (`python -m streaming.bridge`), on a real broker and a served bento.

Every test checks the count: each input has a result or a dead letter, identified by its source
coordinates; duplicates are allowed only where the bridge was killed with a batch uncommitted.
"""

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from models.contract import RAW_FEATURES
from models.samples import event
from streaming.bridge import MAX_SUBMITTED
from tests.streaming.support import PARTITIONS, metric, read_until, stop, unique
from tests.support import Process, process_tree, wait_until

pytestmark = pytest.mark.slow
FUTURE, NO_DAY = "2026-07-01", "2026-02-30"  # after the as-of date; not a date
SCORE_FIELDS = ("prediction", "churn_probability", "probability", "confidence_level")


def test_results_equal_predict_bit_for_bit_and_sigterm_commits_everything(
    kafka, bento, launch, model_tag, readers
):
    topic, group = kafka.topic("happy"), unique("g")
    inputs = [event(i, nested=i % 2 == 1) for i in range(60)]
    inputs[5] = {**inputs[5], "timestamp": "2026-06-30T08:00:00Z", "request_id": "r-5"}
    # One record per produce batch: the test broker then reports true end offsets (lag).
    sent = kafka.send(topic, inputs, one_per_batch=True)
    bridge = launch(topic, group, "--service-url", bento.url)
    out, err = readers(topic)
    read_until([out], len(inputs), 60, bridge)

    by_source = {(r["source"]["partition"], r["source"]["offset"]): r for r in out.records}
    assert sorted(by_source) == sorted(sent)
    assert err.poll() == []
    with httpx.Client(base_url=bento.url, timeout=30) as client:
        for coords in sent:
            result = by_source[coords]
            original = inputs[int(result["customer_id"][2:])]
            features = original.get("features") or {k: original[k] for k in RAW_FEATURES}
            answer = client.post(
                "/predict", json={"customer_id": result["customer_id"], "features": features}
            ).json()
            assert {k: result[k] for k in SCORE_FIELDS} == {k: answer[k] for k in SCORE_FIELDS}
            assert result["model_version"] == model_tag
    assert out.keys[0] == out.records[0]["customer_id"].encode()
    fifth = next(r for r in out.records if r["customer_id"] == "c-00005")
    assert fifth["event_timestamp"] == "2026-06-30T08:00:00Z"
    assert fifth["request_id"] == "r-5"

    def lag_is_zero() -> bool:
        lags = [metric(bridge, "churn_stream_consumer_lag", topic=topic, partition=str(p))
                for p in range(PARTITIONS)]  # fmt: skip
        return metric(bridge, "churn_stream_commits_total") > 0 and lags == [0.0] * PARTITIONS

    wait_until(lag_is_zero, 20, "lag metric")
    assert metric(bridge, "churn_stream_results_produced_total") == len(inputs)
    assert metric(bridge, "churn_stream_end_to_end_seconds_count") == len(inputs)
    assert metric(bridge, "churn_stream_batch_size_sum") == len(inputs)
    assert stop(bridge) == 0
    assert kafka.committed(group) == {p: len(inputs) // PARTITIONS for p in range(PARTITIONS)}


def test_each_kind_of_malformed_message_goes_to_the_error_topic(kafka, bento, launch, readers):
    good = event(1)
    bad = {
        b"{not json": ("request", "request: is not valid UTF-8 JSON"),
        b"\xff\xfe": ("request", "request: is not valid UTF-8 JSON"),
        b"[1, 2]": ("request", "request: must be a JSON object"),
        b'{"customer_id": "m"}': ("age", "age: is missing"),
    }
    for value, item in [
        (event(2, age="forty"), event(2, nested=True, age="forty")),
        (event(3, age=130), event(3, nested=True, age=130)),
        (
            event(4, last_purchase_date="2026-07-01"),
            event(4, True, last_purchase_date="2026-07-01"),
        ),
        (
            event(5, last_purchase_date="2026-02-30"),
            event(5, True, last_purchase_date="2026-02-30"),
        ),
        (event(6, nested=True, income=-1), event(6, nested=True, income=-1)),
        ({**event(7, age=-1), "colour": "red"}, {**event(7, nested=True, age=-1), "colour": "red"}),
    ]:
        # The HTTP batch endpoint's reason for the same item is the expected one.
        answer = httpx.post(f"{bento.url}/predict/batch", json={"requests": [item]}).json()
        (error,) = answer["errors"]
        assert error["field"] in error["error"]
        bad[json.dumps(value).encode()] = (error["field"], error["error"])

    topic, group = kafka.topic("malformed"), unique("g")
    sent = kafka.send(topic, [good, *bad, good])
    bridge = launch(topic, group, "--service-url", bento.url)
    out, err = readers(topic)
    read_until([out, err], len(sent), 60, bridge)

    assert len(out.records) == 2
    assert sorted(out.sources() + err.sources()) == sorted(sent)
    for letter in err.records:
        coords = (letter["source"]["partition"], letter["source"]["offset"])
        original = sent[coords]
        assert (letter["field"], letter["error"]) == bad[original]
        if letter["original_encoding"] == "utf-8":
            assert letter["original"].encode() == original
    assert metric(bridge, "churn_stream_dead_letters_total", field="age", code="missing") == 1
    assert bridge.proc.poll() is None  # malformed input never stops the bridge
    assert stop(bridge) == 0


def test_sigkill_mid_stream_loses_nothing_and_duplicates_at_most_one_batch(
    kafka, launch, model_tag, readers
):
    topic, group, max_batch = kafka.topic("kill"), unique("g"), 50
    sent = kafka.send(topic, [event(i) for i in range(4000)])
    args = ("--in-process", "--model-tag", model_tag, "--max-batch", str(max_batch))
    first = launch(topic, group, *args)
    out, err = readers(topic)
    read_until([out], 300, 60, first)
    assert stop(first, signal.SIGKILL) == -signal.SIGKILL
    committed = kafka.committed(group)
    assert sum(committed.values()) < len(sent)  # killed mid-stream

    second = launch(topic, group, *args)
    wait_until(lambda: bool(out.poll()) and set(out.sources()) >= set(sent), 90, "all results")
    assert stop(second) == 0

    counts = Counter(out.sources())
    assert set(counts) == set(sent)
    assert err.poll() == []
    duplicates = [coords for coords, n in counts.items() if n > 1]
    assert all(n <= 2 for n in counts.values())
    assert len(duplicates) <= max_batch
    assert all(offset >= committed.get(p, 0) for p, offset in duplicates)


def test_service_down_pauses_without_committing_and_resumes_when_it_is_back(
    kafka, launch, private_bento, readers
):
    topic, group = kafka.topic("outage"), unique("g")
    service = private_bento()
    bridge = launch(topic, group, "--service-url", service.url)
    out, err = readers(topic)
    sent = kafka.send(topic, [event(i) for i in range(30)], one_per_batch=True)
    read_until([out], 30, 60, bridge)
    wait_until(lambda: sum(kafka.committed(group).values()) == 30, 20, "first commit")

    service.stop()
    more = kafka.send(topic, [event(i) for i in range(30, 60)], one_per_batch=True)
    wait_until(lambda: metric(bridge, "churn_stream_service_retries_total") >= 3, 60, "retries")
    assert metric(bridge, "churn_stream_paused") == 1
    assert sum(kafka.committed(group).values()) == 30  # nothing committed while down
    assert len(out.poll()) == 30
    lag = lambda: sum(  # noqa: E731
        metric(bridge, "churn_stream_consumer_lag", topic=topic, partition=str(p))
        for p in range(PARTITIONS)
    )
    wait_until(lambda: lag() == 30, 20, "lag of the unscored messages")

    private_bento(port=service.port)
    read_until([out], 60, 90, bridge)
    assert sorted(out.sources()) == sorted({**sent, **more})
    assert err.poll() == []
    assert metric(bridge, "churn_stream_paused") == 0
    assert stop(bridge) == 0


def test_two_bridges_in_one_group_split_the_partitions(kafka, bento, launch, readers):
    topic, group = kafka.topic("pair"), unique("g")
    args = ("--service-url", bento.url)
    bridges = [launch(topic, group, *args) for _ in range(2)]

    def assigned() -> list[float]:
        return [metric(b, "churn_stream_assigned_partitions") for b in bridges]

    wait_until(lambda: sorted(assigned()) == [1.0, 2.0], 60, "both bridges assigned")
    sent = kafka.send(topic, [event(i) for i in range(300)])
    out, err = readers(topic)
    read_until([out], 300, 60, None)
    owned = [
        {p for p in range(PARTITIONS)
         if metric(b, "churn_stream_messages_consumed_total", topic=topic, partition=str(p))}
        for b in bridges
    ]  # fmt: skip
    assert all(owned)
    assert not owned[0] & owned[1]
    assert owned[0] | owned[1] == set(range(PARTITIONS))
    assert sorted(out.sources()) == sorted(sent)

    assert stop(bridges[0]) == 0  # leaves the group: the other takes every partition
    wait_until(lambda: assigned()[1] == PARTITIONS, 60, "rebalance")
    more = kafka.send(topic, [event(i) for i in range(300, 450)])
    read_until([out], 450, 60, bridges[1])
    assert sorted(out.sources()) == sorted({**sent, **more})
    assert err.poll() == []
    assert stop(bridges[1]) == 0


@contextmanager
def held(service: Process) -> Iterator[None]:
    """Every process of `service` stopped (SIGSTOP): a call sent to it meanwhile is accepted by
    the kernel but answered only once the block ends (SIGCONT, even on failure)."""
    pids = process_tree(service.proc.pid)
    assert len(pids) > 1, "no worker process found"
    stopped = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)


def test_sigterm_mid_stream_finishes_the_batch_commits_and_leaves_the_group(
    kafka, bento, launch, readers
):
    topic, group = kafka.topic("term"), unique("g")
    events = [event(i) for i in range(3000)]
    first = kafka.send(topic, events[:300])
    max_batch = 100
    args = ("--service-url", bento.url, "--max-batch", str(max_batch))
    bridge = launch(topic, group, *args)
    out, err = readers(topic)
    read_until([out], len(first), 60, bridge)
    calls = metric(bridge, "churn_stream_service_calls_total")  # all of them answered
    with held(bento):
        # The rest arrives while scoring is held: the bridge takes a batch of it to the
        # scorer, and can finish no batch of it before it is told to stop.
        rest = kafka.send(topic, events[300:])
        in_scorer = lambda: metric(bridge, "churn_stream_service_calls_total") > calls  # noqa: E731
        wait_until(in_scorer, 30, "a batch of the rest in the scorer")
        bridge.proc.send_signal(signal.SIGTERM)
    assert stop(bridge) == 0
    sent = {**first, **rest}

    committed = kafka.committed(group)
    # Stopped mid-stream: the batch held in the scorer was finished and committed, then no more
    # than the bridge had in hand (the batches handed to the scorer and the one being
    # collected); the rest of the input was left to the next consumer.
    in_hand = (MAX_SUBMITTED + 1) * max_batch
    assert len(first) < sum(committed.values()) <= len(first) + in_hand < len(sent)
    wait_until(lambda: len(out.poll()) >= sum(committed.values()), 10, "results read")
    expected = {(p, o) for p, o in sent if o < committed.get(p, 0)}
    assert Counter(out.sources()) == Counter(expected)  # all delivered, none twice, none more

    # It left the group: a successor resumes at once from the commit, with no duplicate.
    successor = launch(topic, group, *args)
    read_until([out], len(sent), 90, successor)
    assert Counter(out.sources()) == Counter(list(sent))
    assert err.poll() == []
    assert stop(successor) == 0
