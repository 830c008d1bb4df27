"""Stand-ins for the bridge's Kafka clients and clock, for driving `Bridge` without a broker.

Every call the bridge makes is appended to one shared `log`, so a test can check the order of
sends, acks and commits; what a fake returns is set by the test, never by elapsed time.
"""

import json
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

TOPIC = "events"
RECORD_MS = 1_780_000_000_000  # the broker's timestamp of every fake record


def consumer_record(
    value: Any, offset: int = 7, key: bytes | None = b"k", partition: int = 1
) -> ConsumerRecord:
    """A consumed record: `value` as is when bytes (or None), else as JSON."""
    raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
    return ConsumerRecord(TOPIC, partition, -1, offset, RECORD_MS, 0, key, raw, [], None, 1, 1, -1)


class FakeClock:
    """A monotonic clock that moves only when told (`advance`), e.g. by a poll's timeout."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeConsumer:
    """Hands out `batches` of records, one poll at a time, from one partition (`tp`).

    A poll while the partition is paused returns nothing, as Kafka's does, and leaves the
    batches where they are; every poll is logged with the state the bridge left behind.
    `on_poll`, if set, runs at each poll (to stop the bridge, say). Each poll moves `clock`
    on, when there is one, by its timeout (at least a millisecond, as a real poll takes).
    """

    def __init__(
        self,
        batches: list[list[ConsumerRecord]],
        log: list[tuple] | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.batches, self.log, self.clock = list(batches), log if log is not None else [], clock
        self.tp = TopicPartition(TOPIC, 1)
        self.commits: list[dict[TopicPartition, int]] = []
        self.paused_tps: set[TopicPartition] = set()
        self.closed: dict[str, bool] | None = None
        self.on_poll: Any = None

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    def poll(self, timeout_ms: int, max_records: int) -> dict:
        paused = self.tp in self.paused_tps
        self.log.append(("poll", "paused" if paused else "live", len(self.commits)))
        if self.clock is not None:
            self.clock.advance(max(timeout_ms, 1) / 1000)
        if self.on_poll is not None:
            self.on_poll()
        if paused or not self.batches:
            return {}
        return {self.tp: self.batches.pop(0)}

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_tps.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_tps.difference_update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_tps)

    def commit(self, offsets: dict) -> None:
        committed = {tp: meta.offset for tp, meta in offsets.items()}
        self.log.append(("commit", committed))
        self.commits.append(committed)

    def close(self, autocommit: bool) -> None:
        self.closed = {"autocommit": autocommit}


class Ack:
    """A send's future: `get()` returns once the broker took the record, or raises `refuse`."""

    def __init__(self, log: list[tuple], key: bytes | None, refuse: KafkaError | None) -> None:
        self.log, self.key, self.refuse = log, key, refuse

    def get(self) -> None:
        if self.refuse is not None:
            self.log.append(("refused", self.key))
            raise self.refuse
        self.log.append(("ack", self.key))


class FakeProducer:
    """Records what is sent; the broker takes every record, except those whose key is in
    `refuse` (their `get()` raises that error)."""

    def __init__(self, log: list[tuple] | None = None) -> None:
        self.log = log if log is not None else []
        self.sent: list[tuple[str, bytes | None]] = []
        self.values: list[dict[str, Any]] = []
        self.refuse: dict[bytes | None, KafkaError] = {}
        self.closed = False

    def send(self, topic: str, key: bytes | None, value: bytes) -> Ack:
        self.log.append(("send", topic, key))
        self.sent.append((topic, key))
        self.values.append(json.loads(value))
        return Ack(self.log, key, self.refuse.get(key))

    def flush(self) -> None:
        self.log.append(("flush",))

    def close(self, timeout: float) -> None:
        self.closed = True
