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

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.venvs import cached_venv, run_logged

# Verified with this project's DAG on Python 3.11; override to try another release.
AIRFLOW_REQUIREMENT = os.environ.get("CHURN_AIRFLOW_REQUIREMENT", "apache-airflow==3.3.2")
DAG_FILE = ROOT / "batch" / "dags" / "churn_batch.py"
DAG_ID = "churn_batch"
BUILD_TIMEOUT = 1200
CLI_TIMEOUT = 300


def airflow_venv() -> Path:
    """The cached venv's python, building the venv first if there is none (tests/venvs.py)."""
    return cached_venv("airflow", [AIRFLOW_REQUIREMENT], BUILD_TIMEOUT)


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    try:
        return airflow_venv()
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"cannot build the Airflow virtualenv ({AIRFLOW_REQUIREMENT}): {exc}")


@pytest.fixture(scope="session")
def dags_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dags folder with only this project's DAG file (as a deployment would have it)."""
    folder = tmp_path_factory.mktemp("airflow-dags")
    shutil.copy(DAG_FILE, folder)
    return folder


def airflow_env(home: Path, dags: Path, variables: dict[str, str] | None = None) -> dict[str, str]:
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

    def start_dags_test(self, home: Path, day: str, variables: dict[str, str]) -> DagRun:
        log = home / "dags-test.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(self.python), "-m", "airflow", "dags", "test", DAG_ID, day],
                cwd=home,
                env=airflow_env(home, self.dags, variables),
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
