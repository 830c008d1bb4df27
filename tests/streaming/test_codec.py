"""The result codec: by default one every consumer reads, lz4 only when asked.

A new user's consumer is plain kafka-python without the lz4 package: it runs in a subprocess
with `lz4` made unimportable before kafka is imported. The codec on the wire is read from the
fetched record batches as kafka-python parses them, not from the bridge's settings.
"""

import json
import subprocess
import sys
from typing import Any

import kafka.consumer.fetcher
from kafka import KafkaConsumer, TopicPartition
from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatch

from models.samples import event
from tests.streaming.support import PARTITIONS, drain

EVENTS: list[Any] = [
    *(event(i) for i in range(12)),
    {"customer_id": "bad", "age": 42},  # two dead letters: a missing field, and not JSON
    b"not json",
]
# Reads `count` records of each topic named on the command line, from the beginning, and
# prints them; an undecodable batch makes kafka-python raise, so the process exits non-zero.
NO_LZ4_CONSUMER = """
import json, sys
sys.modules["lz4"] = None  # not installed, as for a new user: kafka-python cannot import it
import kafka.codec
from kafka import KafkaConsumer, TopicPartition
assert not kafka.codec.has_lz4()
servers, count, topics = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
out = {}
for topic in topics:
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, p) for p in range(3)])
    consumer.seek_to_beginning()
    records = []
    while len(records) < count:
        for batch in consumer.poll(timeout_ms=500).values():
            records += [json.loads(r.value) for r in batch]
    consumer.close()
    out[topic] = records
print(json.dumps(out))
"""


def read_without_lz4(servers: str, count: int, *topics: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", NO_LZ4_CONSUMER, servers, str(count), *topics]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def wire_codecs(monkeypatch: Any, servers: str, topic: str, count: int) -> set[int]:
    """The codec attribute of every record batch a consumer fetched, as kafka-python parsed it."""
    seen: set[int] = set()

    class Spy(MemoryRecords):  # type: ignore[misc]
        def next_batch(self, *args: Any, **kwargs: Any) -> Any:
            batch = super().next_batch(*args, **kwargs)
            if isinstance(batch, DefaultRecordBatch):
                seen.add(batch.compression_type)
            return batch

    monkeypatch.setattr(kafka.consumer.fetcher, "MemoryRecords", Spy)
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        read = 0
        while read < count:
            read += sum(len(b) for b in consumer.poll(timeout_ms=500).values())
    finally:
        consumer.close()
    return seen


def test_by_default_a_consumer_without_lz4_reads_the_results_and_dead_letters(
    kafka, kafka_broker, bento, logs_dir, monkeypatch
):
    results, errors, _ = drain(
        kafka_broker.port, logs_dir, "codec-default", EVENTS, "--service-url", bento.url
    )
    assert (len(results), len(errors)) == (12, 2)
    topic = results_topic(results)
    read = read_without_lz4(kafka.servers, len(results), f"{topic}-out")
    assert read.returncode == 0, read.stderr
    read_errors = read_without_lz4(kafka.servers, len(errors), f"{topic}-err")
    assert read_errors.returncode == 0, read_errors.stderr
    got = json.loads(read.stdout)[f"{topic}-out"]
    assert sorted(r["customer_id"] for r in got) == sorted(e["customer_id"] for e in EVENTS[:12])
    dead = json.loads(read_errors.stdout)[f"{topic}-err"]
    assert sorted(r["source"]["offset"] for r in dead) == sorted(
        r["source"]["offset"] for r in errors
    )
    codecs = wire_codecs(monkeypatch, kafka.servers, f"{topic}-out", len(results))
    assert codecs == {DefaultRecordBatch.CODEC_GZIP}


def test_lz4_when_asked_is_lz4_on_the_wire_which_a_consumer_without_lz4_cannot_read(
    kafka, kafka_broker, bento, logs_dir, monkeypatch
):
    args = ("--service-url", bento.url, "--compression", "lz4")
    results, errors, _ = drain(kafka_broker.port, logs_dir, "codec-lz4", EVENTS, *args)
    topic = results_topic(results)
    for name, count in ((f"{topic}-out", len(results)), (f"{topic}-err", len(errors))):
        assert wire_codecs(monkeypatch, kafka.servers, name, count) == {
            DefaultRecordBatch.CODEC_LZ4
        }
    # What the default spares a new user: kafka-python without lz4 fails on these batches.
    read = read_without_lz4(kafka.servers, len(results), f"{topic}-out")
    assert read.returncode != 0
    assert "lz4" in read.stderr.lower(), read.stderr


def results_topic(results: list[dict[str, Any]]) -> str:
    """The input topic the results came from (each result names it)."""
    (topic,) = {r["source"]["topic"] for r in results}
    return str(topic)
