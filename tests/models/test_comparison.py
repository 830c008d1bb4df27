"""The candidate comparison against hand-computed cases and independent numpy/sklearn figures."""

import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from models.comparison import (
    DELTA_BIN,
    SCORE_BINS,
    ComparisonState,
    Decision,
    Thresholds,
    compare,
    verdict,
)


def test_an_identical_candidate_agrees_fully_and_moves_nothing():
    p = np.random.default_rng(0).uniform(size=5000)
    c = compare(p, p.copy())
    assert (c.pairs, c.agreement, c.psi) == (5000, 1.0, 0.0)
    assert (c.mean_abs_delta, c.p95_abs_delta, c.max_abs_delta) == (0.0, 0.0, 0.0)
    assert verdict(c, 0, Thresholds()).decision is Decision.PROMOTE


def test_a_small_case_by_hand():
    served = np.array([0.1, 0.6, 0.7, 0.4])
    candidate = np.array([0.2, 0.4, 0.7, 0.55])
    c = compare(served, candidate, threshold=0.5)
    # Decisions: served 0,1,1,0; candidate 0,0,1,1.
    assert c.table == [[1, 1], [1, 1]]
    assert c.agreement == 0.5
    assert c.mean_abs_delta == pytest.approx((0.1 + 0.2 + 0.0 + 0.15) / 4)
    assert c.max_abs_delta == pytest.approx(0.2)
    # 95% of 4 pairs is 3.8: the 4th smallest |Δp| (0.2), within one bin above.
    assert 0.2 - 1e-12 <= c.p95_abs_delta <= 0.2 + DELTA_BIN
    # Served bins (width 0.05): 0.1->2, 0.6->12, 0.7->14, 0.4->8; candidate: 4, 8, 14, 11.
    a = {4: 0.25, 8: 0.25, 14: 0.25, 11: 0.25}
    e = {2: 0.25, 12: 0.25, 14: 0.25, 8: 0.25}
    expected = 0.0
    for b in range(SCORE_BINS):
        ab, eb = max(a.get(b, 0.0), 1e-4), max(e.get(b, 0.0), 1e-4)
        expected += (ab - eb) * math.log(ab / eb)
    assert c.psi == pytest.approx(expected)
    assert verdict(c, 0, Thresholds(min_pairs=1)).decision is Decision.REJECT


def test_a_different_candidate_matches_independent_figures():
    rng = np.random.default_rng(1)
    served = rng.beta(2, 5, 20_000)
    candidate = np.clip(served + rng.normal(0, 0.03, served.size), 0, 1)
    c = compare(served, candidate)
    table = confusion_matrix(served >= 0.5, candidate >= 0.5, labels=[False, True])
    assert c.table == table.tolist()
    assert c.agreement == pytest.approx(np.mean((served >= 0.5) == (candidate >= 0.5)))
    delta = np.abs(served - candidate)
    assert c.mean_abs_delta == pytest.approx(delta.mean())
    assert c.max_abs_delta == pytest.approx(delta.max())
    true_p95 = np.quantile(delta, 0.95, method="inverted_cdf")
    assert true_p95 - 1e-12 <= c.p95_abs_delta <= true_p95 + DELTA_BIN
    edges = np.linspace(0, 1, SCORE_BINS + 1)
    s_frac = np.histogram(served, edges)[0] / served.size
    c_frac = np.histogram(candidate, edges)[0] / served.size
    s_frac, c_frac = np.maximum(s_frac, 1e-4), np.maximum(c_frac, 1e-4)
    assert c.psi == pytest.approx(float(np.sum((c_frac - s_frac) * np.log(c_frac / s_frac))))


def test_states_added_piece_by_piece_equal_one_state_of_everything():
    rng = np.random.default_rng(2)
    served, candidate = rng.uniform(size=3000), rng.uniform(size=3000)
    whole = compare(served, candidate)
    first, second = ComparisonState(), ComparisonState()
    for i in range(0, 3000, 7):
        (first if i % 2 else second).add(served[i : i + 7], candidate[i : i + 7])
    first.merge(second)
    part = first.result()
    assert part.table == whole.table
    assert part.psi == pytest.approx(whole.psi)
    assert part.p95_abs_delta == whole.p95_abs_delta
    assert part.mean_abs_delta == pytest.approx(whole.mean_abs_delta)


def test_no_pairs_holds_and_errors_reject():
    empty = ComparisonState().result()
    assert empty.pairs == 0
    assert empty.agreement is None
    assert verdict(empty, 0, Thresholds()).decision is Decision.HOLD
    same = compare(np.full(10, 0.3), np.full(10, 0.3))
    assert verdict(same, 1, Thresholds(min_pairs=1)).decision is Decision.REJECT
    # Identical but too few pairs for the threshold: hold, saying why.
    held = verdict(same, 0, Thresholds(min_pairs=500))
    assert held.decision is Decision.HOLD
    assert "10 pairs < 500" in held.reasons


def test_a_close_candidate_past_the_delta_threshold_is_held():
    # Below the threshold, and the same (uniform) distribution shifted around: every decision
    # agrees, the PSI is ~0, yet most scores move by 0.06.
    served = np.arange(1000) * 0.0004
    c = compare(served, (served + 0.06) % 0.4)
    assert c.psi < 0.01
    v = verdict(c, 0, Thresholds(min_pairs=100))
    assert c.agreement == 1.0
    assert v.decision is Decision.HOLD
    assert any(r.startswith("p95 |Δp|") for r in v.reasons)


def test_mismatched_pairs_are_refused():
    with pytest.raises(ValueError, match="pairs of equal"):
        compare(np.zeros(3), np.zeros(4))
