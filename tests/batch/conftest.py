"""Messy inputs for the batch script, built in code, and a helper that runs it in-process."""

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.predict import main
from models.samples import AS_OF

# tests/batch/test_drift.py takes its customers from here: the shared factory's `records`.
from models.samples import records as customers  # noqa: F401
from tests.invalid import TYPED_CASES

# (override, expected reason): every way a row of a typed parquet file can be invalid.
TYPED_INVALID = [(case.override, case.reason) for case in TYPED_CASES]


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
