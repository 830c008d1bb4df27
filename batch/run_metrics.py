"""A batch run's outcome as Prometheus metrics, for node_exporter's textfile collector.

A run is not scraped (it ends before anything could scrape it), so `churn-batch
--metrics-textfile PATH` writes its outcome to PATH when it ends, whatever the exit code:
node_exporter's `--collector.textfile.directory` serves every `*.prom` file there on its own
/metrics. `prometheus_client.write_to_textfile` writes a temporary file and renames it, so a
scrape never reads half a file. The last success's time is carried over from the previous file
when this run fails, so an alert can tell how long the job has not succeeded.
"""

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("batch")
LAST_SUCCESS = "churn_batch_run_last_success_timestamp_seconds"


def previous_success(path: Path) -> float | None:
    """The last success's time recorded in `path` by an earlier run, if any is readable."""
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except ValueError:  # not ours, or damaged: no success known
        return None
    return None


def registry_for(
    exit_code: int,
    report: dict[str, Any] | None,
    duration: float,
    now: float,
    last_success: float | None,
) -> CollectorRegistry:
    """The run's gauges: `report` is None when the run failed before it made one."""
    r = CollectorRegistry()

    def gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> None:
        g = Gauge(name, doc, list(labels or {}), registry=r)
        (g.labels(**labels) if labels else g).set(value)

    gauge(
        "churn_batch_run_exit_code",
        "Exit code of the last run (0 done, 1 failed, "
        "2 bad usage or input, 3 anomalies with --fail-on-anomaly)",
        exit_code,
    )
    gauge("churn_batch_run_success", "1 if the last run exited 0, else 0", exit_code == 0)
    gauge("churn_batch_run_duration_seconds", "Wall time of the last run", duration)
    gauge("churn_batch_run_timestamp_seconds", "When the last run ended (Unix time)", now)
    success = now if exit_code == 0 else last_success
    if success is not None:
        gauge(LAST_SUCCESS, "When a run last exited 0 (Unix time)", success)
    if report is None:
        return r
    rows = Gauge(
        "churn_batch_run_rows",
        "Rows of the last run, by result (scored, rejected)",
        ["result"],
        registry=r,
    )
    for result in ("scored", "rejected"):
        rows.labels(result).set(report["summary"][f"rows_{result}"])
    gauge(
        "churn_batch_run_anomalies",
        "Anomalies in the last run's report",
        len(report["anomalies"]),
    )
    psi = Gauge(
        "churn_batch_run_feature_psi",
        "Population stability index of each "
        "feature against the training data, in the last run (where it had enough rows)",
        ["feature"],
        registry=r,
    )
    for feature, drift in report["drift"].items():
        if drift["psi"] is not None:
            psi.labels(feature).set(drift["psi"])
    return r


class RunRecorder:
    """Wraps a run function to keep its report and time; `write` then writes the textfile."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path, self._clock = path, clock
        self.report: dict[str, Any] | None = None
        self.started = clock()

    def wrap(self, run: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
        def recorded(args: Any) -> dict[str, Any]:
            self.started = self._clock()
            self.report = run(args)
            return self.report

        return recorded

    def record(self, command: Callable[[], int]) -> int:
        """`command()`'s exit code, written to the textfile however it ends: a SIGTERM
        unwinds as SystemExit(143), which is recorded as such and goes on."""
        code = 1
        try:
            code = command()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            raise
        finally:
            self.write(code)
        return code

    def write(self, exit_code: int) -> None:
        now = self._clock()
        registry = registry_for(
            exit_code, self.report, now - self.started, now, previous_success(self.path)
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(self.path), registry)
        except OSError as exc:
            # The run's outcome stands (its outputs are written); a missing file shows as a
            # stale last success, which ChurnBatchNotSucceeded alerts on.
            log.error("could not write the run's metrics to %s: %s", self.path, exc)
