"""The bridge's uncommitted messages and the offsets it owes, kept right through rebalances.

kafka-python runs rebalance callbacks on its IO thread while the bridge's thread waits in
`poll()`; the lock makes that hand-over explicit rather than a property of the library.
"""

import logging
import threading
from collections.abc import Callable, Iterable

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

from streaming.logs import log
from streaming.messages import Message
from streaming.metrics import BridgeMetrics

logger = logging.getLogger("streaming.bridge")


class InFlight:
    """Consumed messages in offset order, not yet committed, plus the offsets owed to Kafka."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.committed: dict[TopicPartition, int] = {}  # last offsets this bridge committed
        self._owed: dict[TopicPartition, int] = {}  # delivered, but the commit was refused
        self._rewind: dict[TopicPartition, int] = {}  # revoked mid-batch: first dropped offset
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.messages)

    def extend(self, messages: Iterable[Message]) -> None:
        with self._lock:
            self.messages.extend(messages)

    def abandon(self) -> int:
        """Forget the batch without committing it: whoever consumes next redoes it."""
        with self._lock:
            count, self.messages = len(self.messages), []
        return count

    def take_offsets(self) -> dict[TopicPartition, int]:
        """The batch is delivered: empty it and return offset + 1 per partition to commit."""
        with self._lock:
            offsets = dict(self._owed)
            for msg in self.messages:
                offsets[msg.tp] = max(offsets.get(msg.tp, 0), msg.offset + 1)
            self.messages = []
        return offsets

    def commit_done(self, offsets: dict[TopicPartition, int]) -> None:
        with self._lock:
            self._owed = {}
            self.committed.update(offsets)

    def commit_refused(self, offsets: dict[TopicPartition, int], owned: set) -> None:
        """Keep what is still ours for the next commit; a moved partition is its new owner's."""
        with self._lock:
            self._owed = {tp: o for tp, o in offsets.items() if tp in owned}

    def revoke(self, revoked: set[TopicPartition]) -> int:
        """Drop the revoked partitions' messages, remembering where they started; count them."""
        with self._lock:
            kept = []
            for msg in self.messages:
                if msg.tp in revoked:
                    self._rewind.setdefault(msg.tp, msg.offset)
                else:
                    kept.append(msg)
            dropped, self.messages = len(self.messages) - len(kept), kept
            for tp in revoked:
                self._owed.pop(tp, None)
                self.committed.pop(tp, None)
        return dropped

    def take_rewinds(self) -> dict[TopicPartition, int]:
        with self._lock:
            rewinds, self._rewind = self._rewind, {}
        return rewinds


class Rebalance(ConsumerRebalanceListener):
    """On revoke, drop the uncommitted messages of the lost partitions; on assign, move a partition
    that came back to its first dropped message (kafka-python keeps the position of a partition
    revoked and assigned again, which would otherwise skip them)."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        inflight: InFlight,
        metrics: BridgeMetrics,
        paused: Callable[[], bool],
    ) -> None:
        self._consumer, self._inflight, self._metrics = consumer, inflight, metrics
        self._paused = paused  # is the bridge backing off, its partitions paused?

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = set(revoked)
        dropped = self._inflight.revoke(revoked)
        for tp in revoked:
            self._metrics.lag.remove(tp.topic, str(tp.partition))
        log(logger, logging.INFO, "partitions revoked", dropped_uncommitted=dropped,
            partitions=sorted(tp.partition for tp in revoked))  # fmt: skip

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = set(assigned)
        for tp, offset in self._inflight.take_rewinds().items():
            if tp in assigned:
                self._consumer.seek(tp, offset)
        if self._paused():
            self._consumer.pause(*assigned)
        self._metrics.assigned.set(len(self._consumer.assignment()))
        log(logger, logging.INFO, "partitions assigned",
            partitions=sorted(tp.partition for tp in assigned))  # fmt: skip
