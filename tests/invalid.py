"""Every way a record can break the contract, written once for the tests of every path.

A case names the one field and code every path must report for it, and which inputs can carry
its bad value: any Python value reaches the library functions; JSON text (the HTTP API, Kafka
messages, JSON-lines files) has no NaN or infinity; a parquet column of the contract's type
holds only that type or null.
"""

from dataclasses import dataclass

from models.validation import describe
from tests.conftest import AS_OF

INF = float("inf")


@dataclass(frozen=True)
class Case:
    override: dict
    field: str
    code: str
    json: bool = True  # representable in JSON text
    typed: bool = True  # representable in a column of the contract's type

    @property
    def expected(self) -> str:
        """`field:code`, as the per-item errors and `ValidatedFrame.codes` give it."""
        return f"{self.field}:{self.code}"

    @property
    def reason(self) -> str:
        """The readable reason, as the rejects file and the DataFrame endpoint give it."""
        return describe(self.field, self.code, AS_OF).reason


CASES = [
    Case({"customer_id": None}, "customer_id", "null"),
    Case({"customer_id": 17.5}, "customer_id", "wrong_type", typed=False),
    Case({"customer_id": 17.0}, "customer_id", "wrong_type", typed=False),
    Case({"customer_id": True}, "customer_id", "wrong_type", typed=False),
    Case({"customer_id": ""}, "customer_id", "out_of_range"),
    Case({"customer_id": "x" * 101}, "customer_id", "out_of_range"),
    Case({"age": None}, "age", "null"),
    Case({"age": float("nan")}, "age", "null", json=False),
    Case({"age": "forty"}, "age", "wrong_type", typed=False),
    Case({"age": "42"}, "age", "wrong_type", typed=False),
    Case({"age": True}, "age", "wrong_type", typed=False),
    Case({"age": INF}, "age", "not_finite", json=False),
    Case({"age": -0.5}, "age", "out_of_range"),
    Case({"age": 120.5}, "age", "out_of_range"),
    Case({"income": None}, "income", "null"),
    Case({"income": "rich"}, "income", "wrong_type", typed=False),
    Case({"income": -INF}, "income", "not_finite", json=False),
    Case({"income": -0.01}, "income", "out_of_range"),
    Case({"purchase_history": None}, "purchase_history", "null"),
    Case({"purchase_history": "3"}, "purchase_history", "wrong_type", typed=False),
    Case({"purchase_history": 2.5}, "purchase_history", "not_integer"),
    Case({"purchase_history": -3}, "purchase_history", "out_of_range"),
    Case({"last_purchase_date": None}, "last_purchase_date", "null"),
    Case({"last_purchase_date": 20260101}, "last_purchase_date", "wrong_type", typed=False),
    Case({"last_purchase_date": "yesterday"}, "last_purchase_date", "bad_date"),
    Case({"last_purchase_date": "31/12/2025"}, "last_purchase_date", "bad_date"),
    Case({"last_purchase_date": "2026-02-30"}, "last_purchase_date", "bad_date"),
    Case({"last_purchase_date": "2026-07-01"}, "last_purchase_date", "future_date"),
    # Several bad fields: the first in contract order is the one reported.
    Case({"age": -3, "income": -3}, "age", "out_of_range"),
]
JSON_CASES = [c for c in CASES if c.json]
TYPED_CASES = [c for c in CASES if c.typed]
