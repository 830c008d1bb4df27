"""The input policy over real HTTP, the ignored-fields metric, and the new /health and
/models/versions fields.

Loose-but-valid records (extra fields, an integer id, `days_since_purchase` for the date, no
id) must score to exactly the bits of their canonical twin: the expectation is computed here
from the `predictor` fixture on a matrix built from the canonical record.
"""

import json
import socket
from datetime import UTC, date, datetime, timedelta

import bentoml
import httpx
import numpy as np
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from models.contract import FEATURES
from models.policy import MAX_IGNORED_LABELS
from models.samples import request
from serving.cache import KEY_PREFIX
from tests.conftest import AS_OF
from tests.serving.conftest import customer, metric
from tests.support import start_bento, wait_until

SCORE_FIELDS = ("prediction", "churn_probability", "probability", "confidence_level")
IGNORED = "churn_ignored_fields_total"


def canonical(i: int, days: int = 45, age: float = 42.0) -> dict:
    """A canonical request: text id, nested features, a purchase date `days` before AS_OF."""
    return request(
        customer_id=f"p-{i}",
        age=age,
        income=41_000.0 + 17 * i,
        purchase_history=3 + i % 9,
        last_purchase_date=(AS_OF - timedelta(days=days)).isoformat(),
    )


def expected(predictor, *records: dict) -> list[float]:
    """P(churn) of canonical records, from the predictor itself (as a one-row call for one)."""
    rows = []
    for record in records:
        f = record["features"]
        days = (AS_OF - date.fromisoformat(f["last_purchase_date"])).days
        rows.append([f["age"], f["income"], f["purchase_history"], days])
    matrix = np.array(rows, dtype=np.float64)
    assert matrix.shape[1] == len(FEATURES)
    return [float(p) for p in predictor.churn_probability(matrix)]


def scores(body: dict) -> dict:
    return {k: body[k] for k in SCORE_FIELDS}


def flat(record: dict) -> dict:
    return {"customer_id": record["customer_id"], **record["features"]}


@pytest.fixture(scope="module")
def client(bento):
    with httpx.Client(base_url=bento.url, timeout=30) as c:
        yield c


def test_extra_fields_at_the_top_and_in_features_change_nothing(client, predictor):
    base = canonical(1)
    loose = {
        **base,
        "channel": "web",
        "context": {"session": "s-9", "tags": ["a", "b"]},
        "features": {**base["features"], "segment": "gold", "tenure_months": 31},
    }
    twin = client.post("/predict", json=base)
    resp = client.post("/predict", json=loose)
    assert (twin.status_code, resp.status_code) == (200, 200), resp.text
    (p,) = expected(predictor, base)
    assert resp.json()["churn_probability"] == p
    assert scores(resp.json()) == scores(twin.json())
    assert resp.json()["customer_id"] == "p-1"


def test_batch_items_with_extra_fields_score_like_their_twins(client, predictor):
    items = [canonical(i) for i in range(2, 6)]
    loose = [
        {**items[0], "channel": "app"},
        {**items[1], "features": {**items[1]["features"], "segment": "silver"}},
        {**items[2], "priority": "urgent", "request_id": ""},  # unusable metadata: ignored
        items[3],
    ]
    body = client.post("/predict/batch", json={"requests": loose, "batch_id": "extras"}).json()
    assert (body["success_count"], body["error_count"]) == (4, 0), body["errors"]
    assert [p["churn_probability"] for p in body["predictions"]] == expected(predictor, *items)
    assert [p["customer_id"] for p in body["predictions"]] == [r["customer_id"] for r in items]


def test_an_integer_customer_id_is_its_decimal_text(client, predictor):
    base = {**canonical(7), "customer_id": "987654321"}
    integer = {**base, "customer_id": 987654321}
    text, number = client.post("/predict", json=base), client.post("/predict", json=integer)
    assert number.status_code == 200, number.text
    assert number.json()["customer_id"] == "987654321"
    (p,) = expected(predictor, base)
    assert number.json()["churn_probability"] == p == text.json()["churn_probability"]
    assert scores(number.json()) == scores(text.json())

    batch = client.post("/predict/batch", json={"requests": [integer, base]}).json()
    assert [x["customer_id"] for x in batch["predictions"]] == ["987654321"] * 2
    out = client.post("/predict/dataframe", json=[flat(integer), flat(base)]).json()
    assert [r["customer_id"] for r in out] == ["987654321"] * 2
    assert [r["error"] for r in out] == [None, None]
    assert out[0]["churn_probability"] == out[1]["churn_probability"]
    assert (
        batch["predictions"][0]["churn_probability"] == batch["predictions"][1]["churn_probability"]
    )


@pytest.fixture
def db(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_an_integer_id_and_its_text_twin_share_the_cache_entry(authed, db, predictor):
    base = {**canonical(8, days=77, age=51.5), "customer_id": "31337"}
    base["features"]["income"] = 64_321.25  # features no other test sends: a fresh cache key
    before = set(db.scan_iter(f"{KEY_PREFIX}*"))
    first = authed.post("/predict", json={**base, "customer_id": 31337})
    assert first.status_code == 200, first.text
    (new_key,) = set(db.scan_iter(f"{KEY_PREFIX}*")) - before
    second = authed.post("/predict", json=base).json()
    assert (first.json()["cached"], second["cached"]) == (False, True)
    assert set(db.scan_iter(f"{KEY_PREFIX}*")) - before == {new_key}
    assert first.json()["customer_id"] == second["customer_id"] == "31337"
    (p,) = expected(predictor, base)
    assert first.json()["churn_probability"] == second["churn_probability"] == p


def test_days_since_purchase_stands_in_for_the_date(client, predictor):
    base = canonical(9, days=123)
    days_only = {**base, "features": {**base["features"], "days_since_purchase": 123}}
    del days_only["features"]["last_purchase_date"]
    null_date = {
        **base,
        "features": {**days_only["features"], "last_purchase_date": None},
    }
    both = {**base, "features": {**base["features"], "days_since_purchase": 5}}  # the date wins
    (p,) = expected(predictor, base)
    for body in (days_only, null_date, both):
        resp = client.post("/predict", json=body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["churn_probability"] == p
    batch = client.post("/predict/batch", json={"requests": [days_only, both]}).json()
    assert [x["churn_probability"] for x in batch["predictions"]] == [p, p]


def test_an_absent_customer_id_is_answered_without_one(client, predictor):
    base = canonical(10)
    anonymous = {"features": base["features"]}
    resp = client.post("/predict", json=anonymous)
    assert resp.status_code == 200, resp.text
    assert resp.json()["customer_id"] is None
    (p,) = expected(predictor, base)
    assert resp.json()["churn_probability"] == p
    batch = client.post("/predict/batch", json={"requests": [anonymous, base]}).json()
    assert [x["customer_id"] for x in batch["predictions"]] == [None, "p-10"]


def test_a_typo_in_a_required_field_is_still_a_400_naming_it(client):
    base = canonical(11)
    features = {k: v for k, v in base["features"].items() if k != "income"}
    typo = {**base, "features": {**features, "incme": 55_000}}
    resp = client.post("/predict", json=typo)
    assert resp.status_code == 400, resp.text
    assert ["features", "income"] in [d["loc"] for d in resp.json()["detail"]]
    body = client.post("/predict/batch", json={"requests": [typo]}).json()
    (error,) = body["errors"]
    assert (error["field"], error["error"]) == ("income", "income: is missing")


def test_the_legacy_frame_without_id_or_date_is_scored(client, predictor):
    twins = [canonical(20 + i, days=d) for i, d in enumerate([0, 3, 45, 200, 731])]
    legacy = [
        {
            "age": t["features"]["age"],
            "income": t["features"]["income"],
            "purchase_history": t["features"]["purchase_history"],
            "days_since_purchase": d,
        }
        for t, d in zip(twins, [0, 3, 45, 200, 731], strict=True)
    ]
    resp = client.post("/predict/dataframe", json=legacy)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert [r["error"] for r in out] == [None] * len(legacy)
    assert [r["customer_id"] for r in out] == [None] * len(legacy)
    assert [r["churn_probability"] for r in out] == expected(predictor, *twins)
    singles = [client.post("/predict", json=t).json() for t in twins]
    assert [scores(r) for r in out] == [scores(s) for s in singles]


def test_versions_name_the_current_model(client, model_tag):
    body = client.get("/models/versions").json()
    assert body["current"] == model_tag
    assert body["served"] == model_tag  # the existing field is kept


def test_health_reports_the_new_fields(client, model_tag):
    stored = bentoml.models.get(model_tag).info.creation_time
    sent = datetime.now(UTC)
    body = client.get("/health").json()
    assert {"status", "model_loaded", "model_version", "uptime_seconds", "cache"} <= set(body)
    assert datetime.fromisoformat(body["last_updated"]) == stored
    assert isinstance(body["active_connections"], int)
    assert body["active_connections"] >= 1  # this request is in flight while it is answered
    assert body["redis_connected"] is None  # no cache on this bento
    now = datetime.fromisoformat(body["timestamp"])
    assert now.utcoffset() == timedelta(0)
    assert sent - timedelta(seconds=5) <= now <= datetime.now(UTC) + timedelta(seconds=5)


def test_health_with_the_cache_says_redis_is_connected(production):
    body = httpx.get(f"{production.url}/health", timeout=10).json()
    assert body["redis_connected"] is True
    assert body["cache"] == "ok"
    assert body["active_connections"] >= 1


# A server of its own: the metric's labels are bounded per process (the first
# MAX_IGNORED_LABELS names), and other tests of the session send names of their own.
@pytest.fixture(scope="module")
def fresh(logs_dir, service_env):
    proc = start_bento(logs_dir, service_env)
    yield proc
    proc.stop()


def ignored(url: str, path: str, field: str) -> float:
    return metric(url, IGNORED, path=path, field=field)


def test_ignored_fields_are_counted_by_path_and_field(fresh):
    url = fresh.url
    names = [
        ("predict", "channel"),
        ("predict", "features.segment"),
        ("batch", "channel"),
        ("batch", "features.segment"),
        ("batch", "priority"),
        ("dataframe", "segment"),
        ("dataframe", "store_id"),
        ("dataframe", "explain"),
    ]
    before = {n: ignored(url, *n) for n in names}
    item = customer(1)
    with_extras = {
        **item,
        "channel": "web",
        "features": {**item["features"], "segment": "gold"},
    }
    assert httpx.post(f"{url}/predict", json=with_extras, timeout=30).status_code == 200
    assert httpx.post(f"{url}/predict", json=item, timeout=30).status_code == 200  # nothing
    rejected = {**with_extras, "features": {**with_extras["features"], "age": -1}}
    items = [with_extras, rejected, {**item, "priority": "urgent"}, "not an object"]
    batch = httpx.post(f"{url}/predict/batch", json={"requests": items}, timeout=30).json()
    assert (batch["success_count"], batch["error_count"]) == (2, 2)
    rows = [{**flat(customer(i)), "segment": "gold", "store_id": i} for i in range(5)]
    rows[0]["explain"] = True  # read by this endpoint: not ignored
    assert httpx.post(f"{url}/predict/dataframe", json=rows, timeout=30).status_code == 200
    after = {n: ignored(url, *n) for n in names}
    assert {n: after[n] - before[n] for n in names} == {
        ("predict", "channel"): 1,
        ("predict", "features.segment"): 1,
        ("batch", "channel"): 2,  # the valid item and the rejected one
        ("batch", "features.segment"): 2,
        ("batch", "priority"): 1,  # unusable metadata is ignored too
        ("dataframe", "segment"): 1,  # once per request, not once per row
        ("dataframe", "store_id"): 1,
        ("dataframe", "explain"): 0,
    }


def test_the_metric_labels_are_bounded(fresh):
    url = fresh.url
    item = customer(2)
    invented = {f"field_{i:03d}": i for i in range(MAX_IGNORED_LABELS + 10)}
    before_other = ignored(url, "predict", "other")
    assert httpx.post(f"{url}/predict", json={**item, **invented}, timeout=30).status_code == 200
    text = httpx.get(f"{url}/metrics", timeout=10).text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name + "_total" == IGNORED]
    labels = {s.labels["field"] for s in family.samples if s.name == IGNORED}
    assert len(labels - {"other"}) <= MAX_IGNORED_LABELS
    assert ignored(url, "predict", "other") > before_other


def held_request(port: int) -> socket.socket:
    """A POST /predict whose body the server is waiting for: sent with `Expect: 100-continue`,
    it is inside the service (counted) once the server answers `100 Continue`, which it does
    when the handler first reads the body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1024)
        assert chunk, "connection closed before 100 Continue"
        head += chunk
    assert head.startswith(b"HTTP/1.1 100"), head
    return sock


def finish(sock: socket.socket, body: dict) -> tuple[int, dict]:
    """Send the held request's body; its status and JSON answer."""
    data = json.dumps(body).encode()
    with sock, sock.makefile("rb") as answer:
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        status = int(answer.readline().split()[1])
        headers = {}
        while (line := answer.readline().strip()) != b"":
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return status, json.loads(answer.read(int(headers[b"content-length"])))


def test_active_connections_count_requests_in_flight(fresh):
    url = fresh.url

    def active() -> int:
        return httpx.get(f"{url}/health", timeout=10).json()["active_connections"]

    idle = active()
    assert idle >= 1
    held = [held_request(fresh.port) for _ in range(2)]
    assert active() == idle + 2
    answers = [finish(sock, customer(3)) for sock in held]
    assert [status for status, _ in answers] == [200, 200], answers
    assert [body["customer_id"] for _, body in answers] == ["c-3", "c-3"]
    # Each handler leaves the count when its response is sent; the count comes back down.
    wait_until(lambda: active() == idle, 10, "active_connections back to idle")
