"""Probes, GET /health and GET /models/versions (with a roll-back to an older version)."""

import httpx
import pytest


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
def test_bentoml_probes_answer(bento, path):
    assert httpx.get(f"{bento.url}{path}", timeout=10).status_code == 200


def test_health_without_a_cache(bento, model_tag):
    body = httpx.get(f"{bento.url}/health", timeout=10).json()
    assert body["status"] == "healthy"
    assert body["model_loaded"] is True
    assert body["model_version"] == model_tag
    assert body["cache"] == "disabled"
    assert body["uptime_seconds"] > 0


def test_versions_list_the_store_and_the_served_one(bento, model_tag):
    body = httpx.get(f"{bento.url}/models/versions", timeout=10).json()
    assert body["served"] == model_tag
    served = [v for v in body["versions"] if v["served"]]
    assert [v["tag"] for v in served] == [model_tag]
    assert {"roc_auc", "log_loss", "brier_score"} <= set(served[0]["metrics"])
    assert served[0]["created_at"]


def test_roll_back_serves_the_older_version(rolled_back, two_versions):
    old, new = two_versions.tags
    body = httpx.get(f"{rolled_back.url}/models/versions", timeout=10).json()
    assert body["served"] == old
    assert [(v["tag"], v["served"]) for v in body["versions"]] == [(new, False), (old, True)]
    assert all(v["metrics"]["roc_auc"] > 0.5 for v in body["versions"])
    health = httpx.get(f"{rolled_back.url}/health", timeout=10).json()
    assert health["model_version"] == old
