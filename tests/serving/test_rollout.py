"""A candidate model beside the served one, under `bentoml serve`: shadow scoring compared and
logged, and a canary routed per customer; `/models/candidate` against figures computed here,
independently, from what was answered and logged."""

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from models.comparison import DELTA_BIN, SCORE_BINS, ComparisonState
from models.contract import FEATURES, MODEL_FILE, SCALER_FILE
from models.rollout import to_candidate
from models.samples import records
from tests.serving.conftest import customer, metric
from tests.support import ROOT, Process, start_bento, wait_until

PREDICT, BATCH, FRAME = 60, 50, 40  # customers per endpoint in one round of traffic


@dataclass(frozen=True)
class RolloutStore:
    home: str
    served: str  # logistic regression, seed 1
    same: str  # the same training again: another version, the same model
    other: str  # gradient boosting, seed 2


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> RolloutStore:
    home = str(tmp_path_factory.mktemp("bentoml-rollout"))
    runs = [
        ["--seed", "1", "--classifier", "logistic_regression"],
        ["--seed", "1", "--classifier", "logistic_regression"],
        ["--seed", "2", "--classifier", "hist_gradient_boosting"],
    ]
    code = (
        "import sys, bentoml; from models import train;"
        f"[train.main(['--rows', '2000', *a]) for a in {runs!r}];"
        "ms = sorted(bentoml.models.list(), key=lambda m: m.info.creation_time);"
        "print(*[m.tag for m in ms])"
    )
    env = {**os.environ, "BENTOML_HOME": home}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    tags = out.stdout.splitlines()[-1].split()  # after the training runs' own output
    assert len(tags) == 3
    return RolloutStore(home, *tags)


def serve(logs_dir: Path, service_env: dict[str, str], store: RolloutStore, **env: str) -> Process:
    """A bento on a home of its own (its metrics directory) sharing the store's models."""
    home = Path(tempfile.mkdtemp(prefix="churn-rollout-home-"))
    (home / "models").symlink_to(Path(store.home) / "models")
    return start_bento(logs_dir, {**service_env, "BENTOML_HOME": str(home), **env})


def model_file(store: RolloutStore, tag: str, name: str):
    name_, version = tag.split(":")
    return joblib.load(Path(store.home) / "models" / name_ / version / name)


def traffic(client: httpx.Client, prefix: str) -> dict[str, dict]:
    """One round on every endpoint; each answer by customer id."""
    answers = {}
    for i in range(PREDICT):
        body = customer(i) | {"customer_id": f"{prefix}-p-{i}"}
        r = client.post("/predict", json=body)
        assert r.status_code == 200, r.text
        answers[r.json()["customer_id"]] = r.json()
    items = [customer(1000 + i) | {"customer_id": f"{prefix}-b-{i}"} for i in range(BATCH)]
    r = client.post("/predict/batch", json={"requests": items})
    assert r.status_code == 200, r.text
    answers |= {p["customer_id"]: p for p in r.json()["predictions"]}
    rows = records(FRAME, prefix=f"{prefix}-f")
    r = client.post("/predict/dataframe", json=rows)
    assert r.status_code == 200, r.text
    answers |= {p["customer_id"]: p for p in r.json()}
    return answers


def candidate_report(client: httpx.Client, pairs: int) -> dict:
    """/models/candidate once the shadow thread has compared `pairs` customers."""
    report: dict = {}

    def done() -> bool:
        report.update(client.get("/models/candidate").json())
        return report["comparison"]["pairs"] >= pairs

    wait_until(done, 60, f"{pairs} pairs compared")
    assert report["comparison"]["pairs"] == pairs
    return report


def log_rows(directory: Path, n: int) -> list[dict]:
    rows: list[dict] = []

    def written() -> bool:
        rows[:] = [
            json.loads(line)
            for f in directory.rglob("data.*.log*")
            for line in f.read_text().splitlines()
            if line.strip()
        ]
        return len(rows) >= n

    wait_until(written, 60, f"{n} logged predictions")
    assert len(rows) == n
    return rows


@pytest.fixture(scope="module")
def identical(logs_dir, service_env, store) -> Iterator[Process]:
    env = {"CHURN_MODEL_TAG": store.served, "CHURN_CANDIDATE_TAG": store.same}
    proc = serve(logs_dir, service_env, store, CHURN_CANDIDATE_MIN_PAIRS="100", **env)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def different(logs_dir, service_env, store, tmp_path_factory) -> Iterator[tuple[Process, Path]]:
    log = tmp_path_factory.mktemp("rollout-log")
    env = {"CHURN_MODEL_TAG": store.served, "CHURN_CANDIDATE_TAG": store.other}
    proc = serve(logs_dir, service_env, store, CHURN_PREDICTION_LOG=str(log), **env)
    yield proc, log
    proc.stop()


@pytest.fixture(scope="module")
def canary(logs_dir, service_env, store, redis_url) -> Iterator[Process]:
    env = {"CHURN_MODEL_TAG": store.served, "CHURN_CANDIDATE_TAG": store.other}
    proc = serve(
        logs_dir, service_env, store, CHURN_CANARY_PERCENT="20", CHURN_REDIS_URL=redis_url, **env
    )
    yield proc
    proc.stop()


def test_an_identical_candidate_agrees_fully_and_changes_no_answer(identical, store):
    with httpx.Client(base_url=identical.url, timeout=30) as client:
        answers = traffic(client, "same")
        report = candidate_report(client, PREDICT + BATCH + FRAME)
    # Shadow mode: every answer is the served model's.
    assert {a.get("model_version", store.served) for a in answers.values()} == {store.served}
    c = report["comparison"]
    assert (c["agreement"], c["psi"], c["mean_abs_delta"], c["p95_abs_delta"]) == (1.0, 0, 0, 0)
    assert c["max_abs_delta"] == 0
    assert report["candidate_errors"] == report["dropped"] == 0
    assert (report["verdict"], report["reasons"]) == ("promote", [])
    assert (report["served"], report["candidate"], report["mode"]) == (
        store.served,
        store.same,
        "shadow",
    )
    assert metric(identical.url, "churn_candidate_pairs_total") == c["pairs"]
    assert metric(identical.url, "churn_candidate_disagreements_total") == 0


def test_a_different_candidate_gives_the_figures_computed_from_the_logged_pairs(different, store):
    proc, log = different
    n = PREDICT + BATCH + FRAME
    with httpx.Client(base_url=proc.url, timeout=30) as client:
        answers = traffic(client, "diff")
        report = candidate_report(client, n)
    rows = log_rows(log, n)
    assert {r["model_version"] for r in rows} == {store.served}
    assert {r["shadow_version"] for r in rows} == {store.other}
    # The log holds the answers themselves...
    for r in rows:
        assert r["churn_probability"] == answers[r["customer_id"]]["churn_probability"]
    # ...and beside each the candidate's own P(churn) of the logged features.
    x = np.array([[r[name] for name in FEATURES] for r in rows])
    model, scaler = (
        model_file(store, store.other, MODEL_FILE),
        model_file(store, store.other, SCALER_FILE),
    )
    expected = model.predict_proba(scaler.transform(x))[:, 1]
    served = np.array([r["churn_probability"] for r in rows])
    candidate = np.array([r["shadow_probability"] for r in rows])
    np.testing.assert_allclose(candidate, expected, rtol=0, atol=1e-12)

    c = report["comparison"]
    table = confusion_matrix(served >= 0.5, candidate >= 0.5, labels=[False, True]).tolist()
    assert [
        [c["table"]["served_0_candidate_0"], c["table"]["served_0_candidate_1"]],
        [c["table"]["served_1_candidate_0"], c["table"]["served_1_candidate_1"]],
    ] == table
    assert c["agreement"] == pytest.approx(np.mean((served >= 0.5) == (candidate >= 0.5)))
    delta = np.abs(served - candidate)
    assert c["mean_abs_delta"] == pytest.approx(delta.mean())
    assert c["max_abs_delta"] == pytest.approx(delta.max())
    p95 = np.quantile(delta, 0.95, method="inverted_cdf")
    assert p95 - 1e-12 <= c["p95_abs_delta"] <= p95 + DELTA_BIN
    edges = np.linspace(0, 1, SCORE_BINS + 1)
    s = np.maximum(np.histogram(served, edges)[0] / n, 1e-4)
    k = np.maximum(np.histogram(candidate, edges)[0] / n, 1e-4)
    assert c["psi"] == pytest.approx(float(np.sum((k - s) * np.log(k / s))))
    assert delta.max() > 0.01  # the two models do differ: the figures above are not all zeros

    # The report rebuilt offline from the log is the endpoint's, figure for figure.
    state = ComparisonState()
    state.add(served, candidate)
    rebuilt = state.result().as_dict()
    assert (rebuilt["pairs"], rebuilt["table"]) == (c["pairs"], c["table"])
    for name in ("agreement", "mean_abs_delta", "p95_abs_delta", "max_abs_delta", "psi"):
        assert rebuilt[name] == pytest.approx(c[name], rel=1e-12), name
    calls = report["calls"]
    assert 1 <= calls["candidate"] == calls["served"] <= PREDICT + 2  # one per request at most
    assert report["customers_scored"] == {"served": n, "candidate": n}
    assert report["cpu_seconds_per_call"]["candidate"] > 0
    assert report["cpu_ratio"] > 0


def test_a_canary_serves_the_candidate_to_the_customers_the_hash_picks(canary, store):
    ids = [f"canary-{i}" for i in range(300)]
    picked = dict(zip(ids, to_candidate(ids, 20).tolist(), strict=True))
    expected = {i: store.other if picked[i] else store.served for i in ids}
    bodies = [customer(i) | {"customer_id": cid} for i, cid in enumerate(ids)]
    with httpx.Client(base_url=canary.url, timeout=30) as client:
        first = {b["customer_id"]: client.post("/predict", json=b).json() for b in bodies}
        again = {b["customer_id"]: client.post("/predict", json=b).json() for b in bodies}
        batch = client.post("/predict/batch", json={"requests": bodies}).json()["predictions"]
        frame_rows = [b["features"] | {"customer_id": b["customer_id"]} for b in bodies]
        frame = client.post("/predict/dataframe", json=frame_rows).json()
        report = candidate_report(client, 4 * len(ids))
    assert {i: a["model_version"] for i, a in first.items()} == expected
    assert {i: a["model_version"] for i, a in again.items()} == expected
    assert {p["customer_id"]: p["model_version"] for p in batch} == expected
    assert {r["customer_id"]: r["model_version"] for r in frame} == expected
    # The second answers came from the cache, each from its own model's entries.
    assert all(a["cached"] for a in again.values())
    for i in ids:
        p = first[i]["churn_probability"]
        assert again[i]["churn_probability"] == p
        assert next(b for b in batch if b["customer_id"] == i)["churn_probability"] == p
    assert report["mode"] == "canary"
    assert report["candidate_errors"] == 0


def test_the_cache_never_gives_one_models_answer_for_the_other(canary, store):
    """Two customers with the same features, one routed to each model: each gets its own
    model's score, again from the cache, never the other's."""
    ids = [f"twin-{i}" for i in range(200)]
    picked = to_candidate(ids, 20)
    pair = [ids[int(np.flatnonzero(~picked)[0])], ids[int(np.flatnonzero(picked)[0])]]
    with httpx.Client(base_url=canary.url, timeout=30) as client:
        answers = [
            [
                client.post("/predict", json=customer(77) | {"customer_id": cid}).json()
                for cid in pair
            ]
            for _ in range(2)
        ]
    (served_1, candidate_1), (served_2, candidate_2) = answers
    assert (served_1["model_version"], candidate_1["model_version"]) == (store.served, store.other)
    assert served_1["churn_probability"] != candidate_1["churn_probability"]
    assert served_2["churn_probability"] == served_1["churn_probability"]
    assert candidate_2["churn_probability"] == candidate_1["churn_probability"]
    assert served_2["cached"]
    assert candidate_2["cached"]


@pytest.fixture(scope="module")
def promoted(logs_dir, service_env, store) -> Iterator[Process]:
    """The promotion: the candidate as CHURN_MODEL_TAG, no CHURN_CANDIDATE_TAG."""
    proc = serve(logs_dir, service_env, store, CHURN_MODEL_TAG=store.other)
    yield proc
    proc.stop()


def versions_and_health(url: str) -> tuple[str, str, list[str], str]:
    versions = httpx.get(f"{url}/models/versions", timeout=30).json()
    health = httpx.get(f"{url}/health", timeout=30).json()
    marked = [v["tag"] for v in versions["versions"] if v["served"]]
    return versions["served"], versions["current"], marked, health["model_version"]


def test_promotion_is_one_setting_and_shows_in_health_and_versions(different, promoted, store):
    proc, _ = different
    # With a candidate beside it, the served model is still the one named everywhere.
    assert versions_and_health(proc.url) == (
        store.served,
        store.served,
        [store.served],
        store.served,
    )
    assert versions_and_health(promoted.url) == (
        store.other,
        store.other,
        [store.other],
        store.other,
    )
    r = httpx.post(f"{promoted.url}/predict", json=customer(5), timeout=30)
    assert r.json()["model_version"] == store.other
    missing = httpx.get(f"{promoted.url}/models/candidate", timeout=30)
    assert (missing.status_code, missing.json()) == (404, {"error": "no candidate configured"})


def test_bentoml_build_pins_the_candidate_with_the_served_model(store):
    """The models BentoML packs into a bento are the service's `models` (both tags set)."""
    code = "import service; print(*sorted(str(m.tag) for m in service.ChurnService.models))"
    env = {
        **os.environ,
        "BENTOML_HOME": store.home,
        "CHURN_MODEL_TAG": store.served,
        "CHURN_CANDIDATE_TAG": store.other,
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    assert out.stdout.split() == sorted([store.served, store.other])
