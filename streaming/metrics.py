"""The bridge's Prometheus metrics, in a registry of its own (served on `--metrics-port`)."""

import logging
from collections import Counter as Tally

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from models.contract import EVENT_TIME_FIELD, FEATURE_FIELDS
from models.policy import ignored_label
from models.schema import PredictRequest
from streaming.logs import log
from streaming.messages import Message, Problem

logger = logging.getLogger("streaming.bridge")

# Dead letters are labelled by the field at fault and the problem's code, two labels so that
# either can be summed over; a field outside the contract (an unexpected key, chosen by whoever
# wrote the message) is folded into `other` to keep the label set bounded. Codes are the
# contract's fixed set.
_KNOWN_FIELDS = {*PredictRequest.model_fields, *FEATURE_FIELDS, EVENT_TIME_FIELD, "request"}
_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 200, 300, 500, 750, 1000)
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def dead_letter_labels(problem: Problem) -> tuple[str, str]:
    """(field, code) of a dead letter's first problem, as `churn_stream_dead_letters` labels."""
    return (problem.field if problem.field in _KNOWN_FIELDS else "other", problem.code)


class BridgeMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.consumed = Counter(
            "churn_stream_messages_consumed",
            "Messages read from the input topic",
            ["topic", "partition"],
            registry=r,
        )
        self.produced = Counter(
            "churn_stream_results_produced", "Predictions acknowledged by the broker", registry=r
        )
        self.dead_lettered = Counter(
            "churn_stream_dead_letters",
            "Messages sent to the error topic, by the field at fault and the problem's code",
            ["field", "code"],
            registry=r,
        )
        self.ignored_fields = Counter(
            "churn_stream_ignored_fields",
            "Fields of consumed messages that no path reads (ignored, never changing an answer),"
            " by name (`features.NAME` inside features; `other` past the label limit); an"
            " unusable request_id or priority counts too; the event `timestamp` does not",
            ["field"],
            registry=r,
        )
        self.event_time_fallbacks = Counter(
            "churn_stream_event_time_fallback",
            "Messages whose `timestamp` could not be read (reason: wrong_type, bad_date,"
            " out_of_range), so the record's broker timestamp was the event time. A message"
            " without one (absent or null) uses the record time too, normally: not counted",
            ["reason"],
            registry=r,
        )
        self.service_calls = Counter(
            "churn_stream_service_calls", "Scoring calls (one per micro-batch attempt)", registry=r
        )
        self.service_errors = Counter(
            "churn_stream_service_errors", "Failed scoring calls, by kind", ["kind"], registry=r
        )
        self.service_retries = Counter(
            "churn_stream_service_retries", "Scoring calls retried after a failure", registry=r
        )
        self.commits = Counter("churn_stream_commits", "Successful offset commits", registry=r)
        self.commit_failures = Counter(
            "churn_stream_commit_failures", "Offset commits refused (retried later)", registry=r
        )
        self.batch_size = Histogram(
            "churn_stream_batch_size", "Messages per micro-batch", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "churn_stream_batch_seconds",
            "From the first message of a batch to its offset commit",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.service_seconds = Histogram(
            "churn_stream_service_seconds",
            "Duration of one successful scoring call",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "churn_stream_end_to_end_seconds",
            "From the event time (message timestamp, else record time) to the result's produce",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "churn_stream_consumer_lag",
            "High watermark minus committed offset, per assigned partition",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned = Gauge(
            "churn_stream_assigned_partitions", "Partitions assigned to this bridge", registry=r
        )
        self.paused = Gauge(
            "churn_stream_paused", "1 while consumption is paused for scoring retries", registry=r
        )

    def count_policy(self, messages: list[Message]) -> None:
        """Count the ignored fields and unreadable event times of freshly consumed messages.

        Per message, two attribute tests (decoding found both already); labels are touched once
        per distinct value of a poll, not once per message.
        """
        fields: Tally[str] = Tally()
        fallbacks: Tally[str] = Tally()
        for msg in messages:
            if msg.ignored:
                fields.update(msg.ignored)
            if msg.event_time_error is not None:
                fallbacks[msg.event_time_error] += 1
        for name, n in fields.items():
            self.ignored_fields.labels(ignored_label(name)).inc(n)
        for reason, n in fallbacks.items():
            self.event_time_fallbacks.labels(reason).inc(n)

    def serve(self, port: int) -> None:
        """Expose /metrics on `port` (a daemon thread); 0 means no endpoint."""
        if port:
            start_http_server(port, registry=self.registry)


def refresh_lag(
    metrics: BridgeMetrics, consumer: KafkaConsumer, committed: dict[TopicPartition, int]
) -> int:
    """Set each partition's lag (end offset minus our last commit); return the total.

    One ListOffsets request, made every stats interval rather than per batch. Against tansu,
    the test broker, end offsets are wrong once a produce batch holds several records.
    """
    if not committed:
        return 0
    try:
        ends = consumer.end_offsets(list(committed), timeout_ms=5000)
    except KafkaError as exc:
        log(logger, logging.WARNING, "could not read end offsets", error=repr(exc))
        return 0
    total = 0
    for tp, end in ends.items():
        behind = max(0, end - committed[tp])
        metrics.lag.labels(tp.topic, str(tp.partition)).set(behind)
        total += behind
    return total
