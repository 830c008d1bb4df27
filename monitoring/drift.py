"""Drift over served traffic: the batch script's report (DIR/report.json and DIR/report.html) of
prediction-log files (CHURN_PREDICTION_LOG, docs/monitoring.md) or of the Kafka bridge's
results dumped to JSON lines.

    python -m monitoring.drift PATH... --output DIR [--since ISO] [--until ISO] [--model TAG]
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
import json
import logging
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from batch.duplicates import DuplicateCounter
from batch.html import render_html
from batch.output import REPORT_HTML, REPORT_JSON, check_target, staged_output
from batch.predict import run_command
from batch.reader import InputError, resolve_inputs
from batch.report import Stats, build_report, drift_edges
from models.contract import FEATURES, ID_COLUMN
from models.errors import ModelUnavailableError
from models.predictor import scores_from_probability
from models.settings import SharedSettings
from monitoring.reading import (
    LOG_INPUTS,
    Chunk,
    Selection,
    lines,
    problem,
    utc,
)

log = logging.getLogger("batch")

CHUNK_ROWS = 64 * 1024
TITLE = "Churn drift report: served traffic"


def _moment(text: str) -> datetime:
    try:
        return utc(text)
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


class Tally:
    """The run's statistics, fed a file's chunks at a time."""

    def __init__(self, selection: Selection, workdir: Path, default_model: str) -> None:
        self.selection = selection
        self.default_model = default_model  # when no record names its model
        self.stats = Stats()
        self.dupes = DuplicateCounter(workdir)
        self.metadata: dict[str, Any] | None = None
        self.edges: dict[str, np.ndarray] = {}
        self.as_of: set[str] = set()
        self.rows_with_features = dict.fromkeys(FEATURES, 0)

    def read(self, path: Path) -> None:
        chunk = Chunk()
        for record, why in lines(path):
            if record is not None:
                if not self.selection.keep(record):
                    continue
                why = problem(record)
                if why is None:
                    chunk.add(record)
            if why is not None:
                chunk.reasons.append(why)
            if len(chunk) >= CHUNK_ROWS:
                self._flush(str(path), chunk)
                chunk = Chunk()
        self._flush(str(path), chunk, always=True)

    def _flush(self, source: str, chunk: Chunk, always: bool = False) -> None:
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
        tag = self.selection.model or self.default_model
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
            for r, _ in lines(path)
            if r is not None
            and r.get(ID_COLUMN) is not None
            and selection.keep(r)
            and problem(r) is None
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
    paths = resolve_inputs(args.paths, LOG_INPUTS)
    model, metadata = model_metadata(args.model) if args.model else (None, None)
    selection = Selection(args.since, args.until, model, fixed=model is not None)
    started_at, started = datetime.now(UTC), time.perf_counter()
    with staged_output(args.output, args.overwrite) as staging:
        tally = Tally(selection, staging / "_duplicates", SharedSettings().tag())
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
