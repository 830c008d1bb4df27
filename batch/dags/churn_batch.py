"""Daily churn scoring: wait for the day's customer file(s), score them with `churn-batch`, alert.

Copy this file and `churn_batch_alerts.py` into an Airflow 3 deployment's dags folder. They
import only Airflow (with the SMTP provider for email) and the standard library: the project
runs outside Airflow's environment, through a command prefix (`churn_batch_command`).
docs/scheduling.md has the details. One run per day, `ds` its logical date (UTC):

1. `wait_for_input` (a Python sensor, reschedule mode) globs `churn_batch_input_pattern`
   (Jinja-rendered) until it matches a file; after the sensor timeout it fails, no retry.
2. `score` runs `COMMAND PATTERN --output OUTPUT_ROOT/ds --as-of ds --overwrite
   --fail-on-anomaly [--model TAG]` and maps its exit code: 0 done (optional summary); 1
   retried; 2 (bad usage, unreadable input, no model) failed, no retry; 3 anomalies: failed,
   no retry, one anomaly alert listing them from `report.json`.

Alerts (a task's final failure, anomalies, a run past its deadline) go to the webhook
(`churn_batch_webhook_url`) and by email (`churn_batch_email_to`, through the SMTP connection
`churn_batch_email_conn_id`); each is optional (the task log says what was not sent) and a
failing one never fails the run. The deadline (`churn_batch_deadline_seconds` after the run
was queued) is an Airflow DeadlineAlert, whose callback the executor runs.

Every setting is an Airflow Variable `churn_batch_<name>` (metadata database, a secrets backend,
or the environment as `AIRFLOW_VAR_CHURN_BATCH_<NAME>`); SETTINGS lists each with its default.
Schedule, retries, timeouts and the deadline are read when the file is parsed; the others when
a task runs.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shlex
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import churn_batch_alerts as alerts  # beside this file in the dags folder
from airflow.sdk import (
    CronTriggerTimetable,
    DeadlineAlert,
    DeadlineReference,
    PokeReturnValue,
    SyncCallback,
    Variable,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowException, AirflowFailException

DAG_ID = "churn_batch"
VARIABLE_PREFIX = "churn_batch_"

# name: (default, meaning). Variable `churn_batch_<name>`, env `AIRFLOW_VAR_CHURN_BATCH_<NAME>`.
SETTINGS: dict[str, tuple[str, str]] = {
    "command": (
        "churn-batch",
        "command prefix that runs the batch script, split like a shell would (shlex); the "
        "arguments are appended. A wrapper must exec the script or pass SIGTERM on to it "
        "(docker run does), so that a timed-out run stops",
    ),
    "input_pattern": (
        "/data/churn/input/{{ ds }}/*.parquet",
        "glob of the day's input files, Jinja-rendered with the run's context",
    ),
    "output_root": (
        "/data/churn/scored",
        "the run writes OUTPUT_ROOT/<ds>/ (predictions, rejects, report.json, report.html)",
    ),
    "model_tag": ("", "model store tag passed as --model; empty: the script's own default"),
    "webhook_url": ("", "alerts (task failure, anomalies, deadline); empty: none"),
    "email_to": ("", "the same alerts by email, comma-separated addresses; empty: no email"),
    "email_conn_id": ("smtp_default", "Airflow SMTP connection the email goes through"),
    "email_from": ("", "sender address; empty: the connection's from_email extra"),
    "summary_webhook_url": ("", "success summary; empty: none (may equal webhook_url)"),
    "schedule": ("@daily", "cron expression, UTC; ds is the day the run is due"),
    "retries": ("2", "retries of a task that fails with a retryable error (exit 1)"),
    "retry_delay_seconds": ("300", "delay between retries"),
    "execution_timeout_seconds": ("7200", "bound on one try of the scoring task"),
    "sensor_timeout_seconds": ("43200", "how long to wait for the day's input"),
    "poke_interval_seconds": ("300", "how often to look for it"),
    "deadline_seconds": (
        "7200",
        "alert when a run is unfinished this long after it was queued"
        " (the old SLA; 0: no deadline alert)",
    ),
}

DEADLINE_ALERT_SETTINGS = ("email_to", "email_conn_id", "email_from")  # not webhook_url: secret
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ANOMALY = 0, 1, 2, 3
KILL_GRACE_SECONDS = 30  # SIGTERM lets churn-batch remove its partial output; then SIGKILL

log = logging.getLogger(__name__)


def setting(name: str) -> str:
    """The Variable `churn_batch_<name>`, else the default in SETTINGS."""
    default = SETTINGS[name][0]
    value = Variable.get(VARIABLE_PREFIX + name, default=default)
    return default if value is None else str(value).strip()


def int_setting(name: str, minimum: int = 0) -> int:
    text = setting(name)
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(
            f"Airflow Variable {VARIABLE_PREFIX}{name} must be an integer >= {minimum}, "
            f"not {text!r}"
        )
    return value


class AlertedFailure(AirflowFailException):
    """A failure whose alert the task has already sent (the failure callback skips it)."""


# --- alerts (churn_batch_alerts.py) ---------------------------------------------------------


def on_failure(context: dict[str, Any]) -> None:
    """on_failure_callback: a task failed for good (no retry left, or not retryable)."""
    if not isinstance(context.get("exception"), AlertedFailure):
        alerts.task_failed(setting, context)


# --- running the script -----------------------------------------------------------------------


def run_command(cmd: list[str]) -> tuple[int, str]:
    """Run cmd with its output in the task log; stop it if the task is interrupted.

    Returns the exit code and the last line the command printed (its error, on a failure)."""
    log.info("running: %s", shlex.join(cmd))
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as exc:  # a wrong command prefix: trying again will not help
        raise AirflowFailException(
            f"cannot run {cmd[0]!r} ({exc}); set the Variable {VARIABLE_PREFIX}command"
        ) from exc
    last = ""
    try:
        for line in proc.stdout or ():
            if line.strip():
                last = line.rstrip()
                log.info("%s", last)
        return proc.wait(), last
    finally:  # execution_timeout or a kill of the task lands here while the script runs
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(KILL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def read_report(output: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(output, "report.json")) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        log.warning("cannot read the run's report.json: %s", exc)
        return None


def summarize(output: str, report: dict[str, Any] | None) -> dict[str, Any]:
    s = (report or {}).get("summary", {})
    return {
        "output": output,
        "report_html": os.path.join(output, "report.html"),
        "rows_in": s.get("rows_in"),
        "rows_scored": s.get("rows_scored"),
        "rows_rejected": s.get("rows_rejected"),
        "churn_rate": s.get("churn_rate"),
        "anomalies": (report or {}).get("anomalies", []),
    }


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


# --- the DAG ----------------------------------------------------------------------------------


def deadline() -> DeadlineAlert | None:
    """The run's deadline (Airflow 3's successor of the SLA), counted from when it was queued."""
    seconds = int_setting("deadline_seconds")
    if not seconds:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(seconds=seconds),
        # Run by the executor (LocalExecutor and others with callback support), importing the
        # module from the dags folder; it gets the non-secret alert settings as parsed.
        callback=SyncCallback(
            alerts.deadline_callback,
            kwargs={
                "deadline_seconds": seconds,
                "parsed": {name: setting(name) for name in DEADLINE_ALERT_SETTINGS},
            },
        ),
    )


@dag(
    dag_id=DAG_ID,
    schedule=CronTriggerTimetable(setting("schedule"), timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    deadline=deadline(),
    doc_md=__doc__,
    tags=["churn", "batch"],
    default_args={
        "owner": "churn",
        "retries": int_setting("retries"),
        "retry_delay": timedelta(seconds=int_setting("retry_delay_seconds")),
        "on_failure_callback": on_failure,
    },
)
def churn_batch() -> None:
    @task.sensor(
        task_id="wait_for_input",
        mode="reschedule",
        poke_interval=int_setting("poke_interval_seconds", minimum=1),
        timeout=int_setting("sensor_timeout_seconds"),
    )
    def wait_for_input() -> PokeReturnValue:
        """Done when the rendered input pattern matches at least one file; returns the pattern."""
        context = get_current_context()
        pattern = context["task"].render_template(setting("input_pattern"), context)
        matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        log.info("%s matches %d file(s): %s", pattern, len(matches), matches[:10])
        return PokeReturnValue(is_done=bool(matches), xcom_value=pattern)

    @task(
        task_id="score",
        execution_timeout=timedelta(seconds=int_setting("execution_timeout_seconds", 1)),
    )
    def score(input_pattern: str) -> dict[str, Any]:
        """Run churn-batch on the day's input; returns the run's summary (also an XCom)."""
        context = get_current_context()
        ds = context["ds"]
        output = os.path.join(setting("output_root"), ds)
        cmd = [*shlex.split(setting("command")), input_pattern, "--output", output]
        cmd += ["--as-of", ds, "--overwrite", "--fail-on-anomaly"]
        if model_tag := setting("model_tag"):
            cmd += ["--model", model_tag]
        code, last_line = run_command(cmd)
        if code == EXIT_USAGE:
            raise AirflowFailException(
                f"churn-batch exited {code} (bad usage, unreadable input or model not found; "
                f"not retried): {last_line}"
            )
        if code == EXIT_ANOMALY:
            summary = summarize(output, read_report(output))
            found = summary["anomalies"]
            lines = [f"- {a.get('kind')}: {a.get('message')}" for a in found] or ["- (no report)"]
            text = (
                f"{DAG_ID} {ds}: {len(found)} anomal{'y' if len(found) == 1 else 'ies'} in "
                f"the scored data, task failed (not retried). Report: {summary['report_html']}\n"
                + "\n".join(lines)
            )
            subject = f"{DAG_ID} {ds}: {len(found)} anomal{'y' if len(found) == 1 else 'ies'}"
            alerts.alert(setting, subject, text, alerts.run_details(context))
            raise AlertedFailure(f"churn-batch exited {code}: anomalies found: " + "; ".join(lines))
        if code != EXIT_OK:
            how = f"was killed by signal {-code}" if code < 0 else f"exited {code}"
            raise AirflowException(f"churn-batch {how} (run failed): {last_line}")
        summary = summarize(output, read_report(output))
        rate = summary["churn_rate"]
        alerts.post_webhook(
            setting,
            "summary_webhook_url",
            f"{DAG_ID} {ds}: scored {_count(summary['rows_scored'])} of "
            f"{_count(summary['rows_in'])} rows, {_count(summary['rows_rejected'])} rejected, "
            f"churn rate {'?' if rate is None else format(rate, '.1%')}. "
            f"Report: {summary['report_html']}",
        )
        return summary

    score(wait_for_input())


churn_batch()
