"""Input files as bounded chunks: parquet (record batches), CSV and JSON lines (blocks of rows).

Every chunk carries the original values as an arrow table (what goes to the rejects file, extra
columns included) and what `validate_frame` should see: the same table for parquet, a pandas
frame for text formats (CSV text becomes numbers where it parses; JSON keeps each value's own
type).

JSON input is one record per line (flat, or nested as the HTTP API takes it: `models.policy`),
or, in a `.json` file that starts with `[`, one array of records (read whole: such files are
small exports; use JSON lines for large ones). A line that is not JSON, or not a JSON object, is
one rejected row (its text kept in `source_text`), never a failed run.
"""

import glob
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from models.contract import DATE_COLUMN, DAYS_COLUMN, INPUT_COLUMNS, NUMERIC_FIELDS
from models.errors import BatchInputError
from models.frames import Frame, is_text
from models.policy import as_flat
from models.records import records_frame

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl"}
FORMATS |= {".ndjson": "jsonl", ".json": "jsonl"}
TEXT = pa.large_string()
READ_BUFFER_BYTES = 1 << 20
# The rejects file's column for the text of a JSON line that is not a record.
SOURCE_TEXT = "source_text"
_NUMBERS_IN_TEXT = (*NUMERIC_FIELDS, DAYS_COLUMN)


class InputError(BatchInputError):
    """An input that does not exist, matches nothing or cannot be read; names the file."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rows `first_row ..` of one source: original values, and the frame to validate.

    `request_codes` (JSON only): per row, None, or why the row is not a record at all
    (`not_json`, `wrong_type`), for `validate_frame`."""

    source: str
    first_row: int
    table: pa.Table
    frame: Frame
    request_codes: np.ndarray | None = None
    absent: dict[str, np.ndarray] | None = None  # JSON: rows lacking each contract field


@dataclass(frozen=True, slots=True)
class InputKind:
    """What an entry point reads: `accepts` picks a directory's files (at any depth when
    `recursive`); with `strict`, a named or matched file it does not accept is an error."""

    description: str
    accepts: Callable[[Path], bool]
    recursive: bool = False
    strict: bool = True


BATCH_INPUTS = InputKind(
    "/".join(FORMATS), lambda p: p.suffix.lower() in FORMATS, recursive=False, strict=True
)


def resolve_inputs(patterns: list[str], kind: InputKind = BATCH_INPUTS) -> list[Path]:
    """Files named directly, the accepted files of a directory (sorted), or a glob's matches;
    each file once, in the order given. The batch script's and the drift report's inputs."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files = path.rglob("*") if kind.recursive else path.iterdir()
            matches = sorted(p for p in files if p.is_file() and kind.accepts(p))
            if not matches:
                raise InputError(f"{pattern}: directory holds no {kind.description} files")
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(pattern):
            named = map(Path, glob.glob(pattern, recursive=True))
            matches = sorted(p for p in named if p.is_file())
            if not matches:
                raise InputError(f"{pattern}: matches no file")
        else:
            raise InputError(f"{pattern}: no such file or directory")
        for match in matches:
            if kind.strict and not kind.accepts(match):
                raise InputError(f"{match}: unsupported file type (use {', '.join(FORMATS)})")
            if match not in found:
                found.append(match)
    return found


def text_frame(table: pa.Table) -> pd.DataFrame:
    """The contract's columns of a CSV chunk (all text) as pandas, to be parsed further."""
    read = (*INPUT_COLUMNS, DAYS_COLUMN)
    return table.select([c for c in read if c in table.column_names]).to_pandas()


class Source:
    """One input file: its schema as read, its row count when known, and its chunks."""

    schema: pa.Schema
    num_rows: int | None  # None where only reading the file tells (CSV)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.format = FORMATS[path.suffix.lower()]
        try:
            self.schema, self.num_rows = getattr(self, f"_open_{self.format}")()
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise InputError(f"{path}: cannot read {self.format}: {exc}") from exc

    def chunks(self, rows: int) -> Iterator[Chunk]:
        first = 0
        try:
            for table, frame, *codes in getattr(self, f"_read_{self.format}")(rows):
                yield Chunk(self.name, first, table, frame, *codes)
                first += table.num_rows
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise InputError(f"{self.path}: cannot read row {first} on: {exc}") from exc

    # parquet: record batches; a string date column is read dictionary-encoded.
    def _open_parquet(self) -> tuple[pa.Schema, int | None]:
        meta = pq.read_metadata(self.path)
        schema = meta.schema.to_arrow_schema()
        return pa.schema([f.with_metadata(None) for f in schema]), meta.num_rows

    def _read_parquet(self, rows: int) -> Iterator[tuple[pa.Table, Frame]]:
        field = self.schema.field(DATE_COLUMN) if DATE_COLUMN in self.schema.names else None
        as_dict = [DATE_COLUMN] if field and is_text(field.type) else []
        # Pages are streamed through a 1 MB buffer instead of pre-reading each row group whole:
        # memory then does not grow with the writer's row-group size (Spark writes 128 MB ones).
        reader = pq.ParquetFile(
            self.path, read_dictionary=as_dict, pre_buffer=False, buffer_size=READ_BUFFER_BYTES
        )
        # A row group at a time: one reader over the whole file held on to buffers as it went
        # (27 MB after 1M rows, 145 MB after 10M), so memory grew with the file. Decoded on this
        # (helper) thread: arrow's own pool threads kept ~15 MB more memory. Chunks end at row
        # group ends, as they did (the dictionary-encoded date column made them).
        for group in range(reader.num_row_groups):
            for batch in reader.iter_batches(rows, row_groups=[group], use_threads=False):
                table = pa.Table.from_batches([batch])
                yield table, table  # typed columns: validated as arrow, no pandas copy

    # CSV: every column as text (the original values); numeric columns parsed for validation.
    def _open_csv(self) -> tuple[pa.Schema, int | None]:
        if self.path.stat().st_size == 0:
            return pa.schema([]), 0
        names = pacsv.open_csv(self.path).schema.names
        return pa.schema([(n, TEXT) for n in names]), None

    def _read_csv(self, rows: int) -> Iterator[tuple[pa.Table, pd.DataFrame]]:
        if not self.schema.names:
            return
        convert = pacsv.ConvertOptions(
            column_types={f.name: TEXT for f in self.schema}, strings_can_be_null=True
        )
        read = pacsv.ReadOptions(block_size=max(1 << 20, rows * 64))
        with pacsv.open_csv(self.path, read_options=read, convert_options=convert) as reader:
            for batch in reader:
                table = pa.Table.from_batches([batch])
                frame = text_frame(table)
                for name in _NUMBERS_IN_TEXT:
                    if name in frame.columns:
                        frame[name] = _numbers_from_text(frame[name])
                yield table, frame

    # JSON: values keep their JSON types for validation; the originals are kept as text.
    def _open_jsonl(self) -> tuple[pa.Schema, int | None]:
        names: dict[str, None] = {}
        rows, unreadable = 0, False
        for record, code, _ in self._json_records():
            names |= dict.fromkeys(record)
            unreadable |= code is not None
            rows += 1
        extra = [(SOURCE_TEXT, TEXT)] if unreadable and SOURCE_TEXT not in names else []
        return pa.schema([*((n, TEXT) for n in names), *extra]), rows

    def _read_jsonl(self, rows: int) -> Iterator[tuple[pa.Table, pd.DataFrame, np.ndarray, dict]]:
        block: list[tuple[dict[str, Any], str | None, str | None]] = []
        for item in self._json_records():
            block.append(item)
            if len(block) == rows:
                yield self._json_chunk(block)
                block = []
        if block:
            yield self._json_chunk(block)

    def _json_records(self) -> Iterator[tuple[dict[str, Any], str | None, str | None]]:
        """(flat record, None, None), or ({}, code, original text) for an item that is not a
        record: `not_json` for a line that does not parse, `wrong_type` for a non-object."""
        with self.path.open("rb") as f:
            head = f.read(READ_BUFFER_BYTES).lstrip()
        if self.path.suffix.lower() == ".json" and head.startswith(b"["):
            items = json.loads(self.path.read_bytes())
            lines: Iterator[tuple[Any, bytes | None]] = ((item, None) for item in items)
        else:
            lines = self._json_lines()
        for value, raw in lines:
            if isinstance(value, dict):
                yield as_flat(value), None, None
            else:
                text = raw.decode("utf-8", "replace") if raw else json.dumps(value)
                yield {}, "not_json" if value is _NOT_JSON else "wrong_type", text.rstrip("\r\n")

    def _json_lines(self) -> Iterator[tuple[Any, bytes]]:
        with self.path.open("rb") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    yield json.loads(line), line
                except ValueError:  # not JSON, or not UTF-8
                    yield _NOT_JSON, line

    def _json_chunk(
        self, block: list[tuple[dict[str, Any], str | None, str | None]]
    ) -> tuple[pa.Table, pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
        names = self.schema.names
        records = [record for record, _, _ in block]
        columns = {n: [_as_text(r.get(n)) for r in records] for n in names if n != SOURCE_TEXT}
        if SOURCE_TEXT in names:
            columns[SOURCE_TEXT] = [text for _, _, text in block]
        table = pa.table({n: pa.array(columns[n], TEXT) for n in names})
        frame, absent = records_frame(records, (n for n in names if n != SOURCE_TEXT))
        codes = np.empty(len(block), object)
        codes[:] = [code for _, code, _ in block]
        return table, frame, codes, absent


_NOT_JSON = object()


def _as_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _numbers_from_text(col: pd.Series) -> pd.Series:
    """CSV text as numbers; text that is not a number stays text, so it fails as `wrong_type`."""
    numbers = pd.to_numeric(col, errors="coerce")
    unparsed = numbers.isna().to_numpy() & col.notna().to_numpy()
    if not unparsed.any():
        return numbers.astype(np.float64)
    mixed = numbers.astype(object)
    mixed[unparsed] = col[unparsed].astype(object)
    return mixed
