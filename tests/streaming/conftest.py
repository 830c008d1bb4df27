"""Fixtures for the bridge tests: a Kafka helper on the session's broker, and private bentos."""

import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.streaming.support import Kafka, Reader, start_bridge
from tests.support import Process, start_bento


@pytest.fixture(scope="module")
def kafka(kafka_broker: Process) -> Iterator[Kafka]:
    helper = Kafka(kafka_broker.port)
    yield helper
    helper.close()


@pytest.fixture
def launch(logs_dir: Path, kafka: Kafka) -> Iterator[Callable[..., Process]]:
    """Start bridges (`start_bridge`); any still running when the test ends is stopped, so a
    failed assertion never leaves one polling after the broker is gone."""
    started: list[Process] = []

    def start(topic: str, group: str, *args: str) -> Process:
        proc = start_bridge(logs_dir, kafka, topic, group, *args)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop(signal.SIGKILL)


@pytest.fixture
def readers(kafka: Kafka) -> Iterator[Callable[[str], tuple[Reader, Reader]]]:
    """Readers of an input topic's output and error topics, closed after the test."""
    opened: list[Reader] = []

    def open_pair(topic: str) -> tuple[Reader, Reader]:
        pair = Reader(kafka.servers, f"{topic}-out"), Reader(kafka.servers, f"{topic}-err")
        opened.extend(pair)
        return pair

    yield open_pair
    for reader in opened:
        reader.close()


@pytest.fixture
def private_bento(logs_dir: Path, service_env: dict[str, str]) -> Iterator[Callable[..., Process]]:
    """Start (and restart, on the same port) a bento of the test's own, to stop at will.

    It gets a BentoML home of its own, sharing the session's model store: `bentoml serve`
    empties its home's Prometheus directory on start, which would reset the shared bento's.
    """
    home = Path(tempfile.mkdtemp(prefix="churn-stream-bento-"))
    (home / "models").symlink_to(Path(os.environ["BENTOML_HOME"]) / "models")
    started: list[Process] = []

    def start(port: int | None = None) -> Process:
        proc = start_bento(logs_dir, {**service_env, "BENTOML_HOME": str(home)}, port=port)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
