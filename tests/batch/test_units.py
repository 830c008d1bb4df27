"""The batch modules' pure parts: inputs, rejects schema, duplicates, drift, anomalies, output."""

import numpy as np
import pyarrow as pa
import pytest

from batch.duplicates import DuplicateCounter, hash_strings
from batch.output import OutputExistsError, staged_output
from batch.reader import InputError, resolve_inputs
from batch.report import MIN_ROWS_FOR_ANOMALIES, anomalies, bin_counts, drift_status, psi
from batch.scoring import TEXT, rejects_schema


def test_inputs_resolve_files_directories_and_globs(tmp_path):
    for name in ("b.parquet", "a.csv", "notes.txt"):
        (tmp_path / name).write_text("")
    assert resolve_inputs([str(tmp_path)]) == [tmp_path / "a.csv", tmp_path / "b.parquet"]
    assert resolve_inputs([str(tmp_path / "*.parquet"), str(tmp_path / "b.parquet")]) == [
        tmp_path / "b.parquet"
    ]
    with pytest.raises(InputError, match="no such file"):
        resolve_inputs([str(tmp_path / "missing.parquet")])
    with pytest.raises(InputError, match="unsupported"):
        resolve_inputs([str(tmp_path / "notes.txt")])


def test_rejects_schema_keeps_agreed_types_and_falls_back_to_text():
    a = pa.schema([("customer_id", pa.string()), ("age", pa.float64()), ("error", pa.int64())])
    b = pa.schema([("customer_id", pa.large_string()), ("age", pa.string())])
    schema = rejects_schema([a, b])
    assert schema.field("customer_id").type == TEXT
    assert schema.field("age").type == TEXT  # float in one file, text in the other
    assert schema.field("input_error").type == pa.int64()  # an input column named like ours
    assert schema.names[:2] == ["source_file", "source_row"]
    assert schema.names[-1] == "error"
    assert rejects_schema([a]).field("age").type == pa.float64()


def test_id_hash_does_not_depend_on_the_other_ids_in_the_chunk():
    alone = hash_strings(pa.array(["a"]))[0]
    mixed = hash_strings(pa.array(["x" * 40, "a", "bb"]))
    assert mixed[1] == alone
    assert len(set(hash_strings(pa.array([f"c-{i}" for i in range(10_000)])))) == 10_000


def test_bin_counts_match_a_binary_search_per_value():
    edges = np.array([-1.0, 0.0, 0.0, 2.5, 7.0])
    values = np.concatenate([edges, np.random.default_rng(1).normal(2, 4, 5_000)])
    expected = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    assert bin_counts(values, edges).tolist() == expected.tolist()


def test_duplicates_are_exact_across_adds(tmp_path):
    counter = DuplicateCounter(tmp_path / "d")
    chunks = [pa.array(["a", "b", "a"]), pa.array(["c", "a", "b", "d" * 30])]
    for chunk in chunks:
        counter.add(chunk)
    other = DuplicateCounter(tmp_path / "d", part="1")  # a second writer (a Dask task)
    other.add(pa.array(["b", "e"]))
    other.flush()
    result = counter.count([*chunks, pa.array(["b", "e"])])
    assert (result.duplicate_rows, result.duplicated_ids) == (4, 2)
    assert result.examples == {"a": 3, "b": 3}


def test_psi_is_zero_for_the_training_distribution_and_grows_with_shift():
    expected = [0.1] * 10
    assert psi([100] * 10, expected) == pytest.approx(0.0)
    assert drift_status(psi([100] * 10, expected)) == "stable"
    shifted = psi([0, 0, 0, 0, 0, 200, 200, 200, 200, 200], expected)
    assert drift_status(shifted) == "significant"
    assert np.isfinite(shifted)


def summary(**changes):
    base = {"rows_scored": MIN_ROWS_FOR_ANOMALIES, "churn_rate": 0.2, "mean_confidence": 0.8,
            "low_confidence_share": 0.1}  # fmt: skip
    return {**base, **changes}


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"churn_rate": 0.51}, "churn_rate_high"),
        ({"churn_rate": 0.009}, "churn_rate_low"),
        ({"mean_confidence": 0.59}, "low_mean_confidence"),
        ({"low_confidence_share": 0.31}, "many_low_confidence"),
        ({"rows_scored": 0}, "no_rows_scored"),
    ],
)
def test_each_anomaly_threshold(changes, kind):
    assert [a["kind"] for a in anomalies(summary(**changes), {})] == [kind]


@pytest.mark.parametrize("rows", [1, 2, MIN_ROWS_FOR_ANOMALIES - 1])
def test_below_the_minimum_sample_no_rate_or_drift_anomaly_is_raised(rows):
    drift = {"age": {"status": "significant", "psi": 0.4}}
    assert anomalies(summary(rows_scored=rows, churn_rate=1.0, mean_confidence=0.5), drift) == []


def test_normal_runs_have_no_anomalies_and_drift_is_one():
    assert anomalies(summary(), {}) == []
    drift = {"age": {"status": "significant", "psi": 0.4}, "income": {"status": "moderate"}}
    assert [a["kind"] for a in anomalies(summary(), drift)] == ["drift"]


def test_staged_output_is_published_only_on_success(tmp_path):
    target = tmp_path / "out"

    def fail_midway() -> None:
        with staged_output(target, overwrite=False) as staging:
            (staging / "x").write_text("half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert list(tmp_path.iterdir()) == []
    with staged_output(target, overwrite=False) as staging:
        (staging / "x").write_text("whole")
    assert (target / "x").read_text() == "whole"
    with pytest.raises(OutputExistsError):
        staged_output(target, overwrite=False).__enter__()
    with staged_output(target, overwrite=True) as staging:
        (staging / "y").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["y"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
