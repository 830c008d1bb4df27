"""The churn_batch DAG on real Airflow: it parses, and `airflow dags test` runs each outcome.

The four day-runs are independent (each has its own AIRFLOW_HOME, input, output and webhook
paths), so the module starts them all at once and each test waits for its own: one Airflow
start-up's worth of wall time instead of four. A run is judged from its exit code, the files it
wrote, Airflow's own task-instance rows and what reached the webhook receiver.
"""

import ast
import json
import re
import shlex
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.data import synthetic_customers
from tests.airflow.conftest import (
    DAG_FILES,
    REFUSED,
    Airflow,
    DagRun,
    Email,
    SmtpSink,
    WebhookReceiver,
    text_of,
)
from tests.batch.conftest import write_parquet
from tests.support import ROOT

pytestmark = pytest.mark.slow

DAY = "2026-06-30"
SENDER = "airflow@example.com"
LONG_RETRY_DELAY = 900  # a retry would keep a run waiting this long: the runs must end sooner


def valid_customers(n: int) -> list[dict]:
    """Customers drawn like the training population (another seed): nothing anomalous."""
    frame = synthetic_customers(n, seed=7, as_of=date.fromisoformat(DAY))
    return frame.drop(columns=["days_since_purchase", "churned"]).to_dict("records")


def drifted_customers(n: int) -> list[dict]:
    """Every customer's last purchase 2 to 4 years ago and 40x the income: recency and income
    drift (PSI far above 0.25) and the churn rate goes above 50%."""
    frame = synthetic_customers(n, seed=8, as_of=date.fromisoformat(DAY))
    days = np.random.default_rng(8).integers(730, 1500, n)
    frame["last_purchase_date"] = [
        (date.fromisoformat(DAY) - timedelta(days=int(d))).isoformat() for d in days
    ]
    frame["income"] *= 40
    return frame.drop(columns=["days_since_purchase", "churned"]).to_dict("records")


@dataclass
class Scenario:
    run: DagRun
    root: Path
    receiver: WebhookReceiver
    smtp: SmtpSink
    name: str

    @property
    def output(self) -> Path:
        return self.root / "scored" / DAY

    @property
    def alerts(self) -> list[str]:
        return [p["text"] for p in self.receiver.received(f"{self.name}/alerts")]

    @property
    def summaries(self) -> list[str]:
        return [p["text"] for p in self.receiver.received(f"{self.name}/summary")]

    @property
    def recipient(self) -> str:
        return f"{self.name}@example.com"

    @property
    def emails(self) -> list[Email]:
        return self.smtp.sent_to(self.recipient)

    def finish(self) -> int:
        code = self.run.wait()
        print(self.run.log_tail())  # shown by pytest if the test fails
        return code


def start_scenario(
    airflow: Airflow,
    receiver: WebhookReceiver,
    smtp: SmtpSink,
    root: Path,
    name: str,
    model_tag: str,
    files: dict[str, bytes | list[dict]],
    **settings: str,
) -> Scenario:
    """Write the day's input files under root/input/DAY/ and start `airflow dags test` on it."""
    day_dir = root / "input" / DAY
    day_dir.mkdir(parents=True)
    for filename, content in files.items():
        if isinstance(content, bytes):
            (day_dir / filename).write_bytes(content)
        else:
            write_parquet(day_dir / filename, content)
    variables = {
        "churn_batch_command": shlex.quote(str(Path(sys.executable).parent / "churn-batch")),
        "churn_batch_input_pattern": f"{root}/input/{{{{ ds }}}}/*.parquet",
        "churn_batch_output_root": str(root / "scored"),
        "churn_batch_model_tag": model_tag,
        "churn_batch_webhook_url": receiver.url(f"{name}/alerts"),
        "churn_batch_summary_webhook_url": receiver.url(f"{name}/summary"),
        "churn_batch_retries": "2",
        "churn_batch_retry_delay_seconds": str(LONG_RETRY_DELAY),
        "churn_batch_poke_interval_seconds": "1",
        "churn_batch_email_to": f"{name}@example.com",
        "churn_batch_email_from": SENDER,
        # `airflow dags test` (3.3.2) fails a successful run of a DAG with a deadline as it
        # ends (it looks the deadline up by its definition instead of its id: apache/airflow
        # issue 73428); the deadline is tested under a scheduler in test_deadline.py.
        "churn_batch_deadline_seconds": "0",
        **{f"churn_batch_{k}": v for k, v in settings.items()},
    }
    connections = {"smtp_default": smtp.connection()}
    home = airflow.new_home(root / "airflow-home")
    run = airflow.start_dags_test(home, DAY, variables, connections)
    return Scenario(run, root, receiver, smtp, name)


@pytest.fixture(scope="module")
def scenarios(
    airflow: Airflow,
    webhook: WebhookReceiver,
    smtp: SmtpSink,
    model_tag: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Scenario]]:
    started: dict[str, Scenario] = {}

    def start(name: str, files: dict[str, bytes | list[dict]], **settings: str) -> None:
        root = tmp_path_factory.mktemp(f"dag-{name}")
        started[name] = start_scenario(
            airflow, webhook, smtp, root, name, model_tag, files, **settings
        )

    try:
        start("valid", {"customers.parquet": valid_customers(600)})
        # The SMTP server refuses this run's recipient: the email fails, the webhook alert not.
        start("missing", {}, sensor_timeout_seconds="3", email_to=REFUSED)
        start("anomalous", {"customers.parquet": drifted_customers(2_500)})
        start("unreadable", {"customers.parquet": b"not a parquet file\n" * 200}, retries="3")
        yield started
    finally:
        for scenario in started.values():
            scenario.run.stop()


def test_dag_parses_with_the_documented_shape(airflow: Airflow, tmp_path: Path) -> None:
    """No import errors, and the defaults of SETTINGS when no Variable is set."""
    info = airflow.python_json(tmp_path, PARSE_DAG, str(airflow.dags))
    assert info["import_errors"] == {}
    assert info["schedule"] == "0 0 * * *"  # @daily, due at midnight UTC with ds = that day
    assert info["timezone"] == "UTC"
    assert info["timetable"] == "CronTriggerTimetable"
    assert info["catchup"] is False
    assert info["max_active_runs"] == 1
    # The seed's two-hour SLA, as Airflow 3's deadline: 2 h after the run was queued.
    assert info["deadline"] == [
        {
            "reference": "DagRunQueuedAtDeadline",
            "interval": 7200.0,
            "callback": "SyncCallback",
            "path": "churn_batch_alerts.deadline_callback",
            "kwargs": {
                "deadline_seconds": 7200,
                "parsed": {"email_to": "", "email_conn_id": "smtp_default", "email_from": ""},
            },
        }
    ]
    assert info["tasks"] == {
        "wait_for_input": {
            "upstream": [],
            "mode": "reschedule",
            "poke_interval": 300.0,
            "timeout": 43200.0,
            "retries": 2,
            "retry_delay": 300.0,
            "execution_timeout": None,
            "on_failure_callback": True,
        },
        "score": {
            "upstream": ["wait_for_input"],
            "mode": None,
            "poke_interval": None,
            "timeout": None,
            "retries": 2,
            "retry_delay": 300.0,
            "execution_timeout": 7200.0,
            "on_failure_callback": True,
        },
    }


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_import_only_airflow_and_the_standard_library(path: Path) -> None:
    tree = ast.parse(path.read_text())
    modules = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    siblings = {p.stem for p in DAG_FILES}
    assert modules - {"airflow", "__future__"} - siblings <= sys.stdlib_module_names


def test_email_is_optional_and_never_raises(airflow: Airflow, tmp_path: Path) -> None:
    """churn_batch_alerts.send_email in Airflow's python: with no recipient, no connection or
    a closed SMTP port it sends nothing, raises nothing and logs why."""
    # Bound, never listening: connections to it are refused, and no one else can take it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        info = airflow.python_json(tmp_path, SEND_EMAILS, str(airflow.dags), str(port))
    assert info["no recipient"] == {
        "sent": False,
        "log": ["no churn_batch_email_to set: not emailing: subject"],
    }
    assert info["no connection"] == {
        "sent": False,
        "log": [
            "email to ops@example.com (connection no_such_smtp) not sent: "
            "AirflowException: SMTP connection is not found."
        ],
    }
    assert info["closed port"] == {
        "sent": False,
        "log": [
            "email to ops@example.com (connection closed_smtp) not sent: "
            "ConnectionRefusedError: [Errno 111] Connection refused"
        ],
    }


SEND_EMAILS = """
import json, logging, os, sys
sys.path.append(sys.argv[1])  # as Airflow puts the dags folder on sys.path
import churn_batch_alerts as alerts

records = []
handler = logging.Handler()
handler.emit = lambda record: records.append(record.getMessage())
alerts.log.addHandler(handler)
alerts.log.setLevel(logging.INFO)
closed = json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": int(sys.argv[2]),
                     "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0}})
os.environ["AIRFLOW_CONN_CLOSED_SMTP"] = closed
cases = {
    "no recipient": {"email_to": ""},
    "no connection": {"email_to": "ops@example.com", "email_conn_id": "no_such_smtp"},
    "closed port": {"email_to": "ops@example.com", "email_conn_id": "closed_smtp"},
}
out = {}
for name, values in cases.items():
    records.clear()
    settings = {"email_conn_id": "smtp_default", "email_from": "a@example.com", **values}
    sent = alerts.send_email(settings.__getitem__, "subject", "text", {"run": "r"})
    out[name] = {"sent": sent, "log": list(records)}
print(json.dumps(out))
"""


def test_docs_list_every_variable_of_the_dag() -> None:
    """docs/scheduling.md's Variables table has one row per entry of SETTINGS, no more."""
    tree = ast.parse(DAG_FILES[0].read_text())
    [settings] = [
        node.value
        for node in tree.body
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "SETTINGS"
    ]
    names = {f"churn_batch_{key}" for key in ast.literal_eval(settings)}
    docs = (ROOT / "docs" / "scheduling.md").read_text()
    rows = set(re.findall(r"^\| `(churn_batch_\w+)` \|", docs, flags=re.MULTILINE))
    assert rows == names


def test_a_day_is_scored_into_its_dated_output(scenarios: dict[str, Scenario]) -> None:
    s = scenarios["valid"]
    assert s.finish() == 0
    report = json.loads((s.output / "report.json").read_text())
    assert report["run"]["as_of"] == DAY
    assert report["summary"]["rows_in"] == report["summary"]["rows_scored"] == 600
    assert report["anomalies"] == []
    predictions = pd.read_parquet(s.output / "predictions.parquet")
    assert len(predictions) == 600
    assert (predictions["as_of"].astype(str) == DAY).all()
    assert (s.output / "report.html").is_file()
    assert s.run.task_instances() == {
        "wait_for_input": {"state": "success", "try_number": 1, "max_tries": 2},
        "score": {"state": "success", "try_number": 1, "max_tries": 2},
    }
    assert s.alerts == []
    assert s.emails == []  # a recipient is set, but a success sends no email
    rate = report["summary"]["churn_rate"]
    assert s.summaries == [
        f"churn_batch {DAY}: scored 600 of 600 rows, 0 rejected, churn rate {rate:.1%}. "
        f"Report: {s.output / 'report.html'}"
    ]


def test_missing_input_times_out_the_sensor_and_alerts(scenarios: dict[str, Scenario]) -> None:
    s = scenarios["missing"]
    assert s.finish() != 0
    assert s.run.duration < LONG_RETRY_DELAY  # a sensor timeout is not retried
    tis = s.run.task_instances()
    assert tis["wait_for_input"] == {"state": "failed", "try_number": 1, "max_tries": 2}
    assert tis["score"]["state"] == "upstream_failed"
    assert not s.output.exists()
    [alert] = s.alerts
    assert alert.startswith(f"churn_batch {DAY}: task wait_for_input failed (try 1 of 3): ")
    assert "AirflowSensorTimeout" in alert
    assert s.summaries == []
    # The email was refused (550): the task log says so, and the run failed only as it would.
    assert s.smtp.sent_to(REFUSED) == []
    assert f"email to {REFUSED} (connection smtp_default) not sent: SMTPRecipientsRefused" in (
        s.run.log.read_text()
    )


def test_anomalies_fail_without_retry_and_name_them(scenarios: dict[str, Scenario]) -> None:
    s = scenarios["anomalous"]
    assert s.finish() != 0
    assert s.run.duration < LONG_RETRY_DELAY
    assert s.run.task_instances()["score"] == {"state": "failed", "try_number": 1, "max_tries": 2}
    report = json.loads((s.output / "report.json").read_text())  # written all the same
    assert report["summary"]["rows_scored"] == 2_500
    kinds = {a["kind"] for a in report["anomalies"]}
    assert "churn_rate_high" in kinds
    assert {"income", "days_since_purchase"} <= {
        name for name, d in report["drift"].items() if d["status"] == "significant"
    }
    # One alert, the anomaly alert, naming every anomaly of the report (no second, generic one).
    [alert] = s.alerts
    assert alert.startswith(f"churn_batch {DAY}: {len(report['anomalies'])} anomalies")
    assert str(s.output / "report.html") in alert
    for anomaly in report["anomalies"]:
        assert f"- {anomaly['kind']}: {anomaly['message']}" in alert
    assert s.summaries == []
    # The same alert by email, with the run's details.
    [email] = s.emails
    assert (email.sender, email.recipients) == (SENDER, [s.recipient])
    assert email.subject == f"churn_batch {DAY}: {len(report['anomalies'])} anomalies"
    body = text_of(email.html)
    assert alert in body
    assert_run_details(body, s.run, task="score", attempt="1 of 3")


def test_unreadable_input_fails_at_once_without_retry(scenarios: dict[str, Scenario]) -> None:
    s = scenarios["unreadable"]
    assert s.finish() != 0
    assert s.run.duration < LONG_RETRY_DELAY  # 3 retries 15 minutes apart were not taken
    assert s.run.task_instances()["score"] == {"state": "failed", "try_number": 1, "max_tries": 3}
    assert not s.output.exists()
    [alert] = s.alerts
    assert alert.startswith(f"churn_batch {DAY}: task score failed (try 1 of 4): ")
    assert "AirflowFailException: churn-batch exited 2" in alert
    assert "customers.parquet" in alert  # the script names the file it cannot read
    assert s.summaries == []
    [email] = s.emails
    assert (email.sender, email.recipients) == (SENDER, [s.recipient])
    assert email.subject == f"churn_batch {DAY}: task score failed"
    body = text_of(email.html)
    assert alert in body
    assert_run_details(body, s.run, task="score", attempt="1 of 4")


def assert_run_details(body: str, run: DagRun, task: str, attempt: str) -> None:
    """The email names the DAG, the run (as Airflow's database has it), the day, task and try."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    for label, value in [
        ("DAG", "churn_batch"),
        ("run", run.run_id()),
        ("logical date", DAY),
        ("task", task),
        ("try", attempt),
    ]:
        assert lines[lines.index(label) + 1] == value, (label, lines)


PARSE_DAG = """
import json, sys
from airflow.dag_processing.dagbag import BundleDagBag

# As the dag processor parses a bundle: its folder on sys.path (churn_batch_alerts imports).
bag = BundleDagBag(sys.argv[1], bundle_path=sys.argv[1], bundle_name="dags-folder")
dag = bag.dags.get("churn_batch")
def seconds(value):
    return None if value is None else value.total_seconds()
print(json.dumps({
    "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
    "schedule": dag and dag.timetable.expression,
    "timezone": dag and str(dag.timetable.timezone),
    "timetable": dag and type(dag.timetable).__name__,
    "catchup": dag and dag.catchup,
    "max_active_runs": dag and dag.max_active_runs,
    "deadline": dag and [
        {
            "reference": type(d.reference).__name__,
            "interval": seconds(d.interval),
            "callback": type(d.callback).__name__,
            "path": d.callback.path,
            "kwargs": d.callback.kwargs,
        }
        for d in dag.deadline or []
    ],
    "tasks": dag and {
        t.task_id: {
            "upstream": sorted(t.upstream_task_ids),
            "mode": getattr(t, "mode", None),
            "poke_interval": getattr(t, "poke_interval", None),
            "timeout": getattr(t, "timeout", None),
            "retries": t.retries,
            "retry_delay": seconds(t.retry_delay),
            "execution_timeout": seconds(t.execution_timeout),
            "on_failure_callback": bool(t.on_failure_callback),
        }
        for t in dag.tasks
    },
}))
"""
