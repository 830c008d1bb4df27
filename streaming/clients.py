"""kafka-python clients configured for at-least-once delivery, and topic creation.

The benchmark's baselines build their clients here too, so every variant runs with the same
consumer and producer settings.
"""

import logging
import os
import socket
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import TopicAlreadyExistsError

from streaming.logs import log
from streaming.settings import StreamSettings

logger = logging.getLogger(__name__)

# How long the broker may hold a fetch that found no new record: Kafka answers as soon as one
# arrives, but some brokers (tansu, the test broker) wait the full time, which adds to latency.
FETCH_MAX_WAIT_MS = 100
# Producer batching: `flush()` ends every micro-batch, so lingering only helps inside one batch.
PRODUCER_LINGER_MS = 5
PRODUCER_BATCH_BYTES = 256 * 1024
# Compression (`--compression`, gzip unless asked; `auto` is lz4 when installed): without the
# optional C `crc32c` package, kafka-python checksums every produced batch in pure Python under
# the GIL, and a compressed batch is far smaller to check; gzip is in the standard library.
# Figures: benchmarks/README.md, "Streaming".


def client_id(role: str) -> str:
    return f"churn-stream-{role}-{socket.gethostname()}-{os.getpid()}"


def make_consumer(settings: StreamSettings, **overrides: Any) -> KafkaConsumer:
    """A group member that never commits by itself and starts a new group at the beginning."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": client_id("consumer"),
        "group_id": settings.group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.max_batch,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        **overrides,
    }
    return KafkaConsumer(**config)


def make_producer(settings: StreamSettings, **overrides: Any) -> KafkaProducer:
    """Each record acknowledged by all in-sync replicas, written once and in order per partition."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": client_id("producer"),
        "acks": "all",
        "enable_idempotence": not settings.no_idempotence,
        # Without idempotence a retried request could overtake the next: one in flight keeps order.
        **({"max_in_flight_requests_per_connection": 1} if settings.no_idempotence else {}),
        "linger_ms": PRODUCER_LINGER_MS,
        "batch_size": PRODUCER_BATCH_BYTES,
        "compression_type": None if settings.compression == "none" else settings.compression,
        **overrides,
    }
    return KafkaProducer(**config)


def ensure_topics(settings: StreamSettings, topics: list[str]) -> None:
    """Create the topics that do not exist yet; one created meanwhile by someone else is fine."""
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers.split(","), client_id=client_id("admin")
    )
    try:
        existing = set(admin.list_topics())
        for topic in topics:
            if topic in existing:
                continue
            spec = {
                "num_partitions": settings.partitions,
                "replication_factor": settings.replication_factor,
            }
            try:
                admin.create_topics({topic: spec}, wait_for_metadata=True)
                log(logger, logging.INFO, "created topic", topic=topic, **spec)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
