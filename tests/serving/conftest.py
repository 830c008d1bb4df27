"""Served bentos in production set-ups: Redis cache, tokens, CORS, a body limit, two workers; and
a second model store holding two versions (for roll-back, version change and `bentoml build`)."""

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.samples import request
from tests.support import ROOT, Process, start_bento

TOKENS = ("t-one", "t-two")
ORIGIN = "https://app.example"
MAX_BODY_BYTES = 100_000
CACHE_TTL_SECONDS = 120
AUTH = {"Authorization": f"Bearer {TOKENS[0]}"}


def metric(url: str, name: str, **labels: str) -> float:
    """The value of one sample on /metrics (0 when the series does not exist yet)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def customer(i: int, age: float = 42.0) -> dict:
    """A valid request; `i` makes the features (and so the cache key) unique."""
    return request(
        customer_id=f"c-{i}",
        age=age,
        income=30_000.0 + i,
        purchase_history=7,
        last_purchase_date="2026-05-01",
    )


@dataclass(frozen=True)
class Store:
    home: str
    tags: list[str]  # oldest first


@pytest.fixture(scope="session")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A BentoML home of its own with two trained versions of the model."""
    home = str(tmp_path_factory.mktemp("bentoml-two-versions"))
    env = {**os.environ, "BENTOML_HOME": home}
    for seed in ("1", "2"):
        cmd = [sys.executable, "-m", "models.train", "--rows", "2000", "--seed", seed]
        subprocess.run([*cmd, "--classifier", "logistic_regression"], cwd=ROOT, env=env, check=True)
    code = (
        "import bentoml;"
        "ms = sorted(bentoml.models.list(), key=lambda m: m.info.creation_time);"
        "print(*[m.tag for m in ms])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    tags = out.stdout.split()
    assert len(tags) == 2
    return Store(home, tags)


@pytest.fixture(scope="session")
def redis_url(redis_server: Process) -> str:
    # A database of its own on the session's Redis, so no other test sees these keys.
    return f"{redis_server.url.replace('http://', 'redis://')}/3"


@pytest.fixture(scope="session")
def production(logs_dir: Path, service_env: dict[str, str], redis_url: str) -> Iterator[Process]:
    """Two workers, the Redis cache, bearer tokens, one CORS origin and a small body limit."""
    env = {
        **service_env,
        "CHURN_REDIS_URL": redis_url,
        "CHURN_CACHE_TTL_SECONDS": str(CACHE_TTL_SECONDS),
        "CHURN_API_TOKENS": ",".join(TOKENS),
        "CHURN_CORS_ORIGINS": ORIGIN,
        "CHURN_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "BENTOML_CONFIG_OVERRIDES": '{"services": {"churn_service": {"workers": 2}}}',
    }
    proc = start_bento(logs_dir, env)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def rolled_back(
    logs_dir: Path, service_env: dict[str, str], two_versions: Store, redis_url: str
) -> Iterator[Process]:
    """The older of two stored versions, served by setting CHURN_MODEL_TAG (the roll-back),
    sharing the Redis database of `production`."""
    env = {
        **service_env,
        "BENTOML_HOME": two_versions.home,
        "CHURN_MODEL_TAG": two_versions.tags[0],
        "CHURN_REDIS_URL": redis_url,
    }
    proc = start_bento(logs_dir, env)
    yield proc
    proc.stop()


@pytest.fixture
def authed(production: Process) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=production.url, headers=AUTH, timeout=30) as client:
        yield client
