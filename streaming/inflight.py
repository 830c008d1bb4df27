"""The bridge's uncommitted messages and the offsets it owes, kept right through rebalances.

Micro-batches in flight: up to two submitted for scoring (scored one after the other; the
older is delivered while the newer is scored) and one being collected behind them.
kafka-python runs rebalance callbacks on its IO thread while the bridge's thread waits in
`poll()`; the lock makes that hand-over explicit.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

from streaming.logs import log
from streaming.messages import Message
from streaming.metrics import BridgeMetrics

logger = logging.getLogger("streaming.bridge")


@dataclass(eq=False)
class Batch:
    """Messages in offset order per partition, validated and scored as of one date."""

    as_of: date
    started: float
    messages: list[Message] = field(default_factory=list)
    future: Future[None] | None = None  # the scoring call, once submitted

    def offsets(self) -> dict[TopicPartition, int]:
        """Offset + 1 of the last message of each partition: what to commit once delivered."""
        return {msg.tp: msg.offset + 1 for msg in self.messages}


class InFlight:
    """The batches submitted (oldest first), the one being collected, and the offsets owed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.pending: list[Batch] = []
        self.collecting: Batch | None = None
        self.committed: dict[TopicPartition, int] = {}  # last offsets this bridge committed
        self._owed: dict[TopicPartition, int] = {}  # delivered, but the commit was refused
        self._rewind: dict[TopicPartition, int] = {}  # revoked while in flight: first offset
        self._lock = threading.Lock()

    def collected(self) -> int:
        return len(self.collecting.messages) if self.collecting else 0

    def add(self, messages: Iterable[Message], as_of: date) -> None:
        with self._lock:
            if self.collecting is None:
                self.collecting = Batch(as_of, started=self._clock())
            self.collecting.messages.extend(messages)

    def head(self) -> Batch | None:
        """The oldest submitted batch: the next to deliver."""
        return self.pending[0] if self.pending else None

    def promote(self) -> Batch:
        """The collected batch joins the submitted ones."""
        with self._lock:
            batch, self.collecting = self.collecting, None
            if batch is None:
                raise RuntimeError("promote() needs a collected batch")
            self.pending.append(batch)
        return batch

    def delivered(self, batch: Batch) -> dict[TopicPartition, int]:
        """`batch` is produced and acknowledged: forget it and return the offsets to commit."""
        with self._lock:
            offsets = {**self._owed, **batch.offsets()}
            self.pending.remove(batch)
        return offsets

    def commit_done(self, offsets: dict[TopicPartition, int]) -> None:
        with self._lock:
            self._owed = {}
            self.committed.update(offsets)

    def commit_refused(self, offsets: dict[TopicPartition, int], owned: set) -> None:
        """Keep what is still ours for the next commit; a moved partition is its new owner's."""
        with self._lock:
            self._owed = {tp: o for tp, o in offsets.items() if tp in owned}

    def abandon(self) -> int:
        """Forget every batch without committing it: whoever consumes next redoes them."""
        with self._lock:
            count = sum(len(b.messages) for b in (*self.pending, self.collecting) if b)
            self.pending, self.collecting = [], None
        return count

    def revoke(self, revoked: set[TopicPartition]) -> int:
        """Drop the revoked partitions' messages, remembering where each partition's started."""
        dropped = 0
        with self._lock:
            for batch in (*self.pending, self.collecting):  # oldest first
                if batch is None:
                    continue
                kept = []
                for msg in batch.messages:
                    if msg.tp in revoked:
                        self._rewind.setdefault(msg.tp, msg.offset)
                    else:
                        kept.append(msg)
                dropped += len(batch.messages) - len(kept)
                batch.messages = kept
            if self.collecting is not None and not self.collecting.messages:
                self.collecting = None
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
