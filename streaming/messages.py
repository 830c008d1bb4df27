"""Kafka records in and out: decoding a customer event, and the result and dead-letter records.

An input message is a JSON object, flat or nested, read with the input policy every path shares
(`models.policy`): unknown fields are ignored (and counted), `customer_id` is text or an integer,
`days_since_purchase` may stand in for the date, and `request_id` / `priority` are taken as in
the HTTP API (an unusable one is ignored):

    {"customer_id": "c-1", "age": 42, "income": 55000, "purchase_history": 12,
     "last_purchase_date": "2026-06-01", "timestamp": "2026-06-30T12:00:00Z"}
    {"customer_id": 17, "features": {"age": 42, ...}, "timestamp": 1782820800}

The optional top-level `timestamp` is the event time (`models.policy.parse_event_time`: ISO 8601
text, naive meaning UTC, or epoch seconds or milliseconds as a number or numeric text). Without
one (absent or null), or when it cannot be read, the record's broker timestamp is the event time:
an unreadable event time never refuses a valid customer. Each result and dead letter says which
was used, `event_time_source`: `"message"` or `"record"`.

A micro-batch is checked at once, column-wise (`models.records`); a message that fails is
checked again alone by `/predict/batch`'s per-item code, so a dead letter's reasons are, word
for word, the ones `/predict/batch` gives for the same item.
"""

import base64
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import numpy as np
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition
from pydantic_core import from_json, to_json

from models.contract import (
    CUSTOMER_ID_MAX_LENGTH,
    EVENT_TIME_FIELD,
    ID_COLUMN,
    NESTED_FIELD,
    PREDICTION_COLUMNS,
)
from models.errors import FieldError
from models.policy import EventTimeError, ignored_fields, parse_event_time, usable_request_id
from models.records import check_records

RESULT_FIELDS = (*PREDICTION_COLUMNS, "model_version")
REASON_FIELDS = ("base_log_odds", "reasons")  # with --explain (models.explain)
FROM_MESSAGE: Final = "message"  # event_time_source: the message's own `timestamp`
FROM_RECORD: Final = "record"  # event_time_source: the record's broker timestamp
_NESTED_PREFIX = f"{NESTED_FIELD}."


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
    event_time_source: str = FROM_RECORD
    event_time_error: str | None = None  # the EventTimeError code of an unreadable `timestamp`
    ignored: tuple[str, ...] = ()  # fields no path reads (`features.NAME` inside features)
    payload: dict[str, Any] | None = None  # the request body, as the service takes it
    features: np.ndarray | None = None  # the model's input row; set only on a valid message
    request_id: str | None = None  # the caller's, when usable
    customer_id: str | None = None
    problems: list[Problem] = field(default_factory=list)
    outcome: "dict[str, Any] | Problem | None" = None  # set by scoring: prediction or rejection

    @property
    def valid(self) -> bool:
        return self.features is not None

    def source(self) -> dict[str, Any]:
        return {"topic": self.tp.topic, "partition": self.tp.partition, "offset": self.offset}


def record_time(record: ConsumerRecord) -> datetime:
    if record.timestamp is None or record.timestamp < 0:
        return datetime.now(UTC)
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


def _usable_id(cid: str | None) -> str | None:
    """A dead letter's customer id: the record's own when it is one (text of 1..100 characters,
    an integer as its decimal text), not an empty or oversized value."""
    return cid if cid and len(cid) <= CUSTOMER_ID_MAX_LENGTH else None


def _service_body(body: dict[str, Any], ignored: tuple[str, ...]) -> dict[str, Any]:
    """The request the service is sent: the message as parsed, without what it ignores anyway.

    Ignored fields never change an answer, but they can be large: left in, a batch of events
    carrying big unknown fields could exceed the service's body limit (a 413). Most messages
    have none, and go as they are.
    """
    if not ignored:
        return body
    drop = set(ignored)
    out = {k: v for k, v in body.items() if k not in drop}
    nested = out.get(NESTED_FIELD)
    if isinstance(nested, dict):
        out[NESTED_FIELD] = {k: v for k, v in nested.items() if _NESTED_PREFIX + k not in drop}
    return out


def decode_batch(
    records: Sequence[ConsumerRecord], as_of: date, tp: TopicPartition | None = None
) -> list[Message]:
    """Consumed records, checked against the contract as of `as_of` in one column-wise pass
    (`models.records`); never raises on bad input.

    `tp` is the records' partition when the caller has it (saves building one per record).
    """
    messages: list[Message] = []
    parsed: list[tuple[Message, Any]] = []
    for record in records:
        at = tp or TopicPartition(record.topic, record.partition)
        msg = Message(at, record.offset, record.key, record.value, record_time(record))
        messages.append(msg)
        try:
            body = from_json(record.value) if record.value is not None else None
        except ValueError:  # not JSON, or not UTF-8
            msg.problems = [NOT_JSON]
            continue
        # A fresh dict from the parser: ours to take the event time out of (the service does
        # not read it, and the request's policy would report it as ignored).
        if isinstance(body, dict) and (given := body.pop(EVENT_TIME_FIELD, None)) is not None:
            try:
                msg.event_time, msg.event_time_source = parse_event_time(given), FROM_MESSAGE
            except EventTimeError as exc:  # the record's time stays the event time
                msg.event_time_error = exc.code
        parsed.append((msg, body))
    checked = check_records([body for _, body in parsed], as_of)
    rows = iter(checked.matrix)
    for i, (msg, body) in enumerate(parsed):
        msg.ignored = ignored_fields(body)
        if checked.valid[i]:
            msg.features, msg.customer_id = next(rows), checked.customer_ids[i]
            msg.request_id = usable_request_id(body.get("request_id"))
            msg.payload = _service_body(body, msg.ignored)
        else:
            rejected = checked.rejected[i]
            msg.customer_id = _usable_id(rejected.customer_id)
            msg.problems = [Problem.of(e) for e in rejected.errors]
    return messages


def decode(record: ConsumerRecord, as_of: date, tp: TopicPartition | None = None) -> Message:
    """One consumed record, as `decode_batch` decodes it in a micro-batch."""
    return decode_batch([record], as_of, tp)[0]


@functools.lru_cache(maxsize=8)  # a batch's records share one `now`
def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def latency_seconds(msg: Message, now: datetime) -> float:
    return (now - msg.event_time).total_seconds()


def result_record(
    msg: Message, scored: Mapping[str, Any], now: datetime
) -> tuple[bytes | None, bytes]:
    """(key, value) of a prediction: the customer id (the input record's key when the event had
    none), and the scores with their provenance."""
    value = dict(scored)  # the scorer's RESULT_FIELDS
    if msg.request_id is not None:
        value["request_id"] = msg.request_id
    value.update(
        timestamp=_iso(now),
        event_timestamp=_iso(msg.event_time),
        event_time_source=msg.event_time_source,
        latency_ms=round(latency_seconds(msg, now) * 1000, 3),
        source=msg.source(),
    )
    key = msg.key if msg.customer_id is None else msg.customer_id.encode()
    return key, to_json(value)


def _original(value: bytes | None, limit: int) -> dict[str, Any]:
    """The message's bytes as text when they are UTF-8, else base64.

    Cut at `limit` bytes: a dead letter the broker refuses as too large would stop the bridge.
    UTF-8 is cut on a character boundary (the text's encoding fits in `limit` bytes), so a cut
    through a multibyte character does not turn a text message into base64.
    """
    if value is None:
        return {"original": None, "original_encoding": None, "original_truncated": False}
    truncated = len(value) > limit
    try:
        text, encoding = value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(value[:limit]).decode("ascii"), "base64"
    else:
        if truncated:
            # A prefix of valid UTF-8 is valid but for, at most, one incomplete last character.
            text = value[:limit].decode("utf-8", errors="ignore")
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
        "event_time_source": msg.event_time_source,
        "source": msg.source(),
    }
    return msg.key, to_json(value)
