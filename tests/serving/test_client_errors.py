"""Client errors: the contract's words in every 400, one quiet log line each, and a count.

/predict's reasons are pinned to the batch endpoint's for every case of the shared invalid table
(tests/invalid.py); the log and the metric are read from a bento of this module's own.
"""

import re
from pathlib import Path

import httpx
import pytest

from models.validation import describe
from tests.conftest import AS_OF
from tests.invalid import JSON_CASES
from tests.reliability.corpus import invalid_records, nested
from tests.serving.conftest import metric
from tests.support import Process, start_bento, wait_until

RECORDS = invalid_records()
ENDPOINTS = {"/predict": "predict", "/predict/batch": "batch", "/predict/dataframe": "dataframe"}
GOOD = {"age": 42, "income": 55000.0, "purchase_history": 12, "last_purchase_date": "2026-06-01"}
MARKER = "MARKER-c0ffee"  # sent in bad bodies; must never reach the log
INVALID_JSON = f'{{"customer_id": "{MARKER}", '.encode()
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
NOT_JSON = {
    "error": "request body: is not valid JSON",
    "detail": [{"loc": [], "msg": "request: is not valid JSON", "type": "not_json"}],
}
UNREADABLE = [
    pytest.param(INVALID_JSON, "application/json", id="invalid-json"),
    pytest.param(DEEP_ARRAY, "application/json", id="100000-deep-array"),
    # BentoML reads a body sent as multipart with its form parser, which fails on this one.
    pytest.param(b"{" + MARKER.encode(), "multipart/form-data", id="broken-multipart"),
]


@pytest.fixture(scope="module")
def client(bento):
    with httpx.Client(base_url=bento.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def batch_errors(client) -> dict[int, dict]:
    """The batch endpoint's error for each invalid record, by index: the reference."""
    resp = client.post("/predict/batch", json={"requests": [nested(r) for r, _ in RECORDS]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success_count"] == 0
    return {e["index"]: e for e in body["errors"]}


@pytest.mark.parametrize(
    "i", range(len(RECORDS)), ids=[f"{c.expected}={c.override}" for c in JSON_CASES]
)
def test_predict_words_each_invalid_record_as_the_batch_endpoint_does(client, batch_errors, i):
    record, expected = RECORDS[i]
    resp = client.post("/predict", json=nested(record))
    assert resp.status_code == 400, resp.text
    body = resp.json()
    item = batch_errors[i]
    first = body["detail"][0]
    assert (str(first["loc"][-1]), first["msg"], first["type"]) == (
        item["field"],
        item["error"],
        item["code"],
    )
    assert f"{item['field']}:{item['code']}" == expected
    # Every failing field (not only the first) in the contract's words, under its code.
    for d in body["detail"]:
        assert d["msg"] == describe(str(d["loc"][-1]), d["type"], AS_OF).reason, d
    n = len(body["detail"])
    assert body["error"].startswith(f"{n} invalid field{'s' if n > 1 else ''}: "), body
    assert item["error"] in body["error"]
    assert "IODescriptor" not in body["error"]
    assert "validation error" not in body["error"]


def test_the_400_names_every_failing_field_in_plain_words(client):
    features = {k: v for k, v in GOOD.items() if k != "income"} | {"age": -1}
    resp = client.post("/predict", json={"customer_id": "c-1", "features": features})
    assert resp.status_code == 400
    assert resp.json() == {
        "error": "2 invalid fields: age: must be between 0 and 120; income: is missing",
        "detail": [
            {
                "loc": ["features", "age"],
                "msg": "age: must be between 0 and 120",
                "type": "out_of_range",
            },
            {"loc": ["features", "income"], "msg": "income: is missing", "type": "missing"},
        ],
    }


def test_a_null_and_a_wrong_type_are_told_apart(client):
    # BentoML's 400 carries no inputs; the words come from the exception itself.
    for value, reason in [(None, "age: is null"), ([42], "age: must be a number")]:
        resp = client.post("/predict", json={"features": GOOD | {"age": value}})
        assert resp.status_code == 400
        assert [d["msg"] for d in resp.json()["detail"]] == [reason]


def test_a_body_that_is_not_an_object_says_so(client):
    for body, code in [(b"null", "null"), (b"[1, 2]", "wrong_type")]:
        resp = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 400
        error = describe("request", code)
        assert resp.json() == {
            "error": f"request body: {error.message}",
            "detail": [{"loc": [], "msg": error.reason, "type": code}],
        }


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(("content", "content_type"), UNREADABLE)
def test_an_unreadable_body_is_a_400_on_every_endpoint(client, path, content, content_type):
    # The DataFrame endpoint answered invalid JSON with a 500, multipart with a 500 everywhere.
    resp = client.post(path, content=content, headers={"content-type": content_type})
    assert resp.status_code == 400, resp.text
    assert resp.json() == NOT_JSON


def test_the_batch_envelope_keeps_its_detail_under_a_plain_summary(client):
    resp = client.post("/predict/batch", json={"requests": "all of them"})
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "1 invalid field: requests: Input should be a valid array"
    assert [d["loc"] for d in body["detail"]] == [["requests"]]


# --- the log and the metric, on a bento of this module's own -------------------------------


@pytest.fixture(scope="module")
def quiet_bento(tmp_path_factory, service_env) -> Process:
    proc = start_bento(tmp_path_factory.mktemp("client-errors"), service_env)
    yield proc
    proc.stop()


def client_error_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "client error on " in line]


def test_bad_requests_log_one_info_line_each_and_are_counted(quiet_bento):
    url = quiet_bento.url
    sent = {"predict": 0, "batch": 0, "dataframe": 0}
    with httpx.Client(base_url=url, timeout=30) as http:

        def bad(path: str, **kwargs) -> None:
            assert http.post(path, **kwargs).status_code == 400
            sent[ENDPOINTS[path]] += 1

        for record, _ in RECORDS:
            bad("/predict", json=nested(record) | {"comment": MARKER})  # an ignored field
        for path in ENDPOINTS:
            for content in (INVALID_JSON, DEEP_ARRAY):
                bad(path, content=content, headers={"content-type": "application/json"})
        bad("/predict/batch", json={"requests": MARKER})
    logged = sum(sent.values())
    wait_until(lambda: len(client_error_lines(quiet_bento.log)) >= logged, 30, "the log lines")

    text = quiet_bento.log.read_text()
    assert "[ERROR]" not in text
    assert "Traceback" not in text
    assert MARKER not in text
    assert "IODescriptor" not in text
    lines = client_error_lines(quiet_bento.log)
    assert len(lines) == logged
    pattern = re.compile(r"\[INFO\] .* client error on (/predict\S*) \[POST\]: 400 \S")
    assert all(pattern.search(line) for line in lines), lines
    assert any("not_json (recursion limit exceeded" in line for line in lines)
    assert any(
        "features.age: out_of_range; features.income: out_of_range" in line for line in lines
    )
    for endpoint, n in sent.items():
        assert metric(url, "churn_client_errors_total", endpoint=endpoint, status="400") == n


def test_refusals_of_the_guard_are_counted(quiet_bento):
    before = metric(quiet_bento.url, "churn_client_errors_total", endpoint="predict", status="413")
    resp = httpx.post(
        f"{quiet_bento.url}/predict",
        content=b" " * (16 * 2**20),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 413
    after = metric(quiet_bento.url, "churn_client_errors_total", endpoint="predict", status="413")
    assert after == before + 1
