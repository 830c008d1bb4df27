"""The local engine: one process, chunk by chunk, reading, scoring and writing on helper threads.

A reader thread decodes and validates the next chunk, `SCORERS` threads score chunks side by
side, and a writer thread appends the results to the outputs in input order. pyarrow releases
the GIL while it decodes and encodes parquet and NumPy while it loops over large arrays, so
these overlap.
Memory is bounded by the chunks in flight (one read ahead, `SCORERS` being scored, one being
written, and `QUEUED` waiting before each of the last two), whatever the input size.

One core is left to reading and writing: a second scoring thread bought little speed on two
cores for a peak-memory cost past the batch benchmark's memory target (benchmarks/README.md).
"""

import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from models.contract import ID_COLUMN

from .candidate import Backtest, ChunkPairs
from .duplicates import DuplicateCounter, Duplicates, hash_strings
from .output import PREDICTIONS_FILE, REJECTED_FILE
from .progress import RunProgress
from .reader import Chunk, Source
from .report import Stats, drift_edges
from .scoring import CheckedChunk, RunInfo, check_chunk, prediction_writer, score_checked

DEFAULT_CHUNK_ROWS = 64 * 1024
DUPLICATES_DIR = "_duplicates"
T = TypeVar("T")


def _cores() -> int:
    """The CPUs this process may run on (a container's cpuset), not the host's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


SCORERS = max(1, min(4, _cores() - 1))
# Chunks waiting at each stage beyond the ones being worked on: a stage finishing early finds its
# next chunk ready instead of idling until the slower stage hands one over.
QUEUED = 1


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, with the next one produced on a helper thread while the caller works."""
    with ThreadPoolExecutor(1, thread_name_prefix="batch-read") as pool:
        pending = pool.submit(next, items)
        while True:
            try:
                item = pending.result()
            except StopIteration:  # `items` is exhausted
                return
            pending = pool.submit(next, items)
            yield item


def all_chunks(sources: Iterable[Source], rows: int) -> Iterator[Chunk]:
    for source in sources:
        yield from source.chunks(rows)


def scored_ids(path: Path) -> Iterator:
    """The customer ids of a predictions file (or directory of parts), a row group at a time."""
    for part in sorted(path.glob("*.parquet")) if path.is_dir() else [path]:
        for batch in pq.ParquetFile(part).iter_batches(columns=[ID_COLUMN]):
            yield batch.column(0).drop_null()  # rows without an id are no duplicates


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What the writer needs of a scored chunk (the feature matrix and scores are dropped)."""

    rows: int
    predictions: pa.Table
    rejected: pa.Table
    id_hashes: np.ndarray
    stats: Stats
    pairs: ChunkPairs | None


def _score(
    run: RunInfo, edges: dict[str, np.ndarray], backtest: Backtest | None, checked: CheckedChunk
) -> _Outcome:
    """Score a validated chunk, hash its scored ids and take its statistics."""
    chunk, scored = checked.chunk, score_checked(run, checked)
    stats = Stats()
    stats.update(chunk.source, scored, edges)
    ids = scored.predictions.column(ID_COLUMN)
    hashes = hash_strings(ids.drop_null())
    pairs = None
    if backtest is not None and scored.candidate is not None:
        pairs = backtest.pairs(ids, scored.scores.churn_probability, scored.candidate)
    rows, predictions, rejected = chunk.table.num_rows, scored.predictions, scored.rejected
    return _Outcome(rows, predictions, rejected, hashes, stats, pairs)


def run_local(
    sources: list[Source],
    staging: Path,
    run: RunInfo,
    progress: RunProgress,
    chunk_rows: int,
    backtest: Backtest | None = None,
) -> tuple[Stats, Duplicates]:
    stats, edges = Stats(), drift_edges(run.predictor.metadata)
    dupes = DuplicateCounter(staging / DUPLICATES_DIR)
    has_candidate = run.candidate is not None
    predictions = prediction_writer(staging / PREDICTIONS_FILE, run.explain, has_candidate)
    rejected = pq.ParquetWriter(staging / REJECTED_FILE, run.rejects_schema)

    def write(done: _Outcome) -> None:
        stats.merge(done.stats)
        if backtest is not None and done.pairs is not None:
            backtest.add(done.pairs)
        if done.predictions.num_rows:
            predictions.write_table(done.predictions)
            dupes.add_hashes(done.id_hashes)
        if done.rejected.num_rows:
            rejected.write_table(done.rejected)

    scoring: deque[Future[_Outcome]] = deque()
    writes: deque[Future[None]] = deque()

    def hand_over_oldest() -> None:
        """Queue the oldest scored chunk for the writer, whose one thread keeps input order."""
        done = scoring.popleft().result()
        writes.append(writer.submit(write, done))
        progress.advance(done.rows)
        while len(writes) > QUEUED + 1:
            writes.popleft().result()

    try:
        with (
            ThreadPoolExecutor(SCORERS, thread_name_prefix="batch-score") as scorers,
            ThreadPoolExecutor(1, thread_name_prefix="batch-write") as writer,
        ):
            # The read-ahead thread also validates each chunk: it was otherwise idle half the time.
            checked = (check_chunk(run, chunk) for chunk in all_chunks(sources, chunk_rows))
            for ready in read_ahead(checked):
                scoring.append(scorers.submit(_score, run, edges, backtest, ready))
                if len(scoring) == SCORERS + QUEUED:
                    hand_over_oldest()
            while scoring:
                hand_over_oldest()
            while writes:
                writes.popleft().result()
    finally:
        predictions.close()
        rejected.close()
    duplicates = dupes.count(scored_ids(staging / PREDICTIONS_FILE))
    shutil.rmtree(staging / DUPLICATES_DIR)
    return stats, duplicates
