"""The report's own output checks, through the pure function: each fails when its condition is
broken, in the report (tampered counts) or in the files (tampered values, unreadable files)."""

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from batch.checks import add_quality, output_checks, read_facts
from batch.quality import Limits
from models.samples import records
from tests.batch.conftest import run_batch, write_parquet

CHECKS = [
    "predictions_readable",
    "rejects_readable",
    "rows_reconcile",
    "files_sum_to_totals",
    "scored_count_matches_file",
    "rejected_count_matches_file",
    "churn_counts_match_file",
    "predictions_binary",
    "probabilities_in_range",
    "reasons_sum_to_rejects",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model_tag) -> Path:
    """A real run: 60 customers, 6 of them rejected for two reasons."""
    rows = records(60)
    for row in rows[:4]:
        row["age"] = 300.0
    for row in rows[4:6]:
        row["income"] = None
    root = tmp_path_factory.mktemp("checks")
    src = write_parquet(root / "in.parquet", rows)
    assert run_batch([src], root / "out", model_tag) == 0
    return root / "out"


@pytest.fixture
def out(run_dir, tmp_path) -> Path:
    """A copy of the run's outputs, to tamper with."""
    return Path(shutil.copytree(run_dir, tmp_path / "out"))


def report_of(directory: Path) -> dict:
    return json.loads((directory / "report.json").read_text())


def failing(report: dict, directory: Path) -> set[str]:
    return {c["name"] for c in output_checks(report, read_facts(directory)) if not c["passed"]}


def test_a_real_run_passes_every_check_and_the_report_lists_them(out):
    report = report_of(out)
    assert [c["name"] for c in report["output_checks"]] == CHECKS
    assert all(c["passed"] for c in report["output_checks"])
    assert failing(report, out) == set()
    facts = read_facts(out)
    # Counted here from the files, independently of the report.
    predictions = pq.read_table(out / "predictions.parquet")
    churned = pc.sum(predictions.column("prediction")).as_py()
    assert (facts.predictions_rows, facts.churned) == (54, churned)
    assert facts.rejected_rows == pq.read_metadata(out / "rejected.parquet").num_rows == 6
    assert facts.nulls["income"] == 2
    html = (out / "report.html").read_text()
    for name in CHECKS:
        assert f'<li class="ok">pass {name}:' in html


def _bump(*path: str) -> Callable[[dict], None]:
    def change(report: dict) -> None:
        *parents, key = path
        target = report
        for p in parents:
            target = target[p]
        target[key] += 1

    return change


def _bump_a_file(report: dict) -> None:
    next(iter(report["files"].values()))["rows"] += 1


def _bump_a_reason(report: dict) -> None:
    reasons = report["failures_by_reason"]
    reasons[next(iter(reasons))] += 1


@pytest.mark.parametrize(
    ("tamper", "broken"),
    [
        (_bump("summary", "rows_in"), {"rows_reconcile", "files_sum_to_totals"}),
        (
            _bump("summary", "rows_scored"),
            {"rows_reconcile", "files_sum_to_totals", "scored_count_matches_file"},
        ),
        (
            _bump("summary", "rows_rejected"),
            {
                "rows_reconcile",
                "files_sum_to_totals",
                "rejected_count_matches_file",
                "reasons_sum_to_rejects",
            },
        ),
        (_bump("summary", "churned"), {"churn_counts_match_file"}),
        (_bump("summary", "not_churned"), {"churn_counts_match_file"}),
        (_bump_a_file, {"files_sum_to_totals"}),
        (_bump_a_reason, {"reasons_sum_to_rejects"}),
    ],
)
def test_a_report_with_tampered_counts_fails_the_checks_of_those_counts(out, tamper, broken):
    report = copy.deepcopy(report_of(out))
    tamper(report)
    assert failing(report, out) == broken


def _rewrite_predictions(out: Path, column: str, row: int, value: object) -> None:
    path = out / "predictions.parquet"
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    values[row] = value
    i = table.schema.get_field_index(column)
    pq.write_table(table.set_column(i, column, pa.array(values, table.schema.field(i).type)), path)


@pytest.mark.parametrize(
    ("column", "value", "broken"),
    [
        ("prediction", 2, {"predictions_binary"}),
        ("prediction", -1, {"predictions_binary"}),
        ("churn_probability", 1.5, {"probabilities_in_range"}),
        ("probability", -0.01, {"probabilities_in_range"}),
        ("churn_probability", float("nan"), {"probabilities_in_range"}),
    ],
)
def test_values_out_of_range_in_the_predictions_file_fail(out, column, value, broken):
    _rewrite_predictions(out, column, 3, value)
    assert failing(report_of(out), out) == broken


def test_a_missing_or_unreadable_predictions_file_fails_every_check_that_reads_it(out):
    (out / "predictions.parquet").unlink()  # then a file that is not parquet
    depends = {
        "predictions_readable",
        "scored_count_matches_file",
        "churn_counts_match_file",
        "predictions_binary",
        "probabilities_in_range",
    }
    for content, error in ((None, "FileNotFoundError"), (b"not parquet", "ArrowInvalid")):
        if content is not None:
            (out / "predictions.parquet").write_bytes(content)
        checks = output_checks(report_of(out), read_facts(out))
        assert {c["name"] for c in checks if not c["passed"]} == depends
        assert checks[0]["detail"].startswith(f"{error}: ")


def test_an_unreadable_rejects_file_fails(out):
    (out / "rejected.parquet").write_bytes(b"")
    assert failing(report_of(out), out) == {"rejects_readable", "rejected_count_matches_file"}


def test_a_predictions_file_with_rows_dropped_fails_the_counts(out):
    path = out / "predictions.parquet"
    pq.write_table(pq.read_table(path).slice(1), path)
    assert failing(report_of(out), out) == {"scored_count_matches_file", "churn_counts_match_file"}


def test_directories_of_parts_count_like_one_file(out):
    """The Dask engine's layout: predictions.parquet/ and rejected.parquet/ of part files."""
    before = read_facts(out)
    for name in ("predictions.parquet", "rejected.parquet"):
        table = pq.read_table(out / name)
        (out / name).unlink()
        (out / name).mkdir()
        half = table.num_rows // 2
        pq.write_table(table.slice(0, half), out / name / "part-0000-00000.parquet")
        pq.write_table(table.slice(half), out / name / "part-0000-00001.parquet")
    assert read_facts(out) == before
    assert failing(report_of(out), out) == set()


def test_a_failed_check_is_an_anomaly_naming_it(out):
    _rewrite_predictions(out, "churn_probability", 0, 7.0)
    report = report_of(out)
    report["anomalies"] = []
    add_quality(report, Limits(), out)
    (anomaly,) = report["anomalies"]
    assert anomaly["code"] == "output_check_failed"
    assert anomaly["check"] == "probabilities_in_range"
    assert anomaly["message"] == (
        "output check probabilities_in_range failed: 1 probabilities outside [0, 1]"
    )
