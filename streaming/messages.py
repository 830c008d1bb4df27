"""Kafka records in and out: decoding a customer event, and the result and dead-letter records.

An input message is JSON, flat or nested (both carry an optional ISO 8601 `timestamp`, the event
time; `request_id` and `priority` are accepted as in the HTTP API):

    {"customer_id": "c-1", "age": 42, "income": 55000, "purchase_history": 12,
     "last_purchase_date": "2026-06-01", "timestamp": "2026-06-30T12:00:00Z"}
    {"customer_id": "c-1", "features": {"age": 42, ...}, "timestamp": "..."}

Both become the request the HTTP API takes and are checked by `models.predict.check_request`,
so a dead letter's reason is, word for word, the one `/predict/batch` gives for the same item.
"""

import base64
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition
from pydantic_core import from_json, to_json

from models.contract import ID_COLUMN, PREDICTION_COLUMNS, RAW_FEATURES
from models.errors import FieldError
from models.predict import Rejected, check_request
from models.schema import PredictRequest
from models.validation import describe

EVENT_TIME_FIELD = "timestamp"
NESTED_FIELD = "features"
RESULT_FIELDS = (*PREDICTION_COLUMNS, "model_version")


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a message goes to the error topic: the field at fault, a stable code and the text."""

    field: str
    code: str
    reason: str

    @classmethod
    def of(cls, error: FieldError) -> "Problem":
        return cls(error.field, error.code, error.reason)


NOT_JSON = Problem("request", "not_json", "request: is not valid UTF-8 JSON")


@dataclass(slots=True)
class Message:
    """One consumed record: where it came from, its bytes, and either a valid request or why not."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    value: bytes | None
    event_time: datetime
    payload: dict[str, Any] | None = None  # the request body, as the service takes it
    request: PredictRequest | None = None
    customer_id: str | None = None
    problems: list[Problem] = field(default_factory=list)
    outcome: "dict[str, Any] | Problem | None" = None  # set by scoring: prediction or rejection

    def source(self) -> dict[str, Any]:
        return {"topic": self.tp.topic, "partition": self.tp.partition, "offset": self.offset}


def _record_time(record: ConsumerRecord) -> datetime:
    if record.timestamp is None or record.timestamp < 0:
        return datetime.now(UTC)
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


def _event_time(value: Any) -> datetime:
    """The message's own event time; naive means UTC, like every date in the contract."""
    if not isinstance(value, str):
        raise ValueError("wrong_type")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("bad_date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def as_request(body: dict[str, Any]) -> dict[str, Any]:
    """A flat message as the nested request the API takes (in place); a nested one unchanged."""
    if NESTED_FIELD not in body:
        body[NESTED_FIELD] = {k: body.pop(k) for k in RAW_FEATURES if k in body}
    return body


def decode(record: ConsumerRecord, as_of: date, tp: TopicPartition | None = None) -> Message:
    """A consumed record, checked against the contract as of `as_of`; never raises on bad input.

    `tp` is the record's partition when the caller has it (saves building one per record).
    """
    tp = tp or TopicPartition(record.topic, record.partition)
    msg = Message(tp, record.offset, record.key, record.value, _record_time(record))
    try:
        body = from_json(record.value) if record.value is not None else None
    except ValueError:  # not JSON, or not UTF-8
        msg.problems = [NOT_JSON]
        return msg
    if isinstance(body, dict):  # a fresh dict from the parser: ours to reshape
        if EVENT_TIME_FIELD in body:
            try:
                msg.event_time = _event_time(body.pop(EVENT_TIME_FIELD))
            except ValueError as exc:
                msg.problems = [Problem.of(describe(EVENT_TIME_FIELD, str(exc)))]
                cid = body.get(ID_COLUMN)
                msg.customer_id = cid if isinstance(cid, str) else None
                return msg
        body = as_request(body)
    checked = check_request(body, 0, as_of)
    if isinstance(checked, Rejected):
        msg.customer_id = checked.customer_id
        msg.problems = [Problem.of(e) for e in checked.errors]
    else:
        msg.payload, msg.request, msg.customer_id = body, checked, checked.customer_id
    return msg


@functools.lru_cache(maxsize=8)  # a batch's records share one `now`
def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def latency_seconds(msg: Message, now: datetime) -> float:
    return (now - msg.event_time).total_seconds()


def result_record(msg: Message, scored: Mapping[str, Any], now: datetime) -> tuple[bytes, bytes]:
    """(key, value) of a prediction: the customer id, and the scores with their provenance."""
    value = dict(scored)  # the scorer's RESULT_FIELDS
    if msg.request is not None and msg.request.request_id is not None:
        value["request_id"] = msg.request.request_id
    value.update(
        timestamp=_iso(now),
        event_timestamp=_iso(msg.event_time),
        latency_ms=round(latency_seconds(msg, now) * 1000, 3),
        source=msg.source(),
    )
    return value[ID_COLUMN].encode(), to_json(value)


def _original(value: bytes | None, limit: int) -> dict[str, Any]:
    """The message's bytes as text when they are UTF-8, else base64.

    Cut at `limit` bytes: a dead letter the broker refuses as too large would stop the bridge.
    """
    if value is None:
        return {"original": None, "original_encoding": None, "original_truncated": False}
    kept = value[:limit]
    try:
        text, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    truncated = len(value) > limit
    return {"original": text, "original_encoding": encoding, "original_truncated": truncated}


def error_record(
    msg: Message, problems: list[Problem], now: datetime, payload_limit: int
) -> tuple[bytes | None, bytes]:
    """(key, value) of a dead letter: the original key and bytes, the reason, the coordinates."""
    first = problems[0]
    value = {
        "error": first.reason,
        "field": first.field,
        "code": first.code,
        "errors": [p.reason for p in problems],
        ID_COLUMN: msg.customer_id,
        **_original(msg.value, payload_limit),
        "timestamp": _iso(now),
        "event_timestamp": _iso(msg.event_time),
        "source": msg.source(),
    }
    return msg.key, to_json(value)
