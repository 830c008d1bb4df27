"""Kafka helpers for the bridge tests: topics, producing, reading back, group offsets, bridges."""

import json
import signal
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AS_OF
from tests.expected import feature_matrix
from tests.support import Process, free_port, spawn, wait_until

PARTITIONS = 3
# Group join takes about half the session timeout on the test broker: keep it short.
FAST_GROUP = ("--session-timeout-ms", "6000", "--heartbeat-interval-ms", "1000")


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


class Kafka:
    """Admin, producer and readers for one test broker."""

    def __init__(self, port: int) -> None:
        self.servers = f"127.0.0.1:{port}"
        self.admin = KafkaAdminClient(bootstrap_servers=self.servers)
        self.producer = KafkaProducer(bootstrap_servers=self.servers, acks="all", linger_ms=2)

    def topic(self, name: str) -> str:
        """A new input topic, with its output (`-out`) and error (`-err`) topics made too, so
        readers can attach before the bridge starts."""
        topic = unique(name)
        spec = {"num_partitions": PARTITIONS, "replication_factor": 1}
        self.admin.create_topics(
            {t: spec for t in (topic, f"{topic}-out", f"{topic}-err")}, wait_for_metadata=True
        )
        return topic

    def send(self, topic: str, values: Iterable[Any], one_per_batch: bool = False) -> dict:
        """Produce `values` (bytes as is, anything else as JSON) round-robin over the partitions.

        Returns {(partition, offset): bytes sent}. `one_per_batch` waits for each record's ack
        before the next: the test broker reports correct end offsets only for such topics.
        """
        sent, futures = {}, []
        for i, value in enumerate(values):
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            future = self.producer.send(topic, value=raw, partition=i % PARTITIONS)
            futures.append((future, raw))
            if one_per_batch:
                future.get(timeout=10)
        self.producer.flush()
        for future, raw in futures:
            meta = future.get(timeout=10)
            sent[(meta.partition, meta.offset)] = raw
        return sent

    def committed(self, group: str) -> dict[int, int]:
        offsets = self.admin.list_group_offsets({group: None}).get(group, {})
        return {tp.partition: meta.offset for tp, meta in offsets.items()}

    def close(self) -> None:
        self.producer.close()
        self.admin.close()


class Reader:
    """Everything on a topic, read from the beginning, accumulating across calls."""

    def __init__(self, servers: str, topic: str) -> None:
        self.records: list[dict[str, Any]] = []
        self.keys: list[bytes | None] = []
        self._consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        self._consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        self._consumer.seek_to_beginning()

    def poll(self) -> list[dict[str, Any]]:
        for batch in self._consumer.poll(timeout_ms=200).values():
            for r in batch:
                self.records.append(json.loads(r.value))
                self.keys.append(r.key)
        return self.records

    def sources(self) -> list[tuple[int, int]]:
        return [(r["source"]["partition"], r["source"]["offset"]) for r in self.records]

    def close(self) -> None:
        self._consumer.close()


def read_until(readers: list[Reader], count: int, timeout: float, bridge: Process | None) -> None:
    """Poll until the readers together hold `count` records (failing early if the bridge died)."""

    def enough() -> bool:
        if bridge is not None and bridge.proc.poll() is not None:
            raise RuntimeError(f"bridge exited {bridge.proc.returncode}:\n{bridge.log_tail()}")
        return sum(len(r.poll()) for r in readers) >= count

    wait_until(enough, timeout, f"{count} records")


def start_bridge(
    log_dir: Path, kafka: Kafka, topic: str, group: str, *args: str, metrics: bool = True
) -> Process:
    """`python -m streaming.bridge` reading `topic` into `topic`-out / `topic`-err."""
    port = free_port() if metrics else 0
    cmd = [
        sys.executable, "-m", "streaming.bridge",
        *("--bootstrap-servers", kafka.servers, "--input-topic", topic, "--group", group),
        *("--output-topic", f"{topic}-out", "--error-topic", f"{topic}-err"),
        *("--as-of", AS_OF.isoformat(), "--metrics-port", str(port), "--stats-interval-s", "1"),
        *FAST_GROUP, "--retry-backoff-ms", "100", "--retry-max-backoff-ms", "1000",
        "--health-port", "0",  # a test that probes it names a port of its own
        *args,
    ]  # fmt: skip
    return spawn("bridge", cmd, port, log_dir / f"bridge-{unique(group)}.log", {})


def metrics(bridge: Process) -> dict[tuple[str, tuple], float]:
    """The bridge's /metrics as {(sample name, sorted labels): value}."""
    text = httpx.get(f"{bridge.url}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(bridge: Process, name: str, **labels: str) -> float:
    """One sample's value; 0 when the bridge has not created it yet."""
    try:
        return metrics(bridge).get((name, tuple(sorted(labels.items()))), 0.0)
    except httpx.HTTPError:
        return 0.0


def stop(bridge: Process, sig: int = signal.SIGTERM) -> int:
    started = time.monotonic()
    code = bridge.stop(sig, timeout=30)
    assert time.monotonic() - started < 30, bridge.log_tail()
    return code


def canonical_matrix(records: Iterable[dict[str, Any]]) -> Any:
    """The model's matrix of canonical flat events (as `models.samples.event` makes them), built
    here rather than by the code under test, as of AS_OF (the bridge's as-of date in these
    tests)."""
    return feature_matrix(records, AS_OF)


def drain(
    port: int, log_dir: Path, name: str, events: list[Any], *args: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[tuple[int, int], bytes]]:
    """`events` sent to a new topic and scored by a bridge (`args`: its flags) until every one
    is a result or a dead letter: (results, dead letters, what was sent by coordinates)."""
    kafka = Kafka(port)
    topic = kafka.topic(name)
    results, errors = Reader(kafka.servers, f"{topic}-out"), Reader(kafka.servers, f"{topic}-err")
    try:
        sent = kafka.send(topic, events)
        bridge = start_bridge(log_dir, kafka, topic, topic, *args)
        try:
            read_until([results, errors], len(sent), 180, bridge)
        finally:
            assert stop(bridge) == 0
        return results.records, errors.records, sent
    finally:
        kafka.close()
        results.close()
        errors.close()
