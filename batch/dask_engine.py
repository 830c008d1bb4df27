"""The Dask engine: `dask.dataframe.read_parquet` + `map_partitions` running the same scoring
function as the local engine, on a `distributed` cluster (a local one unless `--scheduler`).

Each partition (one parquet row group) is scored on a worker, which writes its own part of the
partitioned outputs (`predictions.parquet/part-F-P.parquet`, same for `rejected.parquet`) into
the staging directory and returns its statistics; the client merges them into the report. The
workers therefore need the input files and the output directory at the same paths (a shared
filesystem), and this package installed, like any Dask job.

A partition may run more than once (Dask re-runs the tasks of a lost worker), so everything it
writes is idempotent: each file is written under a hidden temporary name and renamed over its
final one, and its id hashes go to files of its own that a re-run replaces.
"""

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.comparison import ComparisonState
from models.contract import ID_COLUMN

from .candidate import Backtest, state_from_dict, state_to_dict
from .duplicates import DuplicateCounter, Duplicates
from .engine import DUPLICATES_DIR, scored_ids
from .output import PREDICTIONS_FILE, REJECTED_FILE
from .progress import RunProgress
from .reader import Chunk, InputError, Source
from .report import Stats, drift_edges
from .scoring import RunInfo, prediction_writer, score_chunk

log = logging.getLogger("batch")
STATS_COLUMN = "stats"
COMPARISON_COLUMN = "comparison"  # --candidate-tag: the partition's comparison state


def score_partition(
    part: pd.DataFrame,
    run: RunInfo,
    source: str,
    file_index: int,
    offsets: list[int],
    staging: str,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Score one partition on a worker, write its output parts, return its statistics."""
    number = partition_info["number"] if partition_info else 0
    table = pa.Table.from_pandas(part, preserve_index=False)
    chunk = Chunk(source, offsets[number], table, table)
    scored = score_chunk(run, chunk)
    name = f"part-{file_index:04d}-{number:05d}.parquet"
    with (
        _replacing(Path(staging, PREDICTIONS_FILE, name)) as path,
        prediction_writer(path, run.explain, run.candidate is not None) as w,
    ):
        w.write_table(scored.predictions)
    with _replacing(Path(staging, REJECTED_FILE, name)) as path:
        pq.write_table(scored.rejected, path)
    part = f"{file_index}-{number}"
    dupes = DuplicateCounter(Path(staging, DUPLICATES_DIR), part=part, replace=True)
    dupes.add(scored.predictions.column(ID_COLUMN).drop_null())
    dupes.flush()
    stats = Stats()
    stats.update(source, scored, drift_edges(run.predictor.metadata))
    out = {STATS_COLUMN: [json.dumps(stats.to_dict())], COMPARISON_COLUMN: [None]}
    if scored.candidate is not None:
        state = ComparisonState()
        state.add(scored.scores.churn_probability, scored.candidate)
        out[COMPARISON_COLUMN] = [json.dumps(state_to_dict(state))]
    return pd.DataFrame(out)


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside `path` (readers of the directory skip it) to write;
    once written it replaces `path` in one rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove(directory: Path, keep: Callable[[Path], bool]) -> None:
    for path in directory.iterdir():
        if not keep(path):
            path.unlink()


def _client(scheduler: str | None) -> Any:
    from distributed import Client, LocalCluster

    # Cluster start-up and shutdown chatter is not the run's progress.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(
        n_workers=max(1, min(4, os.cpu_count() or 1)),
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
    )
    return Client(cluster), cluster


def run_dask(
    sources: list[Source],
    staging: Path,
    run: RunInfo,
    scheduler: str | None,
    progress: RunProgress,
    backtest: Backtest | None = None,
) -> tuple[Stats, Duplicates]:
    import dask
    import dask.dataframe as dd
    from distributed import as_completed

    not_parquet = [s.name for s in sources if s.format != "parquet"]
    if not_parquet:
        raise InputError(f"{not_parquet[0]}: the dask engine reads parquet only")
    for name in (PREDICTIONS_FILE, REJECTED_FILE, DUPLICATES_DIR):
        (staging / name).mkdir()
    client, cluster = _client(scheduler)
    try:
        log.info("dask: %s", client)
        shipped = client.scatter(run, broadcast=True, hash=False)
        parts = []
        # Keep our exact column types: no object-to-string conversion on read or in meta.
        with dask.config.set({"dataframe.convert-string": False}):
            for i, source in enumerate(sources):
                if not source.num_rows:
                    continue
                meta = pq.ParquetFile(source.path).metadata
                sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
                offsets = [sum(sizes[:g]) for g in range(len(sizes))]
                frame = dd.read_parquet(source.name, split_row_groups=True, index=False)
                scored = frame.map_partitions(
                    score_partition,
                    shipped,
                    source.name,
                    i,
                    offsets,
                    str(staging),
                    meta=pd.DataFrame(
                        {c: pd.Series([], dtype=object) for c in (STATS_COLUMN, COMPARISON_COLUMN)}
                    ),
                    enforce_metadata=False,
                    align_dataframes=False,
                )
                parts.extend(scored.to_delayed())
        stats = Stats()
        for future in as_completed(client.compute(parts)):
            result = future.result()
            part = Stats.from_dict(json.loads(result[STATS_COLUMN].iloc[0]))
            stats.merge(part)
            if backtest is not None and (compared := result[COMPARISON_COLUMN].iloc[0]):
                backtest.state.merge(state_from_dict(json.loads(compared)))
            progress.advance(part.rows_in)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    # The temporary files of attempts cut short by a lost worker.
    for name in (PREDICTIONS_FILE, REJECTED_FILE, DUPLICATES_DIR):
        _remove(staging / name, keep=lambda path: not path.name.endswith(".tmp"))
    _ensure_readable(staging / PREDICTIONS_FILE, run)
    dupes = DuplicateCounter(staging / DUPLICATES_DIR)
    duplicates = dupes.count(scored_ids(staging / PREDICTIONS_FILE))
    _remove(staging / DUPLICATES_DIR, keep=lambda path: False)
    (staging / DUPLICATES_DIR).rmdir()
    return stats, duplicates


def _ensure_readable(directory: Path, run: RunInfo) -> None:
    """A run with no partitions still leaves readable (empty) outputs."""
    if not any(directory.iterdir()):
        empty = directory / "part-empty.parquet"
        with prediction_writer(empty, run.explain, run.candidate is not None):
            pass
        rejected = directory.parent / REJECTED_FILE / "part-empty.parquet"
        pq.write_table(run.rejects_schema.empty_table(), rejected)
