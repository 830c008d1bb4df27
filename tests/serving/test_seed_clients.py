"""The clients of the two services this one replaces, replayed against a served bento
(docs/migration.md): the FastAPI service's bodies, the old BentoService's routes, and the
migration table checked against every route and metric the service serves; and, without a
server, the edge (`serving.middleware.Guard`) in front of the aliases and the retired route.

The seed's code was not found; its bodies are the ones issues 2, 10 and 22 describe: the
FastAPI `PredictionRequest` (`features` a free dict, so extra keys), its batch envelope, the
BentoService's bare list and its legacy frame (`days_since_purchase`, no `customer_id`).
"""

import json
import re
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import given, settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from serving.seed import ALIASES
from tests.support import ROOT

MIGRATION = ROOT / "docs" / "migration.md"
# What the FastAPI service's `PredictionResponse` carried (issue 2), which its clients read.
SEED_RESPONSE_FIELDS = {
    "customer_id",
    "prediction",
    "churn_probability",
    "probability",
    "confidence_level",
    "model_version",
    "request_id",
    "processing_time",
    "timestamp",
    "features_used",
}
# Fields that differ between two answers for the same customer (time, ids, the batch's own).
PER_ANSWER = {"request_id", "processing_time", "timestamp"}


def seed_request(i: int, **features: object) -> dict:
    """A FastAPI client's `/predict` body: `features` is a `Dict[str, Any]` there, so clients
    sent what they had (here a `segment` the model does not read)."""
    return {
        "customer_id": f"seed-{i}",
        "features": {
            "age": 25 + 7 * i,
            "income": 20_000 + 9_000 * i,
            "purchase_history": i,
            "last_purchase_date": f"2026-0{1 + i % 5}-1{i % 10}",
            "segment": "gold",
            **features,
        },
        "request_id": f"seed-request-{i}",
        "priority": ("low", "normal", "high")[i % 3],
    }


SEED_REQUESTS = [seed_request(i) for i in range(6)]


def post(client: httpx.Client, path: str, body: object) -> httpx.Response:
    response = client.post(path, json=body)
    assert response.status_code == 200, (path, response.text)
    return response


@pytest.fixture
def client(bento):
    with httpx.Client(base_url=bento.url, timeout=30) as c:
        yield c


@pytest.fixture
def batch_answers(client) -> dict[str, dict]:
    """`/predict/batch`'s answer per customer for the seed's customers: the reference."""
    body = post(client, "/predict/batch", {"requests": SEED_REQUESTS}).json()
    assert body["error_count"] == 0
    return {p["customer_id"]: p for p in body["predictions"]}


def test_fastapi_predict_bodies_get_the_seed_fields_and_the_batch_bits(
    client, batch_answers, model_tag
):
    for request in SEED_REQUESTS:
        answer = post(client, "/predict", request).json()
        assert set(answer) >= SEED_RESPONSE_FIELDS
        assert answer["request_id"] == request["request_id"]
        assert answer["model_version"] == model_tag
        assert answer["features_used"] == [
            "age",
            "income",
            "purchase_history",
            "days_since_purchase",
        ]
        expected = batch_answers[request["customer_id"]]
        for field in ("prediction", "churn_probability", "probability", "confidence_level"):
            # JSON floats read back to the same double only when the bits are the same.
            assert answer[field] == expected[field], field


def test_batch_predict_takes_the_bare_list_and_answers_as_predict_batch(client):
    # A BentoService client posted its customers as a bare list, flat or nested, bad ones too.
    flat = {"customer_id": "seed-flat", **SEED_REQUESTS[1]["features"]}
    bad = seed_request(9, age=-3)
    customers = [*SEED_REQUESTS[:3], flat, bad]
    alias = post(client, "/batch_predict", customers).json()
    ours = post(client, "/predict/batch", {"requests": customers}).json()

    def comparable(body: dict) -> dict:
        predictions = [
            {k: v for k, v in p.items() if k not in PER_ANSWER} for p in body["predictions"]
        ]
        counts = {k: body[k] for k in ("total_processed", "success_count", "error_count")}
        return {"predictions": predictions, "errors": body["errors"], **counts}

    assert comparable(alias) == comparable(ours)
    assert [e["customer_id"] for e in alias["errors"]] == ["seed-9"]
    assert {p["customer_id"] for p in alias["predictions"]} == {
        "seed-0",
        "seed-1",
        "seed-2",
        "seed-flat",
    }


LEGACY_FRAME = [  # the BentoService's `predict_dataframe` columns: recency in days, no id
    {"age": 42, "income": 55_000.0, "purchase_history": 12, "days_since_purchase": 30},
    {"age": 29, "income": 31_000.0, "purchase_history": 2, "days_since_purchase": 140},
    {"age": 61, "income": 88_000.0, "purchase_history": 0, "days_since_purchase": 400},
]


def layouts(records: list[dict]) -> dict[str, object]:
    """The frame as a BentoML 0.x client sent it: records, or `DataFrame.to_json()`'s default
    (columns) and `orient="split"` layouts, written out here rather than by pandas."""
    names = list(records[0])
    return {
        "records": records,
        "columns": {n: {str(i): r[n] for i, r in enumerate(records)} for n in names},
        "split": {
            "columns": names,
            "index": list(range(len(records))),
            "data": [[r[n] for n in names] for r in records],
        },
    }


@pytest.mark.parametrize("layout", ["records", "columns", "split"])
def test_predict_dataframe_answers_as_predict_dataframe_with_the_batch_bits(client, layout):
    alias = post(client, "/predict_dataframe", layouts(LEGACY_FRAME)[layout]).json()
    ours = post(client, "/predict/dataframe", LEGACY_FRAME).json()
    assert alias == ours
    assert [row["error"] for row in alias] == [None] * len(LEGACY_FRAME)
    requests = [{"customer_id": f"row-{i}", "features": r} for i, r in enumerate(LEGACY_FRAME)]
    batch = post(client, "/predict/batch", {"requests": requests}).json()["predictions"]
    assert [row["churn_probability"] for row in alias] == [p["churn_probability"] for p in batch]


def test_the_retired_health_check_names_its_successor(client):
    response = client.post("/health_check", json={})
    assert response.status_code == 404
    assert response.json() == {
        "error": "/health_check is not served here: use GET /readyz",
        "use": "GET /readyz",
    }
    assert client.get("/readyz").status_code == 200


def test_health_and_versions_have_what_a_seed_client_reads(client, model_tag):
    health = client.get("/health").json()
    assert health["status"] == "healthy"
    assert health["model_loaded"] is True
    assert health["model_version"] == model_tag
    assert health["redis_connected"] is None  # this bento runs without a cache
    assert health["active_connections"] >= 1
    for field in ("last_updated", "timestamp"):
        assert datetime.fromisoformat(health[field]).tzinfo is not None
    versions = client.get("/models/versions").json()
    assert versions["current"] == model_tag
    assert model_tag in [v["tag"] for v in versions["versions"]]


def documented_routes(text: str) -> set[str]:
    """Every route named in the migration table's `ours` column: `` `GET /health` `` etc."""
    rows = [line.split("|") for line in text.splitlines() if line.startswith("|")]
    names = {m for row in rows if len(row) > 2 for m in re.findall(r"`([^`]+)`", row[2])}
    return {_normal(name.split()[-1]) for name in names if name.split()[-1].startswith("/")}


def _normal(path: str) -> str:
    """`/v2/models/{model_name}` and `/v2/models/{m}` alike."""
    return re.sub(r"\{[^}]*\}", "{}", path)


BENTOML_ROUTES = ["/", "/docs.json", "/schema.json", "/healthz", "/livez", "/readyz", "/metrics"]


def test_the_migration_table_covers_every_served_route(client):
    import service

    served = set(client.get("/docs.json").json()["paths"])
    served |= {api.route for api in service.ChurnService.apis.values()}
    # BentoML's own routes, which its document leaves out: those that answer here.
    served |= {path for path in BENTOML_ROUTES if client.get(path).status_code != 404}
    assert {
        "/predict/batch",
        "/batch_predict",
        "/health",
        "/health_check",
        "/schema.json",
    } <= served
    missing = {_normal(p) for p in served} - documented_routes(MIGRATION.read_text())
    assert not missing, f"routes without a row in {Path(MIGRATION).name}: {sorted(missing)}"


@pytest.mark.parametrize("path", sorted(ALIASES))
def test_no_body_makes_an_alias_fail_with_a_5xx(bento, path):
    # The aliases take any JSON (the layouts above are read by hand): schemathesis' bodies for
    # them, as tests/reliability/test_fuzz.py drives ours.
    schema = schemathesis.openapi.from_url(f"{bento.url}/docs.json")
    (operation,) = [r.ok() for r in schema.get_all_operations() if r.ok().path == path]

    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(case=operation.as_strategy())
    def check(case):
        response = case.call(base_url=bento.url, timeout=30)
        assert response.status_code < 500, f"{case.path}: {response.text[:500]}"

    check()


def metric_rows(text: str) -> list[tuple[str, str]]:
    """The (seed, ours) cells of the Metrics table."""
    section = text.split("## Metrics", 1)[1]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| ")]
    return [(row[1], row[2]) for row in rows[1:] if len(row) > 3]


def metric_names(cell: str) -> set[str]:
    """`churn_cache_lookups_total{result="hit"}` as the family name `churn_cache_lookups`."""
    names = {re.split(r"[{ ]", token)[0] for token in re.findall(r"`([^`]+)`", cell)}
    return {name.removesuffix("_total") for name in names if re.fullmatch(r"[a-z_]+", name)}


def test_each_seed_metric_maps_to_one_we_export_and_none_is_exported_twice(client):
    import service  # noqa: F401  (defines the service's own metrics in this process)

    post(client, "/predict/batch", {"requests": SEED_REQUESTS[:2]})
    served = {f.name for f in text_string_to_metric_families(client.get("/metrics").text)}
    defined = {f.name for f in REGISTRY.collect()}
    rows = metric_rows(MIGRATION.read_text())
    assert len(rows) >= 10
    for seed_cell, ours_cell in rows:
        # BentoML names the batched design's metrics only in that design.
        ours = metric_names(ours_cell) - {"bentoml_service_adaptive_batch_size"}
        assert ours, seed_cell
        assert ours <= served | defined, (seed_cell, ours - served - defined)
        assert not metric_names(seed_cell) & served, f"{seed_cell} is exported under both names"


@pytest.mark.parametrize("path", ["/predict/dataframe", "/predict_dataframe"])
def test_a_frame_with_an_item_that_is_no_record_is_a_400(client, path):
    # Found by the fuzzing above: pandas raised on this mix, a 500 on both routes.
    response = client.post(path, json=[{"age": 1}, 5])
    assert response.status_code == 400
    assert response.json()["detail"] == [
        {"loc": [], "msg": "request: must be a JSON array of records", "type": "wrong_type"}
    ]


@pytest.mark.parametrize(
    ("alias", "endpoint"), [("/batch_predict", "batch"), ("/predict_dataframe", "dataframe")]
)
def test_with_tokens_an_alias_is_guarded_and_counted_as_the_route_it_aliases(alias, endpoint):
    from tests.serving.test_auth_guard import AUTH, call, chunks, refused

    before = refused(401, endpoint), refused(400, endpoint)
    exchange, inner = call(alias)
    assert (exchange.status, inner.calls) == (401, 0)
    # The edge reads an alias' body as it reads ours: not JSON is the contract's 400.
    exchange, inner = call(alias, AUTH, chunks(b"{not json"))
    assert (exchange.status, inner.calls) == (400, 0)
    assert json.loads(exchange.body)["detail"][0]["type"] == "not_json"
    assert (refused(401, endpoint), refused(400, endpoint)) == (before[0] + 1, before[1] + 1)


def test_the_retired_route_answers_without_a_token():
    from tests.serving.test_auth_guard import call

    exchange, inner = call("/health_check")
    assert (exchange.status, inner.calls) == (200, 1)  # the inner app's answer: not refused


# What the seed's clients sent and read besides the prediction fields (issues 2, 10).
SEED_FIELDS = {
    "features",
    "priority",
    "batch_id",
    "predictions",
    "errors",
    "total_processed",
    "success_count",
    "error_count",
    "status",
    "model_loaded",
    "last_updated",
    "active_connections",
    "redis_connected",
    "current",
}


def test_the_migration_table_has_a_row_for_every_seed_field():
    section = MIGRATION.read_text().split("## Fields", 1)[1].split("\n## ", 1)[0]
    seed_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| ")]
    named = {token.split()[-1] for cell in seed_cells for token in re.findall(r"`([^`]+)`", cell)}
    assert not (SEED_RESPONSE_FIELDS | SEED_FIELDS) - named


def test_the_document_marks_the_seed_routes_deprecated(client):
    paths = client.get("/docs.json").json()["paths"]
    for path in [*ALIASES, "/health_check"]:
        operation = paths[path]["post"]
        assert operation["deprecated"] is True, path
        assert operation["tags"] == ["Seed compatibility"], path
    assert not any(op.get("deprecated") for op in paths["/predict/batch"].values())
