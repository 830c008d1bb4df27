"""The adaptive-batching design (`BatchedChurnService` + `ChurnModel` through `bentoml.depends`)
answers exactly as the default design does, and merges concurrent calls into batches."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serving.conftest import customer, metric
from tests.support import Process, start_bento


@pytest.fixture(scope="module")
def batched(logs_dir, service_env) -> Iterator[Process]:
    proc = start_bento(logs_dir, service_env, target="service:BatchedChurnService")
    yield proc
    proc.stop()


def test_concurrent_calls_match_the_default_design_and_are_batched(batched, bento):
    bodies = [customer(8000 + i, age=20 + i) for i in range(64)]

    limits = httpx.Limits(max_connections=32)
    with httpx.Client(timeout=60, limits=limits) as http:

        def post(url: str, body: dict) -> dict:
            resp = http.post(f"{url}/predict", json=body)
            assert resp.status_code == 200, resp.text
            return resp.json()

        with ThreadPoolExecutor(32) as pool:
            got = list(pool.map(lambda b: post(batched.url, b), bodies * 3))
        expected = [post(bento.url, b) for b in bodies]
    keys = ("customer_id", "prediction", "churn_probability", "confidence_level", "model_version")
    assert [{k: g[k] for k in keys} for g in got] == [{k: e[k] for k in keys} for e in expected] * 3
    batches = metric(
        batched.url, "bentoml_service_adaptive_batch_size_count", method_name="churn_probability"
    )
    rows = metric(
        batched.url, "bentoml_service_adaptive_batch_size_sum", method_name="churn_probability"
    )
    assert rows == len(got)
    assert 0 < batches < rows
