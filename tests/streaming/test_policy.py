"""The input policy on the Kafka path, without a broker: fake consumer records in, result and
dead-letter records out; the service's refusals as errors the bridge stops on.

Every expected score is computed here from the canonical record: its own feature matrix
(`age, income, purchase_history, as-of minus date`), scored by `predictor.churn_probability`.
"""

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from models.samples import event
from streaming.bridge import Bridge
from streaming.messages import decode, error_record, result_record
from streaming.metrics import BridgeMetrics
from streaming.scorer import (
    HttpScorer,
    InProcessScorer,
    ScoringRefusedError,
    ScoringUnavailableError,
    check_answer,
)
from streaming.settings import StreamSettings
from tests.conftest import AS_OF
from tests.streaming.fakes import FakeConsumer, FakeProducer
from tests.streaming.fakes import consumer_record as record
from tests.streaming.support import canonical_matrix

RECORD_TIME = datetime(2026, 5, 28, 20, 26, 40, tzinfo=UTC)  # every fake record's (RECORD_MS)
EVENT_TIME = datetime(2026, 6, 30, 12, 0, 0, tzinfo=UTC)
EVENT_S = 1_782_820_800  # EVENT_TIME in epoch seconds
NOW = datetime(2026, 6, 30, 12, 0, 5, tzinfo=UTC)
LIMIT = 1 << 20


def score_in_process(predictor, values: list[Any]) -> list[dict[str, Any]]:
    """Decode `values` as records and score the batch as the in-process bridge does."""
    messages = [decode(record(v, offset=i), AS_OF) for i, v in enumerate(values)]
    assert [m.problems for m in messages] == [[]] * len(values)
    outcomes = InProcessScorer(predictor).score(messages, AS_OF)
    return [
        json.loads(result_record(m, o, NOW)[1]) for m, o in zip(messages, outcomes, strict=True)
    ]


def sample(metrics: BridgeMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# --- event time --------------------------------------------------------------------------------

READABLE = {
    "epoch seconds": (EVENT_S, EVENT_TIME),
    "epoch seconds, float": (EVENT_S + 0.25, datetime(2026, 6, 30, 12, 0, 0, 250000, UTC)),
    "epoch ms": (EVENT_S * 1000 + 123, datetime(2026, 6, 30, 12, 0, 0, 123000, UTC)),
    "epoch ms, float": (EVENT_S * 1000 + 123.0, datetime(2026, 6, 30, 12, 0, 0, 123000, UTC)),
    "epoch seconds, text": (str(EVENT_S), EVENT_TIME),
    "epoch ms, text": (f"{EVENT_S}500", datetime(2026, 6, 30, 12, 0, 0, 500000, UTC)),
    "ISO with Z": ("2026-06-30T12:00:00Z", EVENT_TIME),
    "ISO with offset": ("2026-06-30T14:00:00+02:00", EVENT_TIME),
    "ISO naive (UTC)": ("2026-06-30T12:00:00", EVENT_TIME),
    "ISO date only": ("2026-06-30", datetime(2026, 6, 30, tzinfo=UTC)),
}


@pytest.mark.parametrize(("given", "expected"), READABLE.values(), ids=READABLE.keys())
def test_a_readable_timestamp_is_the_event_time(given, expected):
    msg = decode(record({**event(1), "timestamp": given}), AS_OF)
    assert msg.problems == []
    assert (msg.event_time, msg.event_time_source, msg.event_time_error) == (
        expected,
        "message",
        None,
    )
    assert msg.ignored == ()  # the event time is a known field
    assert "timestamp" not in msg.payload
    body = json.loads(result_record(msg, {"customer_id": "c-00001"}, NOW)[1])
    assert body["event_time_source"] == "message"
    assert datetime.fromisoformat(body["event_timestamp"]) == expected
    assert body["event_timestamp"].endswith("Z")
    assert body["latency_ms"] == (NOW - expected).total_seconds() * 1000


UNREADABLE = {
    "text": (b'"yesterday"', "bad_date"),
    "boolean": (b"true", "wrong_type"),
    "object": (b'{"seconds": 1782820800}', "wrong_type"),
    "array": (b"[1782820800]", "wrong_type"),
    "NaN text": (b'"NaN"', "bad_date"),
    "NaN literal": (b"NaN", "bad_date"),
    "Infinity literal": (b"Infinity", "bad_date"),
    "-Infinity text": (b'"-Infinity"', "bad_date"),
    "too large": (b"1e300", "out_of_range"),
    "empty text": (b'""', "bad_date"),
}


def with_raw_timestamp(raw: bytes, value: dict[str, Any] | None = None) -> bytes:
    """`value` (event(1)) as JSON with `raw` (any JSON literal, NaN too) as its timestamp."""
    return json.dumps(value or event(1)).encode()[:-1] + b', "timestamp": ' + raw + b"}"


@pytest.mark.parametrize(("raw", "code"), UNREADABLE.values(), ids=UNREADABLE.keys())
def test_an_unreadable_timestamp_never_refuses_a_valid_customer(predictor, raw, code):
    msg = decode(record(with_raw_timestamp(raw)), AS_OF)
    assert msg.problems == []
    assert msg.valid
    assert (msg.event_time, msg.event_time_source, msg.event_time_error) == (
        RECORD_TIME,
        "record",
        code,
    )
    (result,) = score_in_process(predictor, [with_raw_timestamp(raw)])
    (expected,) = predictor.churn_probability(canonical_matrix([event(1)]))
    assert result["churn_probability"] == expected
    assert result["event_time_source"] == "record"
    assert datetime.fromisoformat(result["event_timestamp"]) == RECORD_TIME

    metrics = BridgeMetrics()
    metrics.count_policy([msg, decode(record(event(2)), AS_OF)])
    assert sample(metrics, "churn_stream_event_time_fallback_total", reason=code) == 1
    assert sample(metrics, "churn_stream_ignored_fields_total", field="timestamp") == 0


@pytest.mark.parametrize("given", ["absent", None], ids=["absent", "null"])
def test_without_a_timestamp_the_record_time_is_used_and_not_counted(given):
    value = event(1) if given == "absent" else {**event(1), "timestamp": None}
    msg = decode(record(value), AS_OF)
    assert (msg.event_time, msg.event_time_source, msg.event_time_error) == (
        RECORD_TIME,
        "record",
        None,
    )
    metrics = BridgeMetrics()
    metrics.count_policy([msg])
    for code in ("wrong_type", "bad_date", "out_of_range"):
        assert sample(metrics, "churn_stream_event_time_fallback_total", reason=code) == 0


def test_a_dead_letter_says_which_event_time_it_carries():
    bad_time = decode(record(with_raw_timestamp(b'"soon"', event(1, age=200))), AS_OF)
    body = json.loads(error_record(bad_time, bad_time.problems, NOW, LIMIT)[1])
    assert (body["error"], body["event_time_source"]) == (
        "age: must be between 0 and 120",
        "record",
    )
    assert datetime.fromisoformat(body["event_timestamp"]) == RECORD_TIME

    good_time = decode(record({**event(1, age=200), "timestamp": EVENT_S}), AS_OF)
    body = json.loads(error_record(good_time, good_time.problems, NOW, LIMIT)[1])
    assert (body["event_time_source"], body["event_timestamp"]) == (
        "message",
        "2026-06-30T12:00:00Z",
    )

    not_json = decode(record(b"{nope"), AS_OF)
    body = json.loads(error_record(not_json, not_json.problems, NOW, LIMIT)[1])
    assert (body["field"], body["event_time_source"]) == ("request", "record")


# --- loose records score like their canonical twin ---------------------------------------------


def loose_twins() -> dict[str, tuple[Any, dict[str, Any]]]:
    """{case: (loose message, its canonical flat twin)}."""
    c = event(4)
    features = {k: c[k] for k in ("age", "income", "purchase_history", "last_purchase_date")}
    days = (AS_OF - date.fromisoformat(c["last_purchase_date"])).days
    no_date = {k: v for k, v in c.items() if k != "last_purchase_date"}
    return {
        "extra top-level fields": ({**c, "channel": "web", "segment": {"tier": 2}}, c),
        "extra fields inside features": (
            {
                "customer_id": c["customer_id"],
                "features": {**features, "segment": "gold"},
                "channel": "web",
            },
            c,
        ),
        "days instead of the date": ({**no_date, "days_since_purchase": days}, c),
        "days beside a null date": (
            {**c, "last_purchase_date": None, "days_since_purchase": days},
            c,
        ),
        "epoch timestamp and extras": ({**c, "timestamp": EVENT_S, "x-trace": "abc"}, c),
        "unusable request_id": ({**c, "request_id": ""}, c),
    }


def test_loose_records_get_the_bits_of_their_canonical_twin(predictor):
    cases = loose_twins()
    loose = [value for value, _ in cases.values()]
    results = score_in_process(predictor, loose)
    expected = predictor.churn_probability(canonical_matrix([twin for _, twin in cases.values()]))
    for name, result, p in zip(cases, results, expected, strict=True):
        assert result["churn_probability"] == p, name
        assert result["prediction"] == int(p >= 0.5), name
        assert result["customer_id"] == "c-00004", name


def test_ignored_fields_are_reported_counted_and_not_sent_to_the_service():
    value = {
        "customer_id": "c-1",
        "features": {**{k: v for k, v in event(1).items() if k != "customer_id"}, "segment": 1},
        "channel": "web",
        "priority": "urgent",  # not one of low/normal/high: ignored
        "timestamp": EVENT_S,
    }
    msg = decode(record(value), AS_OF)
    assert msg.problems == []
    assert sorted(msg.ignored) == ["channel", "features.segment", "priority"]
    assert msg.payload == {
        "customer_id": "c-1",
        "features": {k: v for k, v in event(1).items() if k != "customer_id"},
    }
    plain = decode(record(event(2)), AS_OF)
    assert plain.ignored == ()
    assert plain.payload == event(2)  # sent as it came: flat, not reshaped

    typo = decode(record({**event(3), "colour": "red", "timestamp": "2026-06-30"}), AS_OF)
    metrics = BridgeMetrics()
    metrics.count_policy([msg, plain, typo, msg])
    counts = {
        f: sample(metrics, "churn_stream_ignored_fields_total", field=f)
        for f in ("channel", "features.segment", "priority", "colour", "timestamp", "customer_id")
    }
    assert counts == {
        "channel": 2,
        "features.segment": 2,
        "priority": 2,
        "colour": 1,
        "timestamp": 0,
        "customer_id": 0,
    }


def test_an_integer_customer_id_is_its_decimal_text(predictor):
    text_twin, integer = (
        {**event(5), "customer_id": "1234567"},
        {**event(5), "customer_id": 1234567},
    )
    results = score_in_process(predictor, [integer, text_twin])
    (expected, _) = predictor.churn_probability(canonical_matrix([event(5), event(5)]))
    assert [r["customer_id"] for r in results] == ["1234567", "1234567"]
    assert [r["churn_probability"] for r in results] == [expected, expected]
    msg = decode(record(integer, key=b"other"), AS_OF)
    assert result_record(msg, results[0], NOW)[0] == b"1234567"

    # On a dead letter too, and as the error's customer_id.
    bad = decode(record({**event(5, age=-1), "customer_id": 1234567}), AS_OF)
    key, value = error_record(bad, bad.problems, NOW, LIMIT)
    assert (key, json.loads(value)["customer_id"]) == (b"k", "1234567")


def test_without_a_customer_id_the_result_keeps_the_records_key(predictor):
    anonymous = {k: v for k, v in event(6).items() if k != "customer_id"}
    (result,) = score_in_process(predictor, [anonymous])
    (expected,) = predictor.churn_probability(canonical_matrix([event(6)]))
    assert (result["customer_id"], result["churn_probability"]) == (None, expected)
    for key in (b"from-the-producer", None):
        msg = decode(record(anonymous, key=key), AS_OF)
        assert result_record(msg, result, NOW)[0] == key


@pytest.mark.parametrize(
    ("value", "expected_id"),
    [
        ({"customer_id": "c-9", "age": 30, "incme": 1000, "purchase_history": 1,
          "last_purchase_date": "2026-01-01"}, "c-9"),
        ({"customer_id": 9, "features": {"age": 30, "incme": 1000, "purchase_history": 1,
          "last_purchase_date": "2026-01-01"}}, "9"),
    ],
    ids=["flat", "nested, integer id"],
)  # fmt: skip
def test_a_typo_in_a_required_field_is_still_a_dead_letter(value, expected_id):
    msg = decode(record(value), AS_OF)
    assert not msg.valid
    assert [p.reason for p in msg.problems] == ["income: is missing"]
    body = json.loads(error_record(msg, msg.problems, NOW, LIMIT)[1])
    assert (body["error"], body["field"], body["code"]) == (
        "income: is missing",
        "income",
        "missing",
    )
    assert body["customer_id"] == expected_id
    metrics = BridgeMetrics()
    metrics.count_policy([msg])
    typo = "incme" if "features" not in value else "features.incme"
    assert sample(metrics, "churn_stream_ignored_fields_total", field=typo) == 1


@pytest.mark.parametrize("cid", ["", "x" * 101, 1.5, True])
def test_an_unusable_customer_id_is_not_put_on_the_dead_letter(cid):
    msg = decode(record({**event(1), "customer_id": cid}), AS_OF)
    assert msg.problems[0].field == "customer_id"
    assert json.loads(error_record(msg, msg.problems, NOW, LIMIT)[1])["customer_id"] is None


# --- the original message on a dead letter ----------------------------------------------------


def test_a_cut_through_a_multibyte_character_stays_utf8_text():
    value = '{"customer_id": "ü€😀"}'.encode()
    start = value.index("€".encode())  # 3 bytes, then a 4-byte emoji
    for limit in range(start, len(value) + 1):
        msg = decode(record(value), AS_OF)
        body = json.loads(error_record(msg, msg.problems, NOW, limit)[1])
        kept = body["original"].encode()
        assert body["original_encoding"] == "utf-8", limit
        assert value.startswith(kept), limit
        assert limit - 3 <= len(kept) <= limit, limit  # at most the cut character is lost
        assert body["original_truncated"] is (limit < len(value)), limit
    # Exactly where each character starts and ends.
    cuts = {
        start: '{"customer_id": "ü',
        start + 2: '{"customer_id": "ü',
        start + 3: '{"customer_id": "ü€',
    }
    for limit, text in cuts.items():
        msg = decode(record(value), AS_OF)
        assert json.loads(error_record(msg, msg.problems, NOW, limit)[1])["original"] == text


def test_bytes_that_are_not_utf8_are_base64_cut_at_the_limit():
    value = b'{"customer_id": "\xff\xfe"}'
    msg = decode(record(value), AS_OF)
    body = json.loads(error_record(msg, msg.problems, NOW, 5)[1])
    assert body["original_encoding"] == "base64"
    assert body["original"] == "eyJjdXM="  # b'{"cus', the first 5 bytes
    assert body["original_truncated"] is True


# --- the service's answers: refused or unavailable --------------------------------------------


def answer(status: int, body: Any = None, path: str = "/predict/batch") -> httpx.Response:
    request = httpx.Request("POST", f"http://service{path}")
    if isinstance(body, dict):
        return httpx.Response(status, json=body, request=request)
    return httpx.Response(status, text=body or "", request=request)


TOKEN_HINT = "check --service-token / CHURN_STREAM_SERVICE_TOKEN (the bento's CHURN_API_TOKENS)"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (401, {"error": "missing bearer token"},
         f"the service refused the bridge's requests: 401 missing bearer token "
         f"(POST /predict/batch); {TOKEN_HINT}"),
        (403, {"error": "invalid token"},
         f"the service refused the bridge's requests: 403 invalid token (POST /predict/batch); "
         f"{TOKEN_HINT}"),
        (404, "Not Found",
         "the service refused the bridge's requests: 404 Not Found (POST /predict/batch); "
         "check --service-url / CHURN_STREAM_SERVICE_URL"),
        (413, {"error": "request body larger than 10 bytes"},
         "the service refused the bridge's requests: 413 request body larger than 10 bytes "
         "(POST /predict/batch); lower --max-batch, or raise the bento's CHURN_MAX_BODY_BYTES"),
        (400, {"detail": "bad"},
         'the service refused the bridge\'s requests: 400 {"detail":"bad"} (POST /predict/batch)'
         "; check that the bridge and the bento are the same version"),
    ],
    ids=["401", "403", "404", "413", "400"],
)  # fmt: skip
def test_a_4xx_is_a_refusal_with_a_clear_message(status, body, message):
    with pytest.raises(ScoringRefusedError) as caught:
        check_answer(answer(status, body))
    assert str(caught.value) == message
    assert (caught.value.status, caught.value.kind) == (status, f"http_{status}")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_timeouts_throttling_and_5xx_stay_retryable(status):
    with pytest.raises(ScoringUnavailableError) as caught:
        check_answer(answer(status, "busy"))
    assert caught.value.kind == f"http_{status}"


class FakeService:
    """A plain HTTP server with the bento's schema route; /predict/batch answers `status`, and
    /schema.json `schema_status`."""

    def __init__(self) -> None:
        self.status, self.schema_status = 200, 200
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if fake.schema_status != 200:
                    self._reply(fake.schema_status, {"error": "invalid token"})
                    return
                route = {"name": "predict_batch", "route": "/predict/batch", "input": {},
                         "output": {}}  # fmt: skip
                self._reply(200, {"name": "fake", "routes": [route]})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                self._reply(fake.status, {"error": "missing bearer token"})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture
def fake_service() -> Iterator[FakeService]:
    service = FakeService()
    try:
        yield service
    finally:
        service.close()


def test_the_http_scorer_raises_refused_on_a_4xx_and_unavailable_on_a_5xx(fake_service):
    msg = decode(record(event(1)), AS_OF)
    scorer = HttpScorer(fake_service.url, timeout=10)
    try:
        for status in (503, 429):
            fake_service.status = status
            with pytest.raises(ScoringUnavailableError):
                scorer.score([msg], AS_OF)
        fake_service.status = 401
        with pytest.raises(ScoringRefusedError) as caught:
            scorer.score([msg], AS_OF)
        assert (caught.value.status, caught.value.body) == (401, "missing bearer token")
        assert caught.value.request == "POST /predict/batch"
    finally:
        scorer.close()


def test_a_refused_schema_request_is_a_refusal_too(fake_service):
    """With CHURN_API_TOKENS set, the bento refuses even its schema to a wrong token."""
    fake_service.schema_status = 403
    scorer = HttpScorer(fake_service.url, timeout=10, token="wrong")
    with pytest.raises(ScoringRefusedError) as caught:
        scorer.score([decode(record(event(1)), AS_OF)], AS_OF)
    assert (caught.value.status, caught.value.request) == (403, "GET /schema.json")
    assert TOKEN_HINT in str(caught.value)
    fake_service.schema_status = 503
    with pytest.raises(ScoringUnavailableError):
        scorer.score([decode(record(event(1)), AS_OF)], AS_OF)


# --- the bridge stops on a refusal, committing nothing of what it holds -------------------------


class ScriptedScorer:
    """Scores the first `good` calls in process, then refuses every call like a bad token."""

    name = "scripted"

    def __init__(self, predictor, good: int) -> None:
        self.inner, self.good, self.calls, self.closed = InProcessScorer(predictor), good, 0, False

    def score(self, messages, as_of):
        self.calls += 1
        if self.calls > self.good:
            raise ScoringRefusedError(401, "missing bearer token", "POST /predict/batch")
        return self.inner.score(messages, as_of)

    def close(self) -> None:
        self.closed = True


def test_a_refusal_stops_the_bridge_without_committing_the_batches_in_hand(predictor, caplog):
    batches = [
        [record(event(i), offset=i) for i in range(0, 4)],
        [record(event(i), offset=i) for i in range(4, 8)],
        [record(event(i), offset=i) for i in range(8, 12)],
    ]
    settings = StreamSettings(max_batch=4, max_wait_ms=0, stats_interval_s=3600, as_of=AS_OF)
    consumer, producer = FakeConsumer(batches), FakeProducer()
    scorer, metrics = ScriptedScorer(predictor, good=1), BridgeMetrics()
    bridge = Bridge(settings, consumer, producer, scorer, metrics)
    caplog.set_level(logging.INFO, logger="streaming.bridge")
    try:
        with pytest.raises(ScoringRefusedError):
            bridge.run()
    finally:
        bridge.close()

    # The first batch was scored, delivered and committed; nothing after it.
    assert consumer.commits == [{consumer.tp: 4}]
    assert [key for _, key in producer.sent] == [f"c-{i:05d}".encode() for i in range(4)]
    assert consumer.closed == {"autocommit": False}
    assert producer.closed
    assert scorer.closed
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert (
        errors[0]
        .getMessage()
        .startswith("the service refused the bridge's requests: 401 missing bearer token")
    )
    assert errors[0].fields["status"] == 401
    assert sample(metrics, "churn_stream_service_errors_total", kind="http_401") == 1
    assert sample(metrics, "churn_stream_service_retries_total") == 0
