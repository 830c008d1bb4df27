"""Valid customers for tests, benchmarks and examples, built in one place.

    record(**overrides)        one flat valid record (the contract's input columns)
    records(n, prefix, start)  n flat valid records, varied features, distinct ids
    request(flat, **overrides) a flat record in the JSON API's shape: {"customer_id", "features"}
    event(i, nested, **changes) a valid customer event as the Kafka bridge reads it

Plain Python only (no pytest, no pandas), so the benchmarks import it too. Every date is on or
before `AS_OF`, the as-of date the tests and benchmarks score with.
"""

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

AS_OF = date(2026, 6, 30)

_RECORD: Mapping[str, Any] = {
    "customer_id": "c-1",
    "age": 42.0,
    "income": 55_000.0,
    "purchase_history": 12,
    "last_purchase_date": "2026-06-01",
}


def record(**overrides: Any) -> dict[str, Any]:
    """A new valid flat record with `overrides` applied (any value, valid or not)."""
    return {**_RECORD, **overrides}


def records(n: int, prefix: str = "c", start: int = 0) -> list[dict[str, Any]]:
    """n valid flat records with varied features and the ids `prefix-start` on.

    Row i's features depend on i alone (not on `start`); no two of the first 90,000 are the same.
    """
    return [
        record(
            customer_id=f"{prefix}-{start + i}",
            age=float(20 + (i * 7) % 60),
            income=20_000.0 + (i * 3_917) % 90_000,
            purchase_history=(i * 5) % 25,
            last_purchase_date=(AS_OF - timedelta(days=(i * 11) % 400)).isoformat(),
        )
        for i in range(n)
    ]


def request(flat: Mapping[str, Any] | None = None, /, **overrides: Any) -> dict[str, Any]:
    """`flat` (by default `record()`), `overrides` applied, as the JSON API's request: its
    `customer_id` at the top when it has one, every other key inside `features`."""
    fields = {**(record() if flat is None else flat), **overrides}
    ids = {"customer_id": fields.pop("customer_id")} if "customer_id" in fields else {}
    return {**ids, "features": fields}


def event(i: int, nested: bool = False, **changes: Any) -> dict[str, Any]:
    """Valid customer event i (id `c-0000i`, flat or nested), with `changes` applied to its
    features. Integer ages and fractional incomes, as producers send them."""
    features = {
        "age": 20 + i % 60,
        "income": 30_000 + 137.5 * i,
        "purchase_history": i % 25,
        "last_purchase_date": f"2026-{1 + i % 6:02d}-{1 + i % 28:02d}",
        **changes,
    }
    cid = f"c-{i:05d}"
    if nested:
        return {"customer_id": cid, "features": features}
    return {"customer_id": cid, **features}
