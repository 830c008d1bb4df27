"""The DAG's deadline alert on real Airflow: a scheduler, an API server, a run that is late.

`airflow dags test` runs no scheduler, and only the scheduler sees a deadline pass and hands its
callback to the executor, so this test runs Airflow as a deployment does: the DAG serialized
with a 5 s deadline (parse-time settings come from AIRFLOW_VAR_*), unpaused, `airflow
scheduler` (LocalExecutor) and `airflow api-server` (the tasks' and callbacks' Execution API)
on 127.0.0.1. The scheduler queues the day's run, whose input never arrives: the sensor waits,
the deadline passes, and the test waits for the alert's email at the SMTP server and its POST at
the webhook receiver, then checks the run in Airflow's own database.
"""

import os
import re
import signal
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.airflow.conftest import (
    CLI_TIMEOUT,
    DAG_ID,
    Airflow,
    SmtpSink,
    WebhookReceiver,
    airflow_env,
    text_of,
)
from tests.venvs import run_logged

pytestmark = pytest.mark.slow

DEADLINE_SECONDS = 5
RECIPIENT = "late@example.com"
SENDER = "airflow@example.com"


def utc(text: str) -> datetime:
    """A time as the email (ISO, Z) or SQLite (naive UTC) writes it, as naive UTC."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd,
            cwd=log.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a process and its group (the scheduler's executor workers, the API's workers)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def late_run(
    airflow: Airflow,
    smtp: SmtpSink,
    webhook: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """A deployment whose scheduled run is past its deadline; yields its AIRFLOW_HOME."""
    root = tmp_path_factory.mktemp("deadline")
    home = root / "airflow-home"
    home.mkdir()
    port = free_port()
    env = airflow_env(
        home,
        airflow.dags,
        variables={
            "churn_batch_deadline_seconds": str(DEADLINE_SECONDS),
            "churn_batch_input_pattern": f"{root}/input/{{{{ ds }}}}/*.parquet",  # never there
            "churn_batch_poke_interval_seconds": "2",
            "churn_batch_email_to": RECIPIENT,
            "churn_batch_email_from": SENDER,
            "churn_batch_webhook_url": webhook.url("deadline/alerts"),
        },
        connections={"smtp_default": smtp.connection()},
    )
    env.update(
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
        AIRFLOW__API_AUTH__JWT_SECRET="churn-serving-test-only-" + "x" * 48,
    )
    airflow_cmd = [str(airflow.python), "-m", "airflow"]
    setup_log = home / "setup.log"
    for args in (["db", "migrate"], ["dags", "reserialize"]):
        run_logged([*airflow_cmd, *args], setup_log, CLI_TIMEOUT, env=env)
    procs = []
    try:
        procs.append(
            start(
                [*airflow_cmd, "api-server", "--host", "127.0.0.1", "--port", str(port)],
                env,
                home / "api-server.log",
            )
        )
        procs.append(start([*airflow_cmd, "scheduler"], env, home / "scheduler.log"))
        yield home
    finally:
        for proc in procs:
            stop(proc)
        for name in ("scheduler.log", "api-server.log"):
            tail = (home / name).read_text(errors="replace").splitlines()[-15:]
            print(f"--- {name}\n" + "\n".join(tail))  # shown by pytest if the test fails


def test_a_run_past_its_deadline_alerts_by_email_and_webhook(
    late_run: Path, smtp: SmtpSink, webhook: WebhookReceiver
) -> None:
    [email] = smtp.wait_for(RECIPIENT, timeout=CLI_TIMEOUT)
    with sqlite3.connect(late_run / "airflow.db") as db:
        [(run_id, state, queued_at)] = db.execute(
            "SELECT run_id, state, queued_at FROM dag_run WHERE dag_id = ?", (DAG_ID,)
        ).fetchall()
        [(missed, deadline_time)] = db.execute(
            "SELECT d.missed, d.deadline_time FROM deadline d JOIN dag_run r"
            " ON d.dagrun_id = r.id WHERE r.dag_id = ?",
            (DAG_ID,),
        ).fetchall()
    assert run_id.startswith("scheduled__")  # the scheduler's daily run, not a test's own
    assert state == "running"  # late, not failed: the sensor still waits for the input
    assert missed == 1
    day = run_id.removeprefix("scheduled__")[:10]

    assert (email.sender, email.recipients) == (SENDER, [RECIPIENT])
    assert email.subject == f"churn_batch {day}: run late (deadline missed)"
    body = text_of(email.html)
    assert re.search(
        rf"churn_batch {day}: run {re.escape(run_id)} not finished {DEADLINE_SECONDS} s after "
        r"it was queued \(queued at [^,]+, deadline [^,]+, state now (queued|running)\)",
        body,
    ), body
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    shown = {label: lines[lines.index(label) + 1] for label in ("run", "queued at", "deadline")}
    assert shown["run"] == run_id
    # The times shown are Airflow's own (its database, naive UTC), the deadline 5 s after queued.
    assert utc(shown["queued at"]) == utc(queued_at)
    assert utc(shown["deadline"]) == utc(deadline_time)
    assert utc(deadline_time) - utc(queued_at) == timedelta(seconds=DEADLINE_SECONDS)

    # The same alert reached the webhook, its URL read from the worker's environment.
    [post] = webhook.received("deadline/alerts")
    assert post["text"] in body
