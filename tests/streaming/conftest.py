"""Fixtures for the bridge tests: a Kafka helper on the session's broker, and private bentos."""

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.streaming.support import Kafka, Reader
from tests.support import Process, start_bento


@pytest.fixture(scope="module")
def kafka(kafka_broker: Process) -> Iterator[Kafka]:
    helper = Kafka(kafka_broker.port)
    yield helper
    helper.close()


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
