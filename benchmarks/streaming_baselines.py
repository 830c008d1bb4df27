"""The streaming benchmark's baselines, each a consumer-group process like the bridge:

- `passthrough`: decode each message and re-produce it with its source coordinates, no model
  (the ceiling: what kafka-python and JSON cost at these settings);
- `per-message`: our users' way, one in-process model call per message;
- `per-message-http`: one HTTP call to the bento per message.

They build their clients with `streaming.clients` and write the same records as the bridge
(`streaming.messages`, the same JSON library), then flush and commit after each poll, so
only the scoring differs.

    python -m benchmarks.streaming_baselines KIND --bootstrap-servers H:P --input-topic T ...
"""

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import httpx
import numpy as np
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata, TopicPartition
from pydantic_core import from_json, to_json

from models.features import matrix_from_records
from models.predict import Rejected, check_request
from models.predictor import load_predictor
from models.settings import SharedSettings
from streaming.clients import ensure_topics, make_consumer, make_producer
from streaming.messages import (
    NOT_JSON,
    RESULT_FIELDS,
    Message,
    Problem,
    error_record,
    record_time,
    result_record,
)
from streaming.settings import StreamSettings

Score = Callable[[Message, date], dict[str, Any]]


def in_process(model_tag: str | None) -> Score:
    predictor = load_predictor(model_tag or SharedSettings().tag())

    def score(msg: Message, as_of: date) -> dict[str, Any]:
        assert msg.features is not None
        s = predictor.score(msg.features[np.newaxis])
        return {
            "customer_id": msg.customer_id,
            "prediction": int(s.prediction[0]),
            "churn_probability": float(s.churn_probability[0]),
            "probability": float(s.probability[0]),
            "confidence_level": str(s.confidence_level[0]),
            "model_version": predictor.tag,
        }

    return score


def decode_one(record: ConsumerRecord, as_of: date) -> Message:
    """The per-message way at its best: the request model (pydantic) for each record, as a
    hand-written consumer validates, then the model's input row; the bridge's message type, so
    the records written are the bridge's."""
    tp = TopicPartition(record.topic, record.partition)
    msg = Message(tp, record.offset, record.key, record.value, record_time(record))
    try:
        body = from_json(record.value)
    except ValueError:
        msg.problems = [NOT_JSON]
        return msg
    checked = check_request(body, 0, as_of)
    if isinstance(checked, Rejected):
        msg.problems = [Problem.of(e) for e in checked.errors]
        return msg
    msg.customer_id, msg.request_id, msg.payload = checked.customer_id, checked.request_id, body
    msg.features = matrix_from_records([checked.features], as_of)[0]
    return msg


def over_http(url: str) -> Score:
    client = httpx.Client(base_url=url)  # one keep-alive connection

    def score(msg: Message, as_of: date) -> dict[str, Any]:
        body = to_json(msg.payload)
        answer = client.post("/predict", content=body, headers={"content-type": "application/json"})
        answer.raise_for_status()
        scored = from_json(answer.content)
        return {k: scored[k] for k in RESULT_FIELDS}

    return score


def run(kind: str, settings: StreamSettings, stop: threading.Event) -> None:
    score = {
        "passthrough": None,
        "per-message": lambda: in_process(settings.model_tag),
        "per-message-http": lambda: over_http(settings.service_url),
    }[kind]
    scorer = score() if score else None
    ensure_topics(settings, [settings.input_topic, settings.output_topic, settings.error_topic])
    consumer, producer = make_consumer(settings), make_producer(settings)
    consumer.subscribe([settings.input_topic])
    as_of = settings.as_of_or_today()
    while not stop.is_set():
        polled = consumer.poll(timeout_ms=500, max_records=settings.max_batch)
        for records in polled.values():
            for record in records:
                if scorer is None:
                    body = {**from_json(record.value), "source": _source(record)}
                    producer.send(settings.output_topic, key=record.key, value=to_json(body))
                    continue
                msg = decode_one(record, as_of)
                now = datetime.now(UTC)
                if not msg.valid:
                    key, value = error_record(msg, msg.problems, now, 1 << 20)
                    producer.send(settings.error_topic, key=key, value=value)
                else:
                    key, value = result_record(msg, scorer(msg, as_of), now)
                    producer.send(settings.output_topic, key=key, value=value)
        if polled:
            producer.flush()
            consumer.commit(
                {
                    tp: OffsetAndMetadata(records[-1].offset + 1, "", -1)
                    for tp, records in polled.items()
                }
            )
    producer.close()
    consumer.close(autocommit=False)


def _source(record: Any) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["passthrough", "per-message", "per-message-http"])
    for name in ("bootstrap_servers", "input_topic", "output_topic", "error_topic", "group"):
        parser.add_argument("--" + name.replace("_", "-"), required=True)
    optional = ("service_url", "model_tag", "as_of", "max_batch", "session_timeout_ms")
    for name in (*optional, "compression"):
        parser.add_argument("--" + name.replace("_", "-"))
    args = vars(parser.parse_args(argv))
    kind = args.pop("kind")
    settings = StreamSettings(**{k: v for k, v in args.items() if v is not None})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run(kind, settings, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
