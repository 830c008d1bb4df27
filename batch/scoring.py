"""The one scoring function both engines run on a chunk: the service's validation, features and
model (models/), then arrow tables for the predictions and the rejects files."""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from models.contract import (
    CONFIDENCE_LEVELS,
    ERROR_COLUMN,
    FEATURES,
    ID_COLUMN,
    INPUT_COLUMNS,
    PREDICTION_COLUMNS,
)
from models.explain import CONTRIBUTION_COLUMNS, REASON_COLUMNS, Reasons, explain
from models.features import matrix_from_frame
from models.frames import is_text, validate_frame
from models.prediction import reason_columns
from models.predictor import ChurnPredictor, Scores

from .reader import TEXT, Chunk

MODEL_VERSION_COLUMN = "model_version"
AS_OF_COLUMN = "as_of"
SCORED_AT_COLUMN = "scored_at"
CANDIDATE_COLUMN = "candidate_churn_probability"  # --candidate-tag: the candidate's P(churn)
SOURCE_COLUMN = "source_file"
ROW_COLUMN = "source_row"
_LEVEL_TEXT = pa.array(CONFIDENCE_LEVELS, pa.string())
# Text of a few distinct values: arrow dictionaries, which parquet stores as they are.
LABEL = pa.dictionary(pa.int8(), pa.string())

PREDICTION_SCHEMA = pa.schema(
    [
        pa.field(PREDICTION_COLUMNS[0], TEXT),  # null where the input has no id column
        pa.field(PREDICTION_COLUMNS[1], pa.int64(), nullable=False),
        pa.field(PREDICTION_COLUMNS[2], pa.float64(), nullable=False),
        pa.field(PREDICTION_COLUMNS[3], pa.float64(), nullable=False),
        pa.field(PREDICTION_COLUMNS[4], LABEL, nullable=False),
        pa.field(MODEL_VERSION_COLUMN, LABEL, nullable=False),
        pa.field(AS_OF_COLUMN, pa.date32(), nullable=False),
        pa.field(SCORED_AT_COLUMN, pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


# `--explain`: the largest contributions per customer (models.explain), largest first.
REASON_FIELDS = [
    field
    for name, value in zip(REASON_COLUMNS, CONTRIBUTION_COLUMNS, strict=True)
    for field in (pa.field(name, LABEL), pa.field(value, pa.float64()))
]
_FEATURE_TEXT = pa.array(FEATURES, pa.string())


CANDIDATE_FIELD = pa.field(CANDIDATE_COLUMN, pa.float64(), nullable=False)


def prediction_schema(explain: bool = False, candidate: bool = False) -> pa.Schema:
    extra = [*([CANDIDATE_FIELD] if candidate else []), *(REASON_FIELDS if explain else [])]
    return pa.schema([*PREDICTION_SCHEMA, *extra]) if extra else PREDICTION_SCHEMA


def prediction_writer(
    path: Path, explain: bool = False, candidate: bool = False
) -> pq.ParquetWriter:
    """The predictions file, written for speed (the write is a large share of a run's CPU time):
    - the label columns arrive as dictionaries: parquet takes them as its dictionary pages
      instead of hashing every value again;
    - no dictionary pages for ids, probabilities or the 0/1 prediction (no gain, all cost);
    - min/max statistics only for numbers and dates (the text ones compared every string);
    - the arrow schema is not stored, so every reader sees the label columns as plain text.
    """
    schema = prediction_schema(explain, candidate)
    labels = [f.name for f in schema if f.type == LABEL]
    ordered = [f.name for f in schema if not (is_text(f.type) or f.type == LABEL)]
    return pq.ParquetWriter(
        path,
        schema,
        use_dictionary=[*labels, AS_OF_COLUMN, SCORED_AT_COLUMN],
        write_statistics=ordered,
        store_schema=False,
    )


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What every chunk of one run shares: model, as-of date, the rejects file's schema."""

    predictor: ChurnPredictor
    as_of: date
    rejects_schema: pa.Schema
    explain: bool = False
    candidate: ChurnPredictor | None = None  # --candidate-tag: scored beside the served model


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """One chunk's outcome: every input row is in exactly one of the two tables."""

    predictions: pa.Table
    rejected: pa.Table
    features: np.ndarray  # the scored rows' feature matrix (for drift)
    scores: Scores
    levels: np.ndarray  # int8: each scored row's index into CONFIDENCE_LEVELS
    reasons: np.ndarray  # object: the readable reason of each rejected row
    candidate: np.ndarray | None = None  # the candidate's P(churn) of the scored rows


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return TEXT if pa.types.is_string(t) else t


def rejects_schema(schemas: list[pa.Schema]) -> pa.Schema:
    """The rejects file's columns: where the row came from, every input column (its type when all
    inputs agree on it, else text), then the reason. Built before reading, so it never changes."""
    types: dict[str, set[pa.DataType]] = {name: set() for name in INPUT_COLUMNS}
    for schema in schemas:
        for field in schema:
            types.setdefault(field.name, set()).add(_plain(field.type))
    ours = {SOURCE_COLUMN, ROW_COLUMN, ERROR_COLUMN}
    fields = [pa.field(SOURCE_COLUMN, pa.string()), pa.field(ROW_COLUMN, pa.int64())]
    for name, seen in types.items():
        kind = next(iter(seen)) if len(seen) == 1 else TEXT
        # An input column named like one of ours keeps its values under another name.
        out = f"input_{name}" if name in ours else name
        fields.append(pa.field(out, kind, metadata={"input": name}))
    return pa.schema([*fields, pa.field(ERROR_COLUMN, pa.string())])


def _as_type(col: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    if col.type == kind:
        return col
    try:
        return col.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Nested values have no arrow cast to text; their Python form is still readable.
        return pa.chunked_array([pa.array([_text(v) for v in col.to_pylist()], kind)])


_REPEATED: dict[tuple[object, pa.DataType], pa.Array] = {}
_REPEATED_MAX_ROWS = 1 << 17  # a local run's chunks; Dask's row-group partitions are not kept


def _repeated(value: object, kind: pa.DataType, n: int) -> pa.Array:
    """`value` n times, as a slice of one array per value: the chunks of a run share its
    buffers instead of each holding its own copy (2 MB of model tags per 64K rows)."""
    if n > _REPEATED_MAX_ROWS:
        return pa.repeat(pa.scalar(value, kind), n)
    have = _REPEATED.get((value, kind))
    if have is None or len(have) < n:
        have = _REPEATED[(value, kind)] = pa.repeat(pa.scalar(value, kind), n)
    return have.slice(0, n)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def rejected_table(chunk: Chunk, rows: np.ndarray, reasons: np.ndarray, schema: pa.Schema):
    """The original values of `rows` of the chunk, typed as `schema`, with source and reason."""
    original = chunk.table.take(pa.array(rows))
    columns = [
        pa.array(np.full(len(rows), chunk.source, object), pa.string()),
        pa.array(rows + chunk.first_row, pa.int64()),
    ]
    for field in schema:
        if not field.metadata:
            continue
        name = field.metadata[b"input"].decode()
        if name in original.column_names:
            columns.append(_as_type(original.column(name), field.type))
        else:
            columns.append(pa.nulls(len(rows), field.type))
    columns.append(pa.array(reasons, pa.string()))
    return pa.table(columns, schema=schema)


@dataclass(frozen=True, slots=True)
class CheckedChunk:
    """A chunk after validation: which rows passed, why the others did not, the features."""

    chunk: Chunk
    valid: np.ndarray  # bool, one per row of the chunk
    errors: np.ndarray  # object: the reason of each failing row, None elsewhere
    features: np.ndarray  # the valid rows' feature matrix


def check_chunk(run: RunInfo, chunk: Chunk) -> CheckedChunk:
    """Validate a chunk and build its feature matrix, as the service does."""
    checked = validate_frame(chunk.frame, run.as_of, chunk.request_codes, chunk.absent)
    return CheckedChunk(chunk, checked.valid, checked.errors, matrix_from_frame(checked))


def score_chunk(run: RunInfo, chunk: Chunk, scored_at: datetime | None = None) -> ScoredChunk:
    """Validate, build features and score one chunk exactly as the service does."""
    return score_checked(run, check_chunk(run, chunk), scored_at)


def score_checked(
    run: RunInfo, checked: CheckedChunk, scored_at: datetime | None = None
) -> ScoredChunk:
    """Score a validated chunk; every row ends in the predictions or the rejects table."""
    chunk, valid, features = checked.chunk, checked.valid, checked.features
    scores = run.predictor.score(features)
    n = len(scores)
    if ID_COLUMN not in chunk.table.column_names:
        ids = pa.chunked_array([pa.nulls(n, TEXT)])
    elif n:
        ids = chunk.table.column(ID_COLUMN)  # an integer id casts to its decimal text
        ids = ids if n == chunk.table.num_rows else ids.filter(pa.array(valid))
    else:
        ids = pa.chunked_array([], TEXT)
    when = scored_at or datetime.now(UTC)
    levels = scores.band
    predictions = pa.table(
        [
            ids.cast(TEXT),
            pa.array(scores.prediction, pa.int64()),
            pa.array(scores.churn_probability, pa.float64()),
            pa.array(scores.probability, pa.float64()),
            pa.DictionaryArray.from_arrays(levels, _LEVEL_TEXT),
            pa.DictionaryArray.from_arrays(_repeated(0, pa.int8(), n), [run.predictor.tag]),
            _repeated(run.as_of, pa.date32(), n),
            pa.repeat(pa.scalar(when, PREDICTION_SCHEMA.field(SCORED_AT_COLUMN).type), n),
        ],
        schema=PREDICTION_SCHEMA,
    )
    candidate = None
    if run.candidate is not None:
        candidate = run.candidate.churn_probability(features) if n else np.empty(0)
        predictions = predictions.append_column(CANDIDATE_FIELD, pa.array(candidate, pa.float64()))
    if run.explain:
        predictions = _with_reasons(predictions, explain(run.predictor, features))
    bad = np.flatnonzero(~valid)
    reasons = checked.errors[bad]
    rejected = rejected_table(chunk, bad, reasons, run.rejects_schema)
    return ScoredChunk(predictions, rejected, features, scores, levels, reasons, candidate)


def _with_reasons(predictions: pa.Table, reasons: Reasons) -> pa.Table:
    """The table with `reason_k` (feature name) and `contribution_k` (log-odds) columns."""
    for field, values in zip(REASON_FIELDS, reason_columns(reasons).values(), strict=True):
        if field.type == LABEL:
            column = pa.DictionaryArray.from_arrays(values, _FEATURE_TEXT)
        else:
            column = pa.array(values, pa.float64())
        predictions = predictions.append_column(field, column)
    return predictions
