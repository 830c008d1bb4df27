"""The Open Inference Protocol against a served bento, with Triton's own client, unchanged.

tritonclient sends JSON tensors (`binary_data=False`) in most tests, and its default binary
data (the protocol's binary extension, for inputs) in `test_binary_tensors_get_the_same_bits`;
answers are JSON either way (docs/oip.md). The independent
expectation of every probability is the in-process predictor on the matrix worked out by
tests/expected.py, and /predict/batch's answer for the same customers.
"""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from models.samples import record, records
from tests.conftest import AS_OF
from tests.expected import confidence_level, feature_matrix
from tests.serving.conftest import AUTH, metric
from tests.support import Process

CUSTOMERS = records(40, prefix="oip")
COLUMNS = ("age", "income", "purchase_history")


@pytest.fixture(scope="module")
def client(bento: Process) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(url=f"127.0.0.1:{bento.port}")
    try:
        yield c
    finally:
        c.close()


def matrix_input(matrix: np.ndarray, name: str = "input-0") -> triton.InferInput:
    tensor = triton.InferInput(name, list(matrix.shape), "FP64")
    tensor.set_data_from_numpy(matrix, binary_data=False)
    return tensor


def column_inputs(customers: list[dict[str, Any]]) -> list[triton.InferInput]:
    out = []
    for name in COLUMNS:
        values = np.array([c[name] for c in customers], np.float64)
        out.append(triton.InferInput(name, [len(values)], "FP64"))
        out[-1].set_data_from_numpy(values, binary_data=False)
    dates = np.array([c["last_purchase_date"].encode() for c in customers], np.object_)
    out.append(triton.InferInput("last_purchase_date", [len(dates)], "BYTES"))
    out[-1].set_data_from_numpy(dates, binary_data=False)
    return out


def outputs(*names: str) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(n, binary_data=False) for n in names]


def batch_scores(url: str, customers: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
    body = {"requests": [dict(c) for c in customers]}
    resp = httpx.post(f"{url}/predict/batch", json=body, timeout=30, **kw)
    assert resp.status_code == 200, resp.text
    assert resp.json()["error_count"] == 0
    return resp.json()["predictions"]


def bits(values: Any) -> np.ndarray:
    return np.asarray(values, np.float64).view(np.uint64)


def test_probes_and_metadata(client, model_tag):
    version = model_tag.rpartition(":")[2]
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("churn")
    assert client.is_model_ready("churn", version)
    assert not client.is_model_ready("churn", "other")
    assert client.get_server_metadata()["extensions"] == []
    meta = client.get_model_metadata("churn")
    assert meta["name"] == "churn"
    assert meta["versions"] == [version]
    assert meta["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, 4]}]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
        ("churn_probability", "FP64"),
        ("prediction", "INT64"),
        ("confidence_level", "BYTES"),
    ]
    assert client.get_model_metadata("churn", version) == meta


def test_a_matrix_gets_the_batch_probabilities_to_the_last_bit(client, bento, predictor):
    matrix = feature_matrix(CUSTOMERS, AS_OF)
    result = client.infer("churn", [matrix_input(matrix)], outputs=outputs("churn_probability"))
    got = result.as_numpy("churn_probability")
    batch = [p["churn_probability"] for p in batch_scores(bento.url, CUSTOMERS)]
    np.testing.assert_array_equal(bits(got), bits(batch))
    np.testing.assert_array_equal(bits(got), bits(predictor.churn_probability(matrix)))


def test_named_columns_with_dates_get_the_same_answers(client, bento, model_tag):
    result = client.infer("churn", column_inputs(CUSTOMERS), request_id="r-7")
    batch = batch_scores(bento.url, CUSTOMERS)
    response = result.get_response()
    assert response["id"] == "r-7"
    assert response["model_version"] == model_tag.rpartition(":")[2]
    np.testing.assert_array_equal(
        bits(result.as_numpy("churn_probability")), bits([p["churn_probability"] for p in batch])
    )
    assert result.as_numpy("prediction").tolist() == [p["prediction"] for p in batch]
    assert result.as_numpy("prediction").dtype == np.int64
    levels = [
        v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("confidence_level")
    ]
    assert levels == [confidence_level(p["churn_probability"]) for p in batch]


def test_only_the_outputs_asked_for_come_back(client):
    matrix = feature_matrix(CUSTOMERS[:3], AS_OF)
    result = client.infer("churn", [matrix_input(matrix)], outputs=outputs("prediction"))
    assert [o["name"] for o in result.get_response()["outputs"]] == ["prediction"]
    assert result.get_response()["outputs"][0]["shape"] == [3]


def test_the_served_version_answers_and_another_is_a_404_naming_it(client, model_tag):
    version = model_tag.rpartition(":")[2]
    matrix = feature_matrix(CUSTOMERS[:2], AS_OF)
    assert client.infer("churn", [matrix_input(matrix)], model_version=version).as_numpy(
        "prediction"
    ).shape == (2,)
    for name, asked in (("churn", "v0"), ("other", "")):
        with pytest.raises(InferenceServerException) as caught:
            client.infer(name, [matrix_input(matrix)], model_version=asked)
        assert caught.value.status() == "404"
        assert repr(asked or name) in caught.value.message()


def test_nan_is_a_400_naming_the_input(client):
    matrix = feature_matrix(CUSTOMERS[:2], AS_OF)
    matrix[1, 0] = np.nan
    with pytest.raises(InferenceServerException) as caught:
        client.infer("churn", [matrix_input(matrix, "feats")])
    assert caught.value.status() == "400"
    assert caught.value.message() == "input 'feats' row 1 (age): is null"


ROW = [42.0, 55000.0, 12.0, 29.0]


def body(*inputs: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": list(inputs)}


def tensor(name: str, shape: list[int], datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


COLUMN_TENSORS = [
    tensor("age", [1], "FP64", [42]),
    tensor("income", [1], "FP64", [55000]),
    tensor("purchase_history", [1], "INT64", [12]),
]
DATE = tensor("last_purchase_date", [1], "BYTES", ["2026-06-01"])


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (body(tensor("x", [1, 3], "FP64", ROW[:3])), "input 'x'"),  # wrong shape
        (body(tensor("x", [1, 4], "INT64", [1, 2, 3, 4])), "input 'x'"),  # wrong datatype
        (body(tensor("x", [2, 4], "FP64", ROW)), "input 'x'"),  # fewer elements than the shape
        (body(*COLUMN_TENSORS[:2], DATE), "input 'purchase_history'"),  # missing
        (
            body(*COLUMN_TENSORS, tensor("last_purchase_date", [1], "BYTES", ["2026-13-01"])),
            "input 'last_purchase_date' row 0",
        ),
        (
            body(*COLUMN_TENSORS, tensor("last_purchase_date", [1], "BYTES", ["2026-07-01"])),
            "input 'last_purchase_date' row 0",
        ),
        (body(tensor("x", [1, 4], "FP64", [121.0, *ROW[1:]])), "input 'x' row 0 (age)"),
        (body(tensor("x", [1, 4], "FP64", [*ROW[:2], 1.5, 29.0])), "input 'x' row 0"),
        ({"inputs": "x"}, "inputs"),
        ({"outputs": []}, "inputs"),
        (body(*COLUMN_TENSORS, DATE) | {"outputs": [{"name": "p"}]}, "output 'p'"),
    ],
)
def test_a_bad_tensor_is_a_400_naming_the_input(bento, payload, named):
    resp = httpx.post(f"{bento.url}/v2/models/churn/infer", json=payload, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"].startswith(named), resp.json()


@pytest.mark.parametrize("text", ["{", "NaN", '{"inputs": [1, }', ""])
def test_a_body_that_is_not_a_json_object_is_a_400(bento, text):
    resp = httpx.post(
        f"{bento.url}/v2/models/churn/infer",
        content=text,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 400, resp.text
    assert isinstance(resp.json()["error"], str)


def test_tokens_apply_to_inference_and_not_to_the_probes(production):
    infer = f"{production.url}/v2/models/churn/infer"
    payload = body(tensor("x", [1, 4], "FP64", ROW))
    assert httpx.post(infer, json=payload, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.post(infer, json=payload, headers=wrong, timeout=30).status_code == 403
    assert httpx.get(f"{production.url}/v2/models/churn", timeout=30).status_code == 401
    for probe in ("/v2/health/live", "/v2/health/ready"):
        assert httpx.get(f"{production.url}{probe}", timeout=30).status_code == 200
    c = triton.InferenceServerClient(url=f"127.0.0.1:{production.port}")
    try:
        result = c.infer("churn", [matrix_input(np.array([ROW]))], headers=AUTH)
        assert result.as_numpy("prediction").shape == (1,)
    finally:
        c.close()


def test_the_cache_and_the_metrics_are_those_of_the_batch_endpoint(production, predictor):
    # Incomes no other test sends, so that the first call misses the session's cache.
    customers = [record(customer_id=f"oc-{i}", income=41_111.25 + i) for i in range(5)]
    matrix = feature_matrix(customers, AS_OF)
    payload = json.loads(json.dumps(body(tensor("x", [5, 4], "FP64", matrix.ravel().tolist()))))
    url = f"{production.url}/v2/models/churn/infer"
    hits = metric(production.url, "churn_cache_lookups_total", result="hit")
    sizes = metric(production.url, "churn_batch_size_count", endpoint="infer")
    answers = [httpx.post(url, json=payload, headers=AUTH, timeout=30) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert metric(production.url, "churn_cache_lookups_total", result="hit") == hits + 5
    assert metric(production.url, "churn_batch_size_count", endpoint="infer") == sizes + 2
    first, second = (
        next(o for o in a.json()["outputs"] if o["name"] == "churn_probability") for a in answers
    )
    np.testing.assert_array_equal(bits(first["data"]), bits(second["data"]))
    np.testing.assert_array_equal(bits(first["data"]), bits(predictor.churn_probability(matrix)))
    batch = batch_scores(production.url, customers, headers=AUTH)  # all five from the cache now
    np.testing.assert_array_equal(
        bits(first["data"]), bits([p["churn_probability"] for p in batch])
    )
    failures = metric(
        production.url, "churn_validation_failures_total", endpoint="infer", field="age"
    )
    bad = body(tensor("x", [1, 4], "FP64", [-1.0, *ROW[1:]]))
    assert httpx.post(url, json=bad, headers=AUTH, timeout=30).status_code == 400
    assert (
        metric(production.url, "churn_validation_failures_total", endpoint="infer", field="age")
        == failures + 1
    )


def test_binary_tensors_get_the_same_bits(client, bento):
    """tritonclient's default (`binary_data=True`): the binary extension, for inputs."""
    matrix = feature_matrix(CUSTOMERS, AS_OF)
    tensor = triton.InferInput("x", list(matrix.shape), "FP64")
    tensor.set_data_from_numpy(matrix)
    got = client.infer("churn", [tensor]).as_numpy("churn_probability")
    columns = column_inputs(CUSTOMERS)
    for name, c in zip((*COLUMNS, "last_purchase_date"), columns, strict=True):
        values = np.array([x[name] for x in CUSTOMERS])
        c.set_data_from_numpy(values.astype(np.object_ if name not in COLUMNS else np.float64))
    by_column = client.infer("churn", columns).as_numpy("churn_probability")
    batch = bits([p["churn_probability"] for p in batch_scores(bento.url, CUSTOMERS)])
    np.testing.assert_array_equal(bits(got), batch)
    np.testing.assert_array_equal(bits(by_column), batch)


def test_binary_data_that_does_not_add_up_is_a_400(bento):
    json_part = json.dumps(
        {"inputs": [{**tensor("x", [1, 4], "FP64", []), "parameters": {"binary_data_size": 32}}]}
    ).encode()
    resp = httpx.post(
        f"{bento.url}/v2/models/churn/infer",
        content=json_part + b"\0" * 16,
        headers={"Inference-Header-Content-Length": str(len(json_part))},
        timeout=30,
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"].startswith("input 'x'")
