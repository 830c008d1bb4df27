"""The local engine: one process, chunk by chunk, with reading and writing on helper threads.

Memory is bounded by a few chunks (one being read ahead, one being scored, up to two being
written), whatever the input size. pyarrow releases the GIL while it decodes and encodes
parquet, so on two cores reading and writing overlap with validation and scoring.
"""

import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pyarrow.parquet as pq

from models.contract import ID_COLUMN

from .duplicates import DuplicateCounter, Duplicates
from .output import PREDICTIONS_FILE, REJECTED_FILE
from .progress import RunProgress
from .reader import Chunk, Source
from .report import Stats, drift_edges
from .scoring import RunInfo, ScoredChunk, prediction_writer, score_chunk

DEFAULT_CHUNK_ROWS = 64 * 1024
DUPLICATES_DIR = "_duplicates"
T = TypeVar("T")
_END = object()


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, with the next one produced on a helper thread while the caller works."""
    with ThreadPoolExecutor(1, thread_name_prefix="batch-read") as pool:
        pending = pool.submit(next, items, _END)
        while (item := pending.result()) is not _END:
            pending = pool.submit(next, items, _END)
            yield item  # type: ignore[misc]


def all_chunks(sources: Iterable[Source], rows: int) -> Iterator[Chunk]:
    for source in sources:
        yield from source.chunks(rows)


def scored_ids(path: Path) -> Iterator:
    """The customer ids of a predictions file (or directory of parts), a row group at a time."""
    for part in sorted(path.glob("*.parquet")) if path.is_dir() else [path]:
        for batch in pq.ParquetFile(part).iter_batches(columns=[ID_COLUMN]):
            yield batch.column(0)


def run_local(
    sources: list[Source], staging: Path, run: RunInfo, progress: RunProgress, chunk_rows: int
) -> tuple[Stats, Duplicates]:
    stats, edges = Stats(), drift_edges(run.predictor.metadata)
    dupes = DuplicateCounter(staging / DUPLICATES_DIR)
    predictions = prediction_writer(staging / PREDICTIONS_FILE)
    rejected = pq.ParquetWriter(staging / REJECTED_FILE, run.rejects_schema)

    def write(source: str, scored: ScoredChunk) -> None:
        stats.update(source, scored, edges)
        if scored.predictions.num_rows:
            predictions.write_table(scored.predictions)
            dupes.add(scored.predictions.column(ID_COLUMN))
        if scored.rejected.num_rows:
            rejected.write_table(scored.rejected)

    writes: deque[Future[None]] = deque()
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="batch-write") as writer:
            for chunk in read_ahead(all_chunks(sources, chunk_rows)):
                scored = score_chunk(run, chunk)
                writes.append(writer.submit(write, chunk.source, scored))
                progress.advance(chunk.table.num_rows)
                while len(writes) > 1:
                    writes.popleft().result()
            while writes:
                writes.popleft().result()
    finally:
        predictions.close()
        rejected.close()
    duplicates = dupes.count(scored_ids(staging / PREDICTIONS_FILE))
    shutil.rmtree(staging / DUPLICATES_DIR)
    return stats, duplicates
