"""`churn-batch --metrics-textfile`: the run's outcome as node_exporter textfile metrics."""

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from batch.run_metrics import RunRecorder
from tests.batch.conftest import customers, read_outputs, run_batch, write_parquet


def samples(path: Path) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_a_run_writes_its_outcome_and_a_failed_one_keeps_the_last_success(tmp_path, model_tag):
    rows = [*customers(600), {**customers(1)[0], "age": -5.0}, {**customers(1)[0], "age": None}]
    source = write_parquet(tmp_path / "in.parquet", rows)
    prom = tmp_path / "textfile" / "churn-batch.prom"

    assert run_batch([source], tmp_path / "out", model_tag, "--metrics-textfile", str(prom)) == 0
    done = samples(prom)
    _, _, report = read_outputs(tmp_path / "out")
    assert done[("churn_batch_run_exit_code", ())] == 0
    assert done[("churn_batch_run_success", ())] == 1
    assert done[("churn_batch_run_rows", (("result", "scored"),))] == 600
    assert done[("churn_batch_run_rows", (("result", "rejected"),))] == 2
    assert done[("churn_batch_run_anomalies", ())] == len(report["anomalies"])
    psi = {dict(k[1])["feature"]: v for k, v in done.items() if k[0].endswith("feature_psi")}
    assert psi
    assert psi == {f: d["psi"] for f, d in report["drift"].items()}
    finished = done[("churn_batch_run_timestamp_seconds", ())]
    assert done[("churn_batch_run_last_success_timestamp_seconds", ())] == finished
    assert 0 < done[("churn_batch_run_duration_seconds", ())] < 600

    missing = str(tmp_path / "none" / "*.parquet")
    assert run_batch([missing], tmp_path / "out2", model_tag, "--metrics-textfile", str(prom)) == 2
    failed = samples(prom)
    assert failed[("churn_batch_run_exit_code", ())] == 2
    assert failed[("churn_batch_run_success", ())] == 0
    assert failed[("churn_batch_run_timestamp_seconds", ())] >= finished
    assert failed[("churn_batch_run_last_success_timestamp_seconds", ())] == finished
    assert not [k for k in failed if k[0] in ("churn_batch_run_rows", "churn_batch_run_anomalies")]
    assert [p.name for p in prom.parent.iterdir()] == ["churn-batch.prom"]  # no temporary left


def test_a_sigterm_is_recorded_as_exit_143_and_still_stops_the_run(tmp_path):
    clock = iter([100.0, 107.5]).__next__  # started, then ended
    prom = tmp_path / "churn-batch.prom"
    recorder = RunRecorder(prom, clock=clock)

    def killed() -> int:
        raise SystemExit(143)

    with pytest.raises(SystemExit):
        recorder.record(killed)
    written = samples(prom)
    assert written[("churn_batch_run_exit_code", ())] == 143
    assert written[("churn_batch_run_duration_seconds", ())] == 7.5
    assert ("churn_batch_run_last_success_timestamp_seconds", ()) not in written


def test_an_unreadable_previous_file_means_no_known_success(tmp_path):
    prom = tmp_path / "churn-batch.prom"
    prom.write_text("this is { not the text format\n")
    RunRecorder(prom, clock=iter([1.0, 2.0]).__next__).record(lambda: 1)
    written = samples(prom)
    assert written[("churn_batch_run_exit_code", ())] == 1
    assert ("churn_batch_run_last_success_timestamp_seconds", ()) not in written
