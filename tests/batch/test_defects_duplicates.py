"""A part of the duplicate counter written again (a Dask task re-run) replaces its hashes."""

import pyarrow as pa

from batch import duplicates
from batch.duplicates import DuplicateCounter


def test_a_part_written_twice_counts_its_ids_once(tmp_path, monkeypatch):
    monkeypatch.setattr(duplicates, "SPILL_ROWS", 100)  # many spills' worth of ids per part
    first = pa.array([f"c-{i}" for i in range(1000)] + ["c-1", "c-2"])
    second = pa.array(["c-5", "c-2000"])
    for _ in range(2):
        part = DuplicateCounter(tmp_path, part="0-1", replace=True)
        part.add(first)
        part.flush()
    part = DuplicateCounter(tmp_path, part="0-2", replace=True)
    part.add(second)
    part.flush()
    assert not list(tmp_path.glob("*.tmp"))
    found = DuplicateCounter(tmp_path).count([first, second])
    # c-1 and c-2 twice within the first part, c-5 once in each part.
    assert (found.duplicate_rows, found.duplicated_ids) == (3, 3)
    assert found.examples == {"c-1": 2, "c-2": 2, "c-5": 2}
