"""The Dask engine on a real distributed LocalCluster (2 worker processes): same outputs, same
report, same counts as the local engine."""

import os
import signal
import threading
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.samples import record, records
from tests.batch.conftest import read_outputs, run_batch, write_parquet
from tests.support import wait_until


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask-in")
    rows = records(60)
    rows[5]["age"] = 300.0
    rows[22]["last_purchase_date"] = "not a date"
    rows[41]["customer_id"] = None
    write_parquet(d / "a.parquet", rows, row_group_size=16)
    write_parquet(d / "b.parquet", [*records(10, "b"), record(customer_id="c-3")])
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
    for key in ("duplicates", "failures_by_reason", "histogram", "files", "anomalies", "quality"):
        assert dask[key] == local[key], key
    # The output checks read the directories of parts as they read the local engine's files.
    assert dask["output_checks"] == local["output_checks"]
    assert all(c["passed"] for c in dask["output_checks"])
    assert dask["quality"]["null_counts"]["customer_id"] == 1  # row 41's null id
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
    pd.DataFrame(records(3)).to_csv(src, index=False)
    assert run_batch([src], tmp_path / "out", model_tag, "--engine", "dask") == 2
    assert "parquet only" in caplog.text
    assert not (tmp_path / "out").exists()


class StallOnePartition:
    """A worker plugin: the first partition (over the whole cluster) to have written all its
    outputs, spilled id hashes included, writes its worker's pid to `stalled` and then waits to
    be killed; every call of that point (each partition run, re-runs too) leaves a file in
    `calls`."""

    def __init__(self, workdir: Path) -> None:
        self.stalled, self.calls = workdir / "stalled", workdir / "calls"

    def setup(self, worker) -> None:
        from batch.report import Stats

        real, stalled, calls = Stats.update, self.stalled, self.calls

        def update(stats, *args, **kwargs):
            (calls / uuid.uuid4().hex).touch()
            try:
                os.close(os.open(f"{stalled}.claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return real(stats, *args, **kwargs)
            tmp = stalled.with_suffix(".tmp")
            tmp.write_text(str(os.getpid()))
            tmp.rename(stalled)
            threading.Event().wait(120)  # killed long before this
            raise RuntimeError("the stalled worker was never killed")

        Stats.update = update


@pytest.mark.slow
def test_partitions_rerun_after_a_lost_worker_count_no_extra_duplicates(
    tmp_path, model_tag, monkeypatch
):
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import WorkerPlugin

    # Ids repeated within a file, across files and across row groups (= partitions).
    a = records(60)
    b = [*records(12, start=50), *records(3, start=7), *records(1, start=7)]
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_parquet(inputs / "a.parquet", a, row_group_size=10)
    write_parquet(inputs / "b.parquet", b, row_group_size=4)
    ids = pd.Series([r["customer_id"] for r in a + b])
    repeats = ids.value_counts()
    repeats = repeats[repeats > 1]
    partitions = 6 + 4

    workdir = tmp_path / "plugin"
    (workdir / "calls").mkdir(parents=True)
    plugin = type("Stall", (StallOnePartition, WorkerPlugin), {})(workdir)
    killed: list[int] = []

    def kill_the_stalled_worker() -> None:
        wait_until(lambda: (workdir / "stalled").exists(), 120, "a stalled partition")
        pid = int((workdir / "stalled").read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    killer = threading.Thread(target=kill_the_stalled_worker, daemon=True)
    try:
        with Client(cluster) as client:
            client.register_plugin(plugin)
            killer.start()
            out = tmp_path / "out"
            code = run_batch(
                [inputs],
                out,
                model_tag,
                "--engine",
                "dask",
                "--scheduler",
                cluster.scheduler_address,
            )
            killer.join(10)
    finally:
        cluster.close()

    assert code == 0
    assert len(killed) == 1  # the worker was lost while the run was under way
    # The partition it held (and any result only it kept) was scored again elsewhere.
    assert len(list((workdir / "calls").iterdir())) > partitions
    predictions, rejected, report = read_outputs(out)
    assert Counter(predictions["customer_id"]) == Counter(ids)
    assert rejected.empty
    assert report["summary"]["rows_in"] == len(ids)
    assert report["duplicates"]["duplicated_ids"] == len(repeats)
    assert report["duplicates"]["duplicate_rows"] == int((repeats - 1).sum())
    # The most repeated ids (up to ten; ties in any order), each with its true count.
    examples = report["duplicates"]["examples"]
    assert {cid: repeats[cid] for cid in examples} == examples
    assert sorted(examples.values(), reverse=True) == sorted(repeats, reverse=True)[:10]
