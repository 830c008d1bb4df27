"""The shared corpus: the same customers and the same invalid records for every scoring path.

Valid customers come from a fixed seed plus the contract's edge cases; invalid records each carry
the `field:code` every path must reject them with.
"""

from datetime import timedelta

import numpy as np

from models.contract import AGE_MAX, AGE_MIN, ID_COLUMN, INCOME_MIN
from models.samples import record, request
from tests.conftest import AS_OF
from tests.invalid import JSON_CASES

SEED = 20261126


def _day(days_before: int) -> str:
    return (AS_OF - timedelta(days=days_before)).isoformat()


def valid_customers(n: int = 2000) -> list[dict]:
    """n flat records: n - len(edges) random ones and the edge cases of every range."""
    rng = np.random.default_rng(SEED)
    edges = [
        {"age": AGE_MIN, "income": 50_000.0, "purchase_history": 3, "last_purchase_date": _day(5)},
        {"age": AGE_MAX, "income": 50_000.0, "purchase_history": 3, "last_purchase_date": _day(5)},
        {"age": 40.0, "income": INCOME_MIN, "purchase_history": 3, "last_purchase_date": _day(5)},
        {"age": 40.0, "income": 1e12, "purchase_history": 3, "last_purchase_date": _day(5)},
        {"age": 40.0, "income": 50_000.0, "purchase_history": 0, "last_purchase_date": _day(5)},
        {"age": 40.0, "income": 50_000.0, "purchase_history": 3, "last_purchase_date": _day(0)},
        {"age": 40.0, "income": 50_000.0, "purchase_history": 3, "last_purchase_date": _day(3650)},
        {"age": 33.5, "income": 12_345.67, "purchase_history": 400, "last_purchase_date": _day(1)},
        {
            "age": 40.0,
            "income": 50_000.0,
            "purchase_history": 3,
            "last_purchase_date": f"{_day(2)}T23:59:59+00:00",
        },
    ]
    records = [
        {
            "age": float(rng.integers(18, 90)),
            "income": float(np.round(rng.lognormal(np.log(50_000), 0.6), 2)),
            "purchase_history": int(rng.poisson(6)),
            "last_purchase_date": _day(int(rng.exponential(60))),
        }
        for _ in range(n - len(edges))
    ]
    return [{ID_COLUMN: f"v-{i:05d}", **r} for i, r in enumerate([*edges, *records])]


def invalid_records() -> list[tuple[dict, str]]:
    """(flat record, expected "field:code") for every way a record breaks the contract."""
    return [
        ({**record(customer_id=f"bad-{i:03d}"), **case.override}, case.expected)
        for i, case in enumerate(JSON_CASES)
    ]


# A flat record as the JSON API's request (tests/serving/test_client_errors.py imports it
# from here).
nested = request
