"""Messy inputs for the batch script, built in code, and a helper that runs it in-process."""

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.predict import main
from tests.conftest import AS_OF
from tests.invalid import TYPED_CASES

GOOD = {
    "customer_id": "c-1",
    "age": 42.0,
    "income": 55_000.0,
    "purchase_history": 12,
    "last_purchase_date": "2026-06-01",
}

# (override, expected reason): every way a row of a typed parquet file can be invalid.
TYPED_INVALID = [(case.override, case.reason) for case in TYPED_CASES]


def customers(n: int, prefix: str = "c", start: int = 0) -> list[dict]:
    """n valid customers with varied features and distinct ids."""
    return [
        {
            **GOOD,
            "customer_id": f"{prefix}-{start + i}",
            "age": float(20 + (i * 7) % 60),
            "income": 20_000.0 + (i * 3_917) % 90_000,
            "purchase_history": (i * 5) % 25,
            "last_purchase_date": (AS_OF - pd.Timedelta(days=(i * 11) % 400)).isoformat(),
        }
        for i in range(n)
    ]


def write_parquet(path: Path, rows: list[dict], **kwargs) -> Path:
    frame = pd.DataFrame(rows)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, **kwargs)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_batch(inputs: list[Path | str], out: Path, model_tag: str, *extra: str) -> int:
    argv = [*map(str, inputs), "--output", str(out), "--model", model_tag]
    return main([*argv, "--as-of", AS_OF.isoformat(), "--quiet", *extra])


def read_outputs(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    report = json.loads((out / "report.json").read_text())
    return (
        pd.read_parquet(out / "predictions.parquet"),
        pd.read_parquet(out / "rejected.parquet"),
        report,
    )


@pytest.fixture
def as_of() -> date:
    return AS_OF
