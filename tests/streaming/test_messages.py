"""Message handling without a broker: decoding, the contract's reasons, records, rebalance state."""

import base64
import json
from datetime import UTC, datetime

import numpy as np
import pytest
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition

from models.predict import Rejected, check_request
from models.samples import event
from streaming.inflight import InFlight
from streaming.messages import Problem, decode, error_record, result_record
from streaming.scorer import ScoringUnavailableError, outcomes_from_batch
from streaming.settings import load_settings
from tests.conftest import AS_OF
from tests.expected import feature_matrix

RECORD_MS = 1_780_000_000_000


def record(value: bytes | None, offset: int = 7, partition: int = 1) -> ConsumerRecord:
    return ConsumerRecord(
        "events", partition, -1, offset, RECORD_MS, 0, b"k", value, [], None, 1, 1, -1
    )


def as_json(value: object) -> bytes:
    return json.dumps(value).encode()


def test_flat_and_nested_messages_decode_to_the_same_request():
    flat, nested = (
        decode(record(as_json(event(3))), AS_OF),
        decode(record(as_json(event(3, nested=True))), AS_OF),
    )
    assert flat.problems == nested.problems == []
    # The model's input row, computed independently from the flat event.
    expected = feature_matrix([event(3)], AS_OF)[0]
    np.testing.assert_array_equal(flat.features, expected)
    np.testing.assert_array_equal(nested.features, expected)
    assert flat.customer_id == nested.customer_id
    # The service nests a flat record itself (models.policy), so it goes out as it came.
    assert flat.payload == event(3)
    assert flat.customer_id == "c-00003"
    assert flat.event_time == datetime.fromtimestamp(RECORD_MS / 1000, UTC)


def test_the_message_timestamp_is_the_event_time_and_is_not_sent_to_the_service():
    msg = decode(record(as_json({**event(1), "timestamp": "2026-06-30T10:00:00"})), AS_OF)
    assert msg.event_time == datetime(2026, 6, 30, 10, tzinfo=UTC)
    assert "timestamp" not in msg.payload


# Each malformed kind, as a message and as the item the HTTP batch endpoint would get.
MALFORMED = {
    "missing field": {k: v for k, v in event(1).items() if k != "income"},
    "wrong type": event(1, age="old"),
    "out of range": event(1, age=121),
    "not an integer": event(1, purchase_history=2.5),
    "future date": event(1, last_purchase_date="2026-07-01"),
    "bad date": event(1, last_purchase_date="2026-13-01"),
    "null": event(1, income=None),
    "unexpected field, bad value": {**event(1, age=-1), "colour": "red"},
    "nested, bad field": event(1, nested=True, age=-3),
    "not an object": [1, 2],
}


@pytest.mark.parametrize("value", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_message_gets_the_http_batch_endpoints_reason(value):
    msg = decode(record(as_json(value)), AS_OF)
    item = value
    expected = check_request(item, 0, AS_OF)
    assert isinstance(expected, Rejected)
    assert not msg.valid
    assert [p.reason for p in msg.problems] == [e.reason for e in expected.errors]
    assert msg.problems[0].field in msg.problems[0].reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "request: is not valid UTF-8 JSON"),
        (b"\xff\xfe\x00", "request: is not valid UTF-8 JSON"),
        (None, "request: is null"),
    ],
    ids=["not json", "not utf-8", "tombstone"],
)
def test_undecodable_messages_name_the_field(value, reason):
    msg = decode(record(value), AS_OF)
    assert not msg.valid
    assert msg.problems[0].reason.startswith(reason)


def test_a_dead_letter_carries_the_original_bytes_reason_and_coordinates():
    now = datetime(2026, 6, 30, 12, tzinfo=UTC)
    msg = decode(record(as_json(event(1, age=121)), offset=42, partition=2), AS_OF)
    key, value = error_record(msg, msg.problems, now, payload_limit=1000)
    body = json.loads(value)
    assert key == b"k"
    assert body["error"] == "age: must be between 0 and 120"
    assert (body["field"], body["code"], body["customer_id"]) == ("age", "out_of_range", "c-00001")
    assert json.loads(body["original"]) == event(1, age=121)
    assert body["original_encoding"] == "utf-8"
    assert body["source"] == {"topic": "events", "partition": 2, "offset": 42}

    binary = decode(record(b"\xff\x00" * 10), AS_OF)
    body = json.loads(error_record(binary, binary.problems, now, payload_limit=6)[1])
    assert body["original_encoding"] == "base64"
    assert base64.b64decode(body["original"]) == b"\xff\x00" * 3
    assert body["original_truncated"] is True


def test_a_result_has_the_scores_provenance_and_latency():
    msg = decode(record(as_json({**event(1), "request_id": "r-1"}), offset=9), AS_OF)
    scored = {
        "customer_id": "c-00001",
        "prediction": 1,
        "churn_probability": 0.75,
        "probability": 0.75,
        "confidence_level": "medium",
        "model_version": "churn_model:x",
    }
    now = datetime.fromtimestamp(RECORD_MS / 1000 + 1.5, UTC)
    key, value = result_record(msg, scored, now)
    body = json.loads(value)
    assert key == b"c-00001"
    assert {k: body[k] for k in scored} == scored
    assert body["request_id"] == "r-1"
    assert body["latency_ms"] == 1500.0
    assert body["event_timestamp"].endswith("Z")
    assert body["source"] == {"topic": "events", "partition": 1, "offset": 9}


def test_batch_answers_map_back_to_items_by_index():
    pred = {
        "customer_id": "a",
        "prediction": 0,
        "churn_probability": 0.1,
        "probability": 0.9,
        "confidence_level": "high",
        "model_version": "m",
        "request_id": "x",
    }
    body = {
        "predictions": [pred, {**pred, "customer_id": "c"}],
        "errors": [{"index": 1, "field": "age", "code": "out_of_range", "error": "age: bad"}],
    }
    first, second, third = outcomes_from_batch(body, 3)
    assert first["customer_id"] == "a"
    assert "request_id" not in first
    assert second == Problem("age", "out_of_range", "age: bad")
    assert third["customer_id"] == "c"
    with pytest.raises(ScoringUnavailableError):
        outcomes_from_batch(body, 4)
    with pytest.raises(ScoringUnavailableError):
        outcomes_from_batch({"detail": "nope"}, 1)


def test_a_revoked_partition_is_dropped_and_rewound_to_its_first_uncommitted_offset():
    inflight, as_of = InFlight(), AS_OF
    p0, p1 = TopicPartition("events", 0), TopicPartition("events", 1)
    inflight.add([decode(record(as_json(event(i)), i, 0), as_of) for i in (10, 11)], as_of)
    inflight.add([decode(record(as_json(event(i)), i, 1), as_of) for i in (5,)], as_of)
    scoring = inflight.promote()
    inflight.add([decode(record(as_json(event(i)), i, 0), as_of) for i in (12, 13)], as_of)

    assert inflight.revoke({p0}) == 4
    assert [m.offset for m in scoring.messages] == [5]
    assert inflight.collecting is None
    assert inflight.take_rewinds() == {p0: 10}
    assert inflight.delivered(scoring) == {p1: 6}


def test_flags_win_over_environment_which_wins_over_defaults(monkeypatch):
    monkeypatch.setenv("CHURN_STREAM_MAX_BATCH", "50")
    monkeypatch.setenv("CHURN_AS_OF", "2026-01-02")
    settings = load_settings(["--max-wait-ms", "5", "--in-process"])
    assert (settings.max_batch, settings.max_wait_ms, settings.in_process) == (50, 5, True)
    assert settings.as_of.isoformat() == "2026-01-02"
    assert load_settings(["--max-batch", "7"]).max_batch == 7
    assert load_settings([]).input_topic == "customer-events"
    with pytest.raises(SystemExit):
        load_settings(["--max-batch", "5000"])  # more than one /predict/batch call takes
