"""Faults mid-stream: the broker, then the service, killed (SIGKILL) and restarted while a bridge
works through a backlog; the bridge, never restarted, resumes by itself.

Counted by event id (each event has its own `customer_id`) across the output and dead-letter
topics, against what the producer got acknowledged: none lost, and at most one micro-batch
duplicated. Every wait is for an event (records seen, offsets committed, a port answering).
"""

import contextlib
import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.samples import event
from streaming import clients
from streaming.settings import StreamSettings
from tests.streaming.brokers import RestartableBroker
from tests.streaming.support import Kafka, Reader, read_until, start_bridge, stop, unique
from tests.support import Process, process_tree, wait_until

MAX_BATCH = 50
BEFORE, AFTER = 3000, 1000  # events produced before the fault, and once it is over
MID_STREAM = 300  # records seen when the fault is struck


def events(start: int, stop: int) -> list[dict[str, Any]]:
    """Events with ids `c-START`..; every 25th is invalid (age -1), so it is a dead letter."""
    return [event(i, age=-1) if i % 25 == 0 else event(i) for i in range(start, stop)]


def acked_ids(sent: dict[tuple[int, int], bytes]) -> set[str]:
    return {json.loads(raw)["customer_id"] for raw in sent.values()}


def seen_ids(servers: str, topic: str, count: int, bridge: Process) -> Counter[str]:
    """Every record of the output and dead-letter topics, read afresh, counted by event id."""
    out, err = Reader(servers, f"{topic}-out"), Reader(servers, f"{topic}-err")
    try:
        with contextlib.suppress(TimeoutError):  # fewer: the asserts name the missing ids
            read_until([out, err], count, 240, bridge)
        return Counter(r["customer_id"] for r in (*out.records, *err.records))
    finally:
        out.close()
        err.close()


def strike_mid_stream(kafka: Kafka, topic: str, bridge: Process) -> int:
    """Wait until the bridge has written MID_STREAM records (a backlog still ahead of it)."""
    out = Reader(kafka.servers, f"{topic}-out")
    try:
        read_until([out], MID_STREAM, 120, bridge)
        return len(out.records)
    finally:
        out.close()


def check_resumed(kafka: Kafka, topic: str, group: str, sent: dict, bridge: Process) -> None:
    """Everything acked has a result or dead letter, at most one batch twice, all committed."""
    ids = acked_ids(sent)
    assert len(ids) == len(sent)  # one id per event, so ids count events
    try:
        wait_until(lambda: sum(kafka.committed(group).values()) == len(sent), 240, "commits")
    except TimeoutError:
        raise AssertionError(f"committed {kafka.committed(group)} of {len(sent)}") from None
    seen = seen_ids(kafka.servers, topic, len(sent), bridge)
    lost = ids - seen.keys()
    duplicated = sum(n - 1 for n in seen.values())
    print(f"\n{topic}: acked {len(ids)}, lost {len(lost)}, duplicated {duplicated}")
    assert not lost
    assert seen.keys() == ids  # nothing that was not sent
    assert duplicated <= MAX_BATCH
    assert bridge.proc.poll() is None, bridge.log_tail()  # it resumed by itself


@pytest.fixture
def broker(logs_dir: Path) -> Iterator[RestartableBroker]:
    broker = RestartableBroker(logs_dir)
    try:
        yield broker
    finally:
        broker.stop()


def test_broker_killed_mid_stream_and_restarted_the_bridge_loses_nothing(broker, bento, logs_dir):
    kafka = Kafka(broker.port)
    bridge = None
    try:
        topic, group = kafka.topic("broker-kill"), unique("g")
        sent = kafka.send(topic, events(0, BEFORE))
        # tansu 0.6 on S3 answers an idempotent batch retried across its restart as a duplicate
        # (offset -1) without having stored it: results acknowledged, then gone. Kafka stores
        # before it acknowledges; against tansu, the bridge's producer runs without idempotence.
        args = ("--service-url", bento.url, "--max-batch", str(MAX_BATCH), "--no-idempotence")
        bridge = start_bridge(logs_dir, kafka, topic, group, *args)
        seen = strike_mid_stream(kafka, topic, bridge)
        broker.kill()
        assert seen < BEFORE
        broker.restart()
        sent |= kafka.send(topic, events(BEFORE, BEFORE + AFTER))
        check_resumed(kafka, topic, group, sent, bridge)
        assert stop(bridge) == 0
    finally:
        if bridge is not None:
            bridge.stop(signal.SIGKILL)
        kafka.close()


def kill_tree(proc: Process) -> None:
    """SIGKILL `proc` and its descendants: `bentoml serve` starts its worker in a session of its
    own, which a signal to the process group would miss."""
    for pid in reversed(process_tree(proc.proc.pid)):
        with contextlib.suppress(ProcessLookupError):  # gone meanwhile
            os.kill(pid, signal.SIGKILL)
    proc.proc.wait(30)


def test_service_killed_mid_stream_and_restarted_the_bridge_loses_nothing(
    kafka, private_bento, logs_dir
):
    service = private_bento()
    bridge = None
    try:
        topic, group = kafka.topic("service-kill"), unique("g")
        sent = kafka.send(topic, events(0, BEFORE))
        args = ("--service-url", service.url, "--max-batch", str(MAX_BATCH))
        bridge = start_bridge(logs_dir, kafka, topic, group, *args)
        seen = strike_mid_stream(kafka, topic, bridge)
        kill_tree(service)
        assert seen < BEFORE
        private_bento(port=service.port)
        sent |= kafka.send(topic, events(BEFORE, BEFORE + AFTER))
        check_resumed(kafka, topic, group, sent, bridge)
        assert stop(bridge) == 0
    finally:
        if bridge is not None:
            bridge.stop(signal.SIGKILL)


def test_without_idempotence_one_request_in_flight_keeps_the_order(monkeypatch):
    made: list[dict[str, Any]] = []
    monkeypatch.setattr(clients, "KafkaProducer", lambda **config: made.append(config))
    clients.make_producer(StreamSettings(no_idempotence=True))
    clients.make_producer(StreamSettings())
    plain, idempotent = made
    assert plain["enable_idempotence"] is False
    assert plain["max_in_flight_requests_per_connection"] == 1
    assert idempotent["enable_idempotence"] is True
    assert "max_in_flight_requests_per_connection" not in idempotent  # kafka-python's 5
