"""The Dask engine on a real distributed LocalCluster (2 worker processes): same outputs, same
report, same counts as the local engine."""

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.batch.conftest import GOOD, customers, read_outputs, run_batch, write_parquet


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask-in")
    rows = customers(60)
    rows[5]["age"] = 300.0
    rows[22]["last_purchase_date"] = "not a date"
    rows[41]["customer_id"] = None
    write_parquet(d / "a.parquet", rows, row_group_size=16)
    write_parquet(d / "b.parquet", [*customers(10, "b"), {**GOOD, "customer_id": "c-3"}])
    return d


def sorted_frame(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame.sort_values(by).reset_index(drop=True)


@pytest.mark.slow
def test_dask_engine_matches_the_local_engine(inputs, tmp_path, model_tag):
    assert run_batch([inputs], tmp_path / "local", model_tag) == 0
    assert run_batch([inputs], tmp_path / "dask", model_tag, "--engine", "dask") == 0
    p_local, r_local, local = read_outputs(tmp_path / "local")
    p_dask, r_dask, dask = read_outputs(tmp_path / "dask")
    # Partitioned output: one part per input row group.
    assert len(list((tmp_path / "dask" / "predictions.parquet").glob("part-*.parquet"))) == 4 + 1
    pd.testing.assert_frame_equal(
        sorted_frame(p_local, ["customer_id"]).drop(columns="scored_at"),
        sorted_frame(p_dask, ["customer_id"]).drop(columns="scored_at"),
    )
    pd.testing.assert_frame_equal(
        sorted_frame(r_local, ["source_file", "source_row"]),
        sorted_frame(r_dask, ["source_file", "source_row"]),
    )
    assert r_dask["source_row"].tolist() == [5, 22, 41]
    for key in ("duplicates", "failures_by_reason", "histogram", "files", "anomalies"):
        assert dask[key] == local[key], key
    # Sums over other partitions than the local chunks: equal up to float rounding.
    for key, value in local["summary"].items():
        assert dask["summary"][key] == (
            pytest.approx(value, rel=1e-12) if isinstance(value, float) else value
        )
    assert dask["summary"]["rows_in"] == 71 == dask["summary"]["rows_scored"] + 3
    assert dask["duplicates"]["examples"] == {"c-3": 2}
    for name, d in local["drift"].items():
        assert dask["drift"][name]["psi"] == pytest.approx(d["psi"])
    assert dask["run"]["engine"] == "dask"
    assert pq.read_table(tmp_path / "dask" / "predictions.parquet").num_rows == 68


def test_dask_engine_refuses_non_parquet_input(tmp_path, model_tag, caplog):
    src = tmp_path / "in.csv"
    pd.DataFrame(customers(3)).to_csv(src, index=False)
    assert run_batch([src], tmp_path / "out", model_tag, "--engine", "dask") == 2
    assert "parquet only" in caplog.text
    assert not (tmp_path / "out").exists()
