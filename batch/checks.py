"""The batch report's own output checks: the predictions and rejects files exist and are readable,
its counts reconcile with each other and with the files' rows, and the predictions hold values in
range. Each is a named check with pass/fail and detail; a failed one is an anomaly.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.contract import ERROR_COLUMN, INPUT_COLUMNS

from .output import PREDICTIONS_FILE, REJECTED_FILE
from .quality import READ_COLUMNS, Limits, anomaly, null_counts, quality


@dataclass(frozen=True)
class OutputFacts:
    """What the output files hold, counted from the files themselves."""

    predictions_error: str | None = None
    predictions_rows: int = 0
    churned: int = 0
    predictions_not_binary: int = 0
    probabilities_out_of_range: int = 0
    rejected_error: str | None = None
    rejected_rows: int = 0
    nulls: dict[str, int] = field(default_factory=dict)  # missing values per input column
    not_records: int = 0  # rejected rows that were not records (a JSON line that does not parse)


def _parts(path: Path) -> list[Path]:
    """A file, or the parts of a directory (the Dask engine writes one part per partition)."""
    return sorted(path.glob("*.parquet")) if path.is_dir() else [path]


def read_facts(directory: Path) -> OutputFacts:
    """Counts and value checks of DIR's predictions and rejects files, a row group at a time."""
    facts: dict[str, Any] = {}
    try:
        rows = churned = not_binary = out_of_range = 0
        for part in _parts(directory / PREDICTIONS_FILE):
            columns = ["prediction", "churn_probability", "probability"]
            for batch in pq.ParquetFile(part).iter_batches(columns=columns):
                prediction, *probabilities = batch.columns
                rows += batch.num_rows
                churned += int(pc.sum(pc.equal(prediction, 1)).as_py() or 0)
                binary = pc.is_in(prediction, pa.array([0, 1], prediction.type))
                not_binary += batch.num_rows - int(pc.sum(binary).as_py() or 0)
                for p in probabilities:  # NaN and null compare as not in range
                    inside = pc.fill_null(
                        pc.and_(pc.greater_equal(p, 0), pc.less_equal(p, 1)), False
                    )
                    out_of_range += batch.num_rows - int(pc.sum(inside).as_py() or 0)
        facts |= {"predictions_rows": rows, "churned": churned}
        facts |= {"predictions_not_binary": not_binary, "probabilities_out_of_range": out_of_range}
    except (OSError, pa.ArrowException, KeyError, ValueError) as exc:
        facts["predictions_error"] = f"{type(exc).__name__}: {exc}"
    try:
        rows, not_records, nulls = 0, 0, dict.fromkeys(INPUT_COLUMNS, 0)
        for part in _parts(directory / REJECTED_FILE):
            file = pq.ParquetFile(part)
            wanted = [n for n in file.schema_arrow.names if n in READ_COLUMNS] + [ERROR_COLUMN]
            for batch in file.iter_batches(columns=wanted):
                counts, others = null_counts(batch)
                rows, not_records = rows + batch.num_rows, not_records + others
                nulls = {c: nulls[c] + counts[c] for c in INPUT_COLUMNS}
        facts |= {"rejected_rows": rows, "nulls": nulls, "not_records": not_records}
    except (OSError, pa.ArrowException, ValueError) as exc:
        facts["rejected_error"] = f"{type(exc).__name__}: {exc}"
    return OutputFacts(**facts)


def output_checks(report: dict[str, Any], facts: OutputFacts) -> list[dict[str, Any]]:
    """The report's own checks: its counts against each other and against the files."""
    s = report["summary"]
    scored, rejected, rows = s["rows_scored"], s["rows_rejected"], s["rows_in"]
    p_ok, r_ok = facts.predictions_error is None, facts.rejected_error is None
    reasons = sum(report["failures_by_reason"].values())
    files = [sum(f[k] for f in report["files"].values()) for k in ("rows", "scored", "rejected")]
    churn = (facts.churned, facts.predictions_rows - facts.churned)
    checks = [
        ("predictions_readable", p_ok, facts.predictions_error or PREDICTIONS_FILE),
        ("rejects_readable", r_ok, facts.rejected_error or REJECTED_FILE),
        (
            "rows_reconcile",
            rows == scored + rejected,
            f"{rows:,} rows in, {scored:,} scored + {rejected:,} rejected",
        ),
        (
            "files_sum_to_totals",
            files == [rows, scored, rejected],
            "per-file rows, scored, rejected sum to {:,}, {:,}, {:,}".format(*files),
        ),
        (
            "scored_count_matches_file",
            p_ok and scored == facts.predictions_rows,
            f"report {scored:,}, {PREDICTIONS_FILE} {facts.predictions_rows:,} rows",
        ),
        (
            "rejected_count_matches_file",
            r_ok and rejected == facts.rejected_rows,
            f"report {rejected:,}, {REJECTED_FILE} {facts.rejected_rows:,} rows",
        ),
        (
            "churn_counts_match_file",
            p_ok and (s["churned"], s["not_churned"]) == churn,
            f"report {s['churned']:,} churned, {s['not_churned']:,} not;"
            " predictions file {:,} and {:,}".format(*churn),
        ),
        (
            "predictions_binary",
            p_ok and not facts.predictions_not_binary,
            f"{facts.predictions_not_binary:,} predictions not 0 or 1",
        ),
        (
            "probabilities_in_range",
            p_ok and not facts.probabilities_out_of_range,
            f"{facts.probabilities_out_of_range:,} probabilities outside [0, 1]",
        ),
        (
            "reasons_sum_to_rejects",
            reasons == rejected,
            f"failures by reason sum to {reasons:,}, rows rejected {rejected:,}",
        ),
    ]
    return [{"name": n, "passed": bool(ok), "detail": d} for n, ok, d in checks]


def failed_checks(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        anomaly(
            "output_check_failed",
            f"output check {c['name']} failed: {c['detail']}",
            check=c["name"],
        )
        for c in checks
        if not c["passed"]
    ]


def add_quality(report: dict[str, Any], limits: Limits, directory: Path) -> None:
    """Add the `quality` section and the `output_checks` of DIR's files to a batch report, with
    their anomalies."""
    facts = read_facts(directory)
    report["quality"], found = quality(report["summary"], facts.nulls, facts.not_records, limits)
    report["output_checks"] = output_checks(report, facts)
    report["anomalies"] = [*report["anomalies"], *found, *failed_checks(report["output_checks"])]
