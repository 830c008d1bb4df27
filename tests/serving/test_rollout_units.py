"""The rollout's pure parts and its shadow runner in-process, with fake models: canary routing
by a stable hash, and a candidate that raises or blocks never reaching an answer."""

import hashlib
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime

import numpy as np
import pytest

from models.features import matrix_from_records
from models.prediction import Predictions
from models.predictor import scores_from_probability
from models.rollout import position, sampled, to_candidate
from models.schema import PredictRequest
from monitoring.records import Served, dated
from serving.shadow import ShadowRunner
from tests.conftest import AS_OF
from tests.support import ROOT

SERVED, CANDIDATE = "churn_model:served", "churn_model:candidate"
IDS = [f"customer-{i}" for i in range(10_000)]


def served_record(i: int, n: int = 1) -> Served:
    requests = [
        PredictRequest.model_validate(
            {
                "customer_id": f"u-{i}-{k}",
                "features": {
                    "age": 20 + (i + k) % 60,
                    "income": 1000.0 * (1 + i + k),
                    "purchase_history": (i + k) % 9,
                    "last_purchase_date": "2026-06-01",
                },
            }
        )
        for k in range(n)
    ]
    matrix = matrix_from_records([r.features for r in requests], AS_OF)
    scores = scores_from_probability(served_model(matrix))
    ids = [r.customer_id for r in requests]
    predictions = Predictions(ids, matrix, scores, SERVED, AS_OF)
    now = datetime.now(UTC)
    return Served("batch", predictions, [f"r-{i}-{k}" for k in range(n)], dated(requests), now)


def served_model(matrix: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(matrix[:, 0] - 50) / 10))


class Log:
    """Collects hand-overs; `arrived` is set at each one."""

    def __init__(self) -> None:
        self.records: list[Served] = []
        self.arrived = threading.Event()

    def hand_over(self, served: Served) -> None:
        self.records.append(served)
        self.arrived.set()


def runner(candidate, log: Log, max_queued: int = 100) -> ShadowRunner:
    return ShadowRunner((SERVED, served_model), (CANDIDATE, candidate), log, max_queued, 0.5)


def test_a_canary_of_20_percent_sends_18_to_22_percent_of_10000_customers():
    picked = to_candidate(IDS, 20)
    assert 0.18 <= picked.mean() <= 0.22
    # The documented rule, computed here on its own: BLAKE2b-64 of the id below 20% of 2^64.
    expected = [
        int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "big") < 0.2 * 2**64
        for i in IDS
    ]
    assert picked.tolist() == expected
    # A larger canary keeps every customer the smaller one had (growing it moves no one back).
    assert not (picked & ~to_candidate(IDS, 50)).any()
    assert not to_candidate(IDS, 0).any()
    assert to_candidate(IDS, 100).all()


def test_routing_is_the_same_in_another_process_with_another_hash_seed():
    code = (
        "import sys; from models.rollout import to_candidate;"
        "ids = [f'customer-{i}' for i in range(10_000)];"
        "sys.stdout.write(''.join('1' if p else '0' for p in to_candidate(ids, 20)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout == "".join("1" if p else "0" for p in to_candidate(IDS, 20))


def test_sampling_by_share():
    assert sampled(1.0, 0.999)
    assert not sampled(0.0, 0.0)
    assert sampled(0.3, 0.29)
    assert not sampled(0.3, 0.3)
    assert 0 <= position("x") < 1


def test_an_identical_candidate_is_compared_and_logged_beside_the_answer():
    log = Log()
    shadow = runner(served_model, log)
    records = [served_record(i, n=3) for i in range(40)]
    for r in records:
        shadow.submit(r)
    shadow.join()
    report = shadow.report()
    c = report["comparison"]
    assert (c.pairs, c.agreement, c.psi, c.max_abs_delta) == (120, 1.0, 0.0, 0.0)
    assert report["candidate_errors"] == report["dropped"] == 0
    # Queued requests are scored together: as many calls of each model, every customer once.
    assert report["calls"]["served"] == report["calls"]["candidate"] <= 40
    assert report["customers_scored"] == {"served": 120, "candidate": 120}
    assert len(log.records) == 40
    for before, after in zip(records, log.records, strict=True):
        assert after.predictions is before.predictions  # the answer's record, untouched
        assert after.shadow is not None
        assert list(after.shadow.versions) == [CANDIDATE] * 3
        assert after.shadow.probability.tolist() == served_model(before.predictions.matrix).tolist()
    shadow.close()


@pytest.mark.parametrize(
    "candidate",
    [
        lambda m: (_ for _ in ()).throw(RuntimeError("broken candidate")),
        lambda m: np.full(len(m), 2.0),  # not a probability
        lambda m: np.zeros(len(m) + 1),  # not one per row
    ],
    ids=["raises", "out-of-range", "wrong-shape"],
)
def test_a_failing_candidate_is_counted_and_the_record_is_logged_as_served(candidate):
    log = Log()
    shadow = runner(candidate, log)
    records = [served_record(i) for i in range(5)]
    probabilities = [r.predictions.scores.churn_probability.copy() for r in records]
    for r in records:
        shadow.submit(r)
    shadow.join()
    report = shadow.report()
    assert report["candidate_errors"] == 5
    assert report["comparison"].pairs == 0
    assert [r.shadow for r in log.records] == [None] * 5
    for r, p in zip(log.records, probabilities, strict=True):
        assert r.predictions.scores.churn_probability.tolist() == p.tolist()
    shadow.close()


def test_a_blocked_candidate_never_blocks_a_hand_over_and_drops_past_the_queue():
    entered, release = threading.Event(), threading.Event()

    def slow(matrix: np.ndarray) -> np.ndarray:
        entered.set()
        release.wait()
        return served_model(matrix)

    log = Log()
    shadow = runner(slow, log, max_queued=3)
    try:
        shadow.submit(served_record(0))
        assert entered.wait(30)  # the thread is inside the candidate, holding record 0
        for i in range(1, 11):  # 3 fit the queue, 7 are dropped: each returns at once
            shadow.submit(served_record(i))
        report = shadow.report()
        assert report["dropped"] == 7
        # The dropped ones went to the log as served, while the candidate still blocks.
        assert len(log.records) == 7
        assert all(r.shadow is None for r in log.records)
    finally:
        release.set()
    shadow.join()
    assert shadow.report()["comparison"].pairs == 4
    assert len(log.records) == 11
    shadow.close()
