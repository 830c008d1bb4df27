"""Bearer tokens, CORS, the body limit and error bodies, over real HTTP."""

import json
import re

import httpx
import pytest

from tests.serving.conftest import MAX_BODY_BYTES, ORIGIN, TOKENS, customer

FLAT = [{"customer_id": "c-1", **customer(1)["features"]}]
PROTECTED = [
    ("POST", "/predict", customer(1)),
    ("POST", "/predict/batch", {"requests": [customer(1)]}),
    ("POST", "/predict/dataframe", FLAT),
    ("GET", "/models/versions", None),
]
OPEN = ["/healthz", "/livez", "/readyz", "/metrics", "/health", "/docs.json"]


def call(url: str, method: str, path: str, body, headers: dict[str, str]) -> httpx.Response:
    return httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_protected_endpoints_need_a_bearer_token(production, method, path, body):
    missing = call(production.url, method, path, body, {})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {"error": "missing bearer token"}
    for header in (f"Basic {TOKENS[0]}", "Bearer", TOKENS[0]):
        resp = call(production.url, method, path, body, {"Authorization": header})
        assert resp.status_code == 401
    wrong = call(production.url, method, path, body, {"Authorization": "Bearer t-on"})
    assert wrong.status_code == 403
    assert wrong.json() == {"error": "invalid token"}
    for token in TOKENS:
        ok = call(production.url, method, path, body, {"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("path", OPEN)
def test_probes_metrics_and_docs_stay_open(production, path):
    assert httpx.get(f"{production.url}{path}", timeout=10).status_code == 200


def test_without_tokens_the_service_warns_and_answers(bento):
    assert "API_TOKENS is not set" in bento.log.read_text()
    assert call(bento.url, "POST", "/predict", customer(1), {}).status_code == 200


def test_cors_preflight_from_the_allowed_origin(production):
    resp = httpx.options(
        f"{production.url}/predict",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=10,
    )
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in resp.headers["access-control-allow-headers"].lower()


def test_cors_refuses_other_origins(production, authed):
    preflight = httpx.options(
        f"{production.url}/predict",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    resp = authed.post("/predict", json=customer(1), headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in resp.headers


def test_cors_is_closed_by_default(bento):
    resp = httpx.post(
        f"{bento.url}/predict", json=customer(1), headers={"Origin": ORIGIN}, timeout=10
    )
    assert resp.status_code == 200
    assert "access-control-allow-origin" not in resp.headers


def big_batch() -> bytes:
    body = json.dumps({"requests": [customer(i) for i in range(1000)]}).encode()
    assert len(body) > MAX_BODY_BYTES
    return body


def test_oversized_bodies_are_413_before_parsing(authed):
    resp = authed.post(
        "/predict/batch", content=big_batch(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413
    assert resp.json() == {"error": f"request body larger than {MAX_BODY_BYTES} bytes"}


def chunks(body: bytes, size: int = 16_384):
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_oversized_chunked_bodies_are_413_too(authed):
    resp = authed.post(
        "/predict/batch", content=chunks(big_batch()), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413


def test_chunked_bodies_within_the_limit_are_served(authed):
    body = json.dumps({"requests": [customer(i) for i in range(50)]}).encode()
    resp = authed.post(
        "/predict/batch", content=chunks(body, 1024), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["success_count"] == 50


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"{not json", "application/json"), (b"\x00\xff", "application/json"), (b"x", "text/csv")],
)
def test_error_bodies_carry_no_internals(authed, content, content_type):
    resp = authed.post("/predict", content=content, headers={"content-type": content_type})
    assert 400 <= resp.status_code < 500
    for leak in ("Traceback", 'File "', "site-packages"):
        assert leak not in resp.text
    assert not re.search(r"\.py\b", resp.text)
