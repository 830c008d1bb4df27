"""Drift over served traffic: the batch script's report (DIR/report.json and DIR/report.html) of
prediction-log files (CHURN_PREDICTION_LOG, docs/monitoring.md) or of the Kafka bridge's
results dumped to JSON lines.

    python -m batch.drift PATH... --output DIR [--since ISO] [--until ISO] [--model TAG]
        [--fail-on-anomaly] [--overwrite] [--quiet]

PATH is a file, a directory (its prediction-log files `data.*.log*`, rotated ones included, and
`.jsonl` / `.ndjson` / `.json` files, at any depth) or a glob. Each line is one JSON record; a
record counts when `--since` <= its time (`scored_at`, else `timestamp`; naive means UTC) <
`--until` and it was served by the report's model: `--model`, else the one version the records
name (several: exit 2, pick one with --model). Its scores follow from `churn_probability`
(`models.predictor.scores_from_probability`, as on every path); features it lacks
(`age`, `income`, `purchase_history`, `days_since_purchase`: Kafka results carry none) get no
PSI. A line that is not a JSON object, or lacks a valid `churn_probability`, is a rejected row.

Exit codes: 0 done, 1 failed, 2 bad usage or unreadable input, 3 anomalies (--fail-on-anomaly).
"""

import argparse
import fnmatch
import glob
import json
import logging
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from models.contract import FEATURES, ID_COLUMN
from models.errors import ModelUnavailableError
from models.predictor import scores_from_probability
from models.settings import SharedSettings

from .duplicates import DuplicateCounter
from .html import render_html
from .output import REPORT_HTML, REPORT_JSON, check_target, staged_output
from .predict import run_command
from .reader import InputError
from .report import Stats, build_report, drift_edges

log = logging.getLogger("batch")

# BentoML's monitor data files (`data.<worker>.log`, rotated: `data.<worker>.log.<date>`) and
# JSON-lines dumps; its schema files (`schema.<worker>.log`) are not records.
LOG_FILE_PATTERN = "data.*.log*"
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
CHUNK_ROWS = 64 * 1024
TIME_FIELDS = ("scored_at", "timestamp")  # the prediction log's, else the bridge results'
PROBABILITY = "churn_probability"
MODEL_FIELD = "model_version"
TITLE = "Churn drift report: served traffic"


def _utc(text: str) -> datetime:
    """An ISO 8601 date or datetime (a trailing Z allowed); naive means UTC."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _moment(text: str) -> datetime:
    try:
        return _utc(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or datetime") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="churn-drift", description=__doc__.split("\n\n")[0].replace("\n", " ")
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, directory or glob")
    p.add_argument("--output", "-o", required=True, type=Path, metavar="DIR")
    p.add_argument("--since", type=_moment, metavar="ISO", help="first time counted (UTC)")
    p.add_argument("--until", type=_moment, metavar="ISO", help="first time not counted (UTC)")
    p.add_argument(
        "--model",
        metavar="TAG",
        help="report on the predictions of this model, against its training profile "
        "(default: the one version the records name)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.add_argument("--fail-on-anomaly", action="store_true", help="exit 3 if anomalies are found")
    p.add_argument("--quiet", "-q", action="store_true", help="only errors")
    p.add_argument("--verbose", "-v", action="store_true", help="tracebacks on failure")
    return p


def _is_record_file(path: Path) -> bool:
    return fnmatch.fnmatch(path.name, LOG_FILE_PATTERN) or path.suffix.lower() in JSON_SUFFIXES


def resolve_paths(patterns: list[str]) -> list[Path]:
    """Files named directly (any name), the record files under a directory, a glob's files."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and _is_record_file(p))
            if not matches:
                raise InputError(
                    f"{pattern}: directory holds no prediction-log ({LOG_FILE_PATTERN}) or "
                    f"{'/'.join(JSON_SUFFIXES)} files"
                )
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            matches = [p for p in matches if p.is_file()]
            if not matches:
                raise InputError(f"{pattern}: matches no file")
        else:
            raise InputError(f"{pattern}: no such file or directory")
        found += [m for m in matches if m not in found]
    return found


def _lines(path: Path) -> Iterator[tuple[dict[str, Any] | None, str | None]]:
    """(record, None) per JSON-object line, or (None, why not) per other non-blank line."""
    try:
        with path.open("rb") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError:
                    yield None, "record: is not valid JSON"
                    continue
                if isinstance(value, dict):
                    yield value, None
                else:
                    yield None, "record: must be a JSON object"
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _problem(record: dict[str, Any]) -> str | None:
    """Why a record cannot be counted as a prediction, or None."""
    p = record.get(PROBABILITY)
    if p is None:
        return f"{PROBABILITY}: is missing"
    if not _number(p) or not 0.0 <= p <= 1.0:
        return f"{PROBABILITY}: must be a number between 0 and 1"
    for name in FEATURES:
        value = record.get(name)
        if value is not None and not _number(value):
            return f"{name}: must be a number"
    return None


@dataclass
class Selection:
    """Which records count: a time window and one model version (fixed by --model, else by
    the first record that names one)."""

    since: datetime | None
    until: datetime | None
    model: str | None
    fixed: bool
    outside_window: int = 0
    other_model: int = 0
    other_models: set[str] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None

    def keep(self, record: dict[str, Any]) -> bool:
        """Whether `record` counts; the skipped ones are tallied."""
        moment = self._time(record)
        if moment is None:
            if self.since or self.until:
                self.outside_window += 1
                return False
        elif (self.since and moment < self.since) or (self.until and moment >= self.until):
            self.outside_window += 1
            return False
        version = record.get(MODEL_FIELD)
        if isinstance(version, str) and version != self.model:
            if self.model is None and not self.fixed:
                self.model = version
            else:
                self.other_model += 1
                self.other_models.add(version)
                return False
        if moment is not None:
            self.first = moment if self.first is None else min(self.first, moment)
            self.last = moment if self.last is None else max(self.last, moment)
        return True

    @staticmethod
    def _time(record: dict[str, Any]) -> datetime | None:
        for name in TIME_FIELDS:
            text = record.get(name)
            if isinstance(text, str):
                try:
                    return _utc(text)
                except ValueError:
                    return None
        return None


class _Chunk:
    """Counted records of one file, gathered column by column until `flush`."""

    def __init__(self) -> None:
        self.probability: list[float] = []
        self.ids: list[str] = []
        self.features: dict[str, list[float]] = {name: [] for name in FEATURES}
        self.reasons: list[str] = []
        self.as_of: set[str] = set()

    def __len__(self) -> int:
        return len(self.probability) + len(self.reasons)

    def add(self, record: dict[str, Any]) -> None:
        self.probability.append(float(record[PROBABILITY]))
        cid = record.get(ID_COLUMN)
        if cid is not None:
            self.ids.append(str(cid))
        for name in FEATURES:
            value = record.get(name)
            if value is not None:
                self.features[name].append(float(value))
        as_of = record.get("as_of")
        if isinstance(as_of, str):
            self.as_of.add(as_of)


class Tally:
    """The run's statistics, fed a file's chunks at a time."""

    def __init__(self, selection: Selection, workdir: Path) -> None:
        self.selection = selection
        self.stats = Stats()
        self.dupes = DuplicateCounter(workdir)
        self.metadata: dict[str, Any] | None = None
        self.edges: dict[str, np.ndarray] = {}
        self.as_of: set[str] = set()
        self.rows_with_features = dict.fromkeys(FEATURES, 0)

    def read(self, path: Path) -> None:
        chunk = _Chunk()
        for record, problem in _lines(path):
            if record is not None:
                if not self.selection.keep(record):
                    continue
                problem = _problem(record)
                if problem is None:
                    chunk.add(record)
            if problem is not None:
                chunk.reasons.append(problem)
            if len(chunk) >= CHUNK_ROWS:
                self._flush(str(path), chunk)
                chunk = _Chunk()
        self._flush(str(path), chunk, always=True)

    def _flush(self, source: str, chunk: _Chunk, always: bool = False) -> None:
        if not len(chunk) and not always:
            return
        if self.metadata is None and chunk.probability:
            self._load_profile()
        scores = scores_from_probability(np.array(chunk.probability, np.float64))
        features = {name: np.array(v, np.float64) for name, v in chunk.features.items()}
        for name, values in features.items():
            self.rows_with_features[name] += len(values)
        self.stats.add(source, scores, features, self.edges, chunk.reasons)
        if chunk.ids:
            self.dupes.add(pa.array(chunk.ids, pa.large_string()))
        self.as_of |= chunk.as_of

    def _load_profile(self) -> None:
        """The training profile of the report's model (the first counted record fixed it)."""
        tag = self.selection.model or SharedSettings().tag()
        self.selection.model = tag
        self.metadata = model_metadata(tag)[1]
        self.edges = drift_edges(self.metadata)


def model_metadata(tag: str) -> tuple[str, dict[str, Any]]:
    """(full tag, metadata) of a model in the store, without loading its files."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        stored = bentoml.models.get(tag)
    except NotFound as exc:
        raise ModelUnavailableError(
            f"no model {tag!r} in the BentoML store (the training profile comes from it); "
            "import it or pass --model"
        ) from exc
    return str(stored.tag), dict(stored.info.metadata)


def _ids(paths: list[Path], selection: Selection) -> Iterator[pa.Array]:
    """The counted records' customer ids again (naming the most repeated ones)."""
    for path in paths:
        ids = [
            str(r[ID_COLUMN])
            for r, _ in _lines(path)
            if r is not None
            and r.get(ID_COLUMN) is not None
            and selection.keep(r)
            and _problem(r) is None
        ]
        yield pa.array(ids, pa.large_string())


def _as_of_text(seen: set[str]) -> str:
    if not seen:
        return "n/a"
    return min(seen) if len(seen) == 1 else f"{min(seen)} to {max(seen)}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One report; returns it. Raises on bad input, bad usage or failure."""
    if args.since and args.until and args.since >= args.until:
        raise InputError("--since must be before --until")
    check_target(args.output, args.overwrite)
    paths = resolve_paths(args.paths)
    model, metadata = model_metadata(args.model) if args.model else (None, None)
    selection = Selection(args.since, args.until, model, fixed=model is not None)
    started_at, started = datetime.now(UTC), time.perf_counter()
    with staged_output(args.output, args.overwrite) as staging:
        tally = Tally(selection, staging / "_duplicates")
        if metadata is not None:
            tally.metadata, tally.edges = metadata, drift_edges(metadata)
        for path in paths:
            tally.read(path)
        if selection.other_models and not selection.fixed:
            seen = ", ".join(sorted({selection.model or "", *selection.other_models}))
            raise InputError(
                f"the records come from several model versions ({seen}): pick one with --model"
            )
        # A second pass names the most repeated ids; its tallies are not the run's.
        names = Selection(selection.since, selection.until, selection.model, fixed=True)
        duplicates = tally.dupes.count(_ids(paths, names))
        elapsed = time.perf_counter() - started
        stats = tally.stats
        report = {
            "run": {
                "inputs": [str(p) for p in paths],
                "output": str(args.output),
                "model": selection.model or "none",
                "as_of": _as_of_text(tally.as_of),
                "engine": "served traffic",
                "since": args.since.isoformat() if args.since else None,
                "until": args.until.isoformat() if args.until else None,
                "first_scored_at": selection.first.isoformat() if selection.first else None,
                "last_scored_at": selection.last.isoformat() if selection.last else None,
                "skipped": {
                    "outside_window": selection.outside_window,
                    "other_model": selection.other_model,
                },
                "rows_with_features": tally.rows_with_features,
                "started_at": started_at.isoformat(),
                "finished_at": datetime.now(UTC).isoformat(),
                "duration_s": elapsed,
                "rows_per_second": stats.rows_in / elapsed if elapsed else None,
            },
            **build_report(stats, duplicates, tally.metadata or {}),
        }
        (staging / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
        (staging / REPORT_HTML).write_text(render_html(report, TITLE))
        shutil.rmtree(staging / "_duplicates", ignore_errors=True)
    return report


def _done(report: dict[str, Any]) -> str:
    s, skipped = report["summary"], report["run"]["skipped"]
    return (
        f"{s['rows_scored']:,} predictions ({s['rows_rejected']:,} rejected records; skipped "
        f"{skipped['outside_window']:,} outside the window, {skipped['other_model']:,} of other "
        f"models) -> {report['run']['output']}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_command(parser().parse_args(argv), run, "drift report", _done)


if __name__ == "__main__":
    raise SystemExit(main())
