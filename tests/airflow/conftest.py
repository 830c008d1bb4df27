"""Real Apache Airflow for the DAG tests, kept out of the project's environment.

- Airflow is pip-installed into its own virtualenv, built once per requirement and Python and
  cached under ~/.cache/churn-serving/ (later runs and CI on the same machine reuse it). It is
  built in a temporary directory and renamed into place when complete, so an interrupted build
  is never reused. It is always run as `VENV/bin/python -m airflow` (a renamed venv's script
  shebangs point at the build directory).
- One metadata database is migrated (and the DAG serialized) per session; every run gets its own
  AIRFLOW_HOME holding a copy of it.
- `airflow dags test` runs as a subprocess in its own process group, with the DAG's settings as
  AIRFLOW_VAR_* variables, and a webhook receiver on 127.0.0.1 records the alerts it POSTs.

If Airflow cannot be installed the tests fail; they never skip.
"""

import asyncio
import html
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP

from tests.support import ROOT
from tests.venvs import cached_venv, run_logged

# Verified with this project's DAG on Python 3.11; override to try another release.
AIRFLOW_REQUIREMENT = os.environ.get("CHURN_AIRFLOW_REQUIREMENT", "apache-airflow==3.3.2")
# The DAG's email alerts (SmtpNotifier); installed with Airflow so pip resolves them together.
SMTP_PROVIDER_REQUIREMENT = os.environ.get(
    "CHURN_AIRFLOW_SMTP_REQUIREMENT", "apache-airflow-providers-smtp==3.2.0"
)
REQUIREMENTS = [AIRFLOW_REQUIREMENT, SMTP_PROVIDER_REQUIREMENT]
DAG_FILE = ROOT / "batch" / "dags" / "churn_batch.py"
# What a deployment copies into its dags folder.
DAG_FILES = [DAG_FILE, ROOT / "batch" / "dags" / "churn_batch_alerts.py"]
DAG_ID = "churn_batch"
BUILD_TIMEOUT = 1200
CLI_TIMEOUT = 300


def airflow_venv() -> Path:
    """The cached venv's python, building the venv first if there is none (tests/venvs.py)."""
    return cached_venv("airflow", REQUIREMENTS, BUILD_TIMEOUT)


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    try:
        return airflow_venv()
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"cannot build the Airflow virtualenv ({' '.join(REQUIREMENTS)}): {exc}")


@pytest.fixture(scope="session")
def dags_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dags folder with only this project's DAG files (as a deployment would have it)."""
    folder = tmp_path_factory.mktemp("airflow-dags")
    for path in DAG_FILES:
        shutil.copy(path, folder)
    return folder


def airflow_env(
    home: Path,
    dags: Path,
    variables: dict[str, str] | None = None,
    connections: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of an Airflow command: inherited, minus any AIRFLOW_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    for name, value in (variables or {}).items():
        env[f"AIRFLOW_VAR_{name.upper()}"] = value
    for conn_id, value in (connections or {}).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = value
    return env


@pytest.fixture(scope="session")
def airflow_db(
    airflow_python: Path, dags_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A metadata database migrated once, with the DAG serialized in it (defaults)."""
    home = tmp_path_factory.mktemp("airflow-template")
    env = airflow_env(home, dags_folder)
    log = home / "setup.log"
    for args in (["db", "migrate"], ["dags", "reserialize"]):
        run_logged([str(airflow_python), "-m", "airflow", *args], log, CLI_TIMEOUT, env=env)
    return home / "airflow.db"


@dataclass
class DagRun:
    """One `airflow dags test` subprocess in its own AIRFLOW_HOME."""

    home: Path
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    duration: float | None = None

    def wait(self, timeout: float = CLI_TIMEOUT) -> int:
        try:
            self.proc.wait(timeout)
        finally:
            self.stop()
        if self.duration is None:
            self.duration = time.monotonic() - self.started
        return self.proc.returncode

    def stop(self) -> None:
        """End the run and everything it started (the group), if it is still going."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def run_id(self) -> str:
        """The run's id, from its metadata database."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            [(run_id,)] = db.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (DAG_ID,))
        return run_id

    def task_instances(self) -> dict[str, dict]:
        """task_id -> state, try_number, max_tries, from the run's metadata database."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute(
                "SELECT task_id, state, try_number, max_tries FROM task_instance WHERE dag_id = ?",
                (DAG_ID,),
            ).fetchall()
        return {t: {"state": s, "try_number": n, "max_tries": m} for t, s, n, m in rows}


@dataclass
class Airflow:
    python: Path
    dags: Path
    template_db: Path

    def new_home(self, path: Path) -> Path:
        path.mkdir(parents=True)
        shutil.copy(self.template_db, path / "airflow.db")
        return path

    def start_dags_test(
        self,
        home: Path,
        day: str,
        variables: dict[str, str],
        connections: dict[str, str] | None = None,
    ) -> DagRun:
        log = home / "dags-test.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(self.python), "-m", "airflow", "dags", "test", DAG_ID, day],
                cwd=home,
                env=airflow_env(home, self.dags, variables, connections),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return DagRun(home, proc, log, time.monotonic())

    def python_json(self, home: Path, code: str, *args: str) -> dict:
        """Run code in Airflow's python; it prints one JSON document last."""
        proc = subprocess.run(
            [str(self.python), "-c", code, *args],
            cwd=home,
            env=airflow_env(home, self.dags),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def airflow(airflow_python: Path, dags_folder: Path, airflow_db: Path) -> Airflow:
    return Airflow(airflow_python, dags_folder, airflow_db)


@dataclass
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records the JSON body of every POST, by path."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    posts: dict[str, list[dict]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{path.lstrip('/')}"

    def received(self, path: str) -> list[dict]:
        with self.lock:
            return list(self.posts.get("/" + path.lstrip("/"), []))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def start_receiver() -> WebhookReceiver:
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                payload = json.loads(body)
            except ValueError:
                payload = {"invalid_json": body.decode(errors="replace")}
            with receiver.lock:  # recorded before the sender gets its answer
                receiver.posts.setdefault(self.path, []).append(payload)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    receiver = WebhookReceiver(server, thread)
    thread.start()
    return receiver


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    receiver = start_receiver()
    try:
        yield receiver
    finally:
        receiver.close()


@dataclass
class Email:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def html(self) -> str:
        part = self.message.get_body(("html",))
        assert part is not None, self.message.as_string()[:2000]
        return str(part.get_content())


def text_of(html_body: str) -> str:
    """The text a mail client shows for an HTML body: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "\n", html_body))


REFUSED = "refused@example.com"  # the sink answers 550 to this recipient


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self) -> None:
        self.emails: list[Email] = []
        self.changed = threading.Condition()
        # Its own loop in a thread, serving a socket bound here: the port is known before it
        # starts (aiosmtpd's Controller cannot take port 0).
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None

    def start(self) -> None:
        self.thread.start()
        serve = self.loop.create_server(lambda: SMTP(self), sock=self.sock)
        self.server = asyncio.run_coroutine_threadsafe(serve, self.loop).result(30)

    def stop(self) -> None:
        if self.server is not None:
            self.loop.call_soon_threadsafe(self.server.close)
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        self.sock.close()
        self.loop.close()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:  # noqa: N802
        if address == REFUSED:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook
        message = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        with self.changed:  # recorded before the sender hears 250
            self.emails.append(Email(envelope.mail_from, list(envelope.rcpt_tos), message))
            self.changed.notify_all()
        return "250 Message accepted for delivery"

    def connection(self, **extra: object) -> str:
        """An Airflow SMTP connection (JSON, for AIRFLOW_CONN_*) to this server: plain SMTP."""
        extra = {"disable_ssl": True, "disable_tls": True, "retry_limit": 0, **extra}
        conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra}
        return json.dumps(conn)

    def sent_to(self, address: str) -> list[Email]:
        with self.changed:
            return [e for e in self.emails if address in e.recipients]

    def wait_for(self, address: str, count: int = 1, timeout: float = CLI_TIMEOUT) -> list[Email]:
        """The first `count` emails to address, once that many have arrived (else it fails)."""
        with self.changed:
            arrived = self.changed.wait_for(lambda: len(self.sent_to(address)) >= count, timeout)
        assert arrived, f"{count} email(s) to {address} did not arrive in {timeout} s"
        return self.sent_to(address)[:count]


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    try:
        sink.start()
        yield sink
    finally:
        sink.stop()
