"""Exact duplicate customer ids in bounded memory: 64-bit hashes of the scored ids are spilled to
bucket files by their top bits, then each bucket is sorted and counted on its own.

Memory is up to `SPILL_ROWS` pending hashes plus one bucket (1/64 of 8 bytes per row); two
different ids sharing a 64-bit hash (odds about n²/2⁶⁵, 1e-6 at five million rows) would count
as one.
No listed package hashes arrow strings without making a Python object per value, hence numpy.
"""

import os
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

BUCKET_BITS = 6
# Hashes are spilled in batches this big: appending to 64 files for every chunk cost more than
# hashing the ids.
SPILL_ROWS = 1 << 18
_PRIME = np.uint64(0x100000001B3)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every input bit moves every output bit."""
    h ^= h >> np.uint64(30)
    h *= _MIX1
    h ^= h >> np.uint64(27)
    h *= _MIX2
    h ^= h >> np.uint64(31)
    return h


def hash_strings(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each (non-null) string, computed on the arrow buffers."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    arr = arr.cast(pa.large_string())
    n = len(arr)
    if n == 0:
        return np.empty(0, np.uint64)
    offsets = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    lengths = np.diff(offsets)
    width = int(-(-max(int(lengths.max()), 1) // 8) * 8)
    if lengths.min() == lengths.max():
        # Fixed-width ids (the usual case) are a reshape, no scatter needed.
        grid = np.zeros((n, width), np.uint8)
        grid[:, : lengths[0]] = data.reshape(n, int(lengths[0]))
    else:
        grid = np.zeros((n, width), np.uint8)
        starts = np.repeat(offsets[:-1] - offsets[0], lengths)
        rows = np.repeat(np.arange(n), lengths)
        grid[rows, np.arange(len(data)) - starts] = data
    words = grid.view(np.uint64)
    h = (lengths.astype(np.uint64) + np.uint64(1)) * _PRIME
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            # Only words a string reaches count, so its hash does not depend on its neighbours.
            mixed = _mix((h ^ words[:, j]) * _PRIME)
            h = mixed if lengths.min() > 8 * j else np.where(lengths > 8 * j, mixed, h)
    return h


def _repeats(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """The hashes that occur more than once in one bucket's files, and how often."""
    hashes = np.concatenate([np.fromfile(f, np.uint64) for f in files])
    hashes.sort()
    if not (hashes[1:] == hashes[:-1]).any():  # the usual case: no repeats, no unique pass
        return hashes[:0], np.zeros(0, np.int64)
    values, counts = np.unique(hashes, return_counts=True)
    many = counts > 1
    return values[many], counts[many]


def _replace_file(path: Path, data: bytes) -> None:
    """`path` holds `data` (nothing at all when empty), or its previous content if this fails
    midway; never a mix. The temporary name is hidden and does not end in `.u64`."""
    if not data:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass
class Duplicates:
    """Rows whose id was seen before, how many ids repeat, and the most repeated ones."""

    duplicate_rows: int = 0
    duplicated_ids: int = 0
    examples: dict[str, int] = field(default_factory=dict)


class DuplicateCounter:
    """Spills the hashes of every scored id under `workdir`, then counts repeats. `part` names
    this writer's files, keeping concurrent writers (Dask tasks) apart.

    By default the hashes are appended to the files every `SPILL_ROWS`. With `replace`, they
    stay in memory until `flush`, which writes all of them as this part's files, each written
    under a temporary name and renamed over the last: writing the same part again (a Dask task
    re-run after its worker was lost) replaces its hashes instead of adding them a second
    time, so they do not count as duplicates."""

    def __init__(self, workdir: Path, part: str = "0", replace: bool = False) -> None:
        self.workdir, self.part, self.replace = workdir, part, replace
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0

    def add(self, ids: pa.Array | pa.ChunkedArray) -> None:
        self.add_hashes(hash_strings(ids))

    def add_hashes(self, hashes: np.ndarray) -> None:
        """Queue `hash_strings` of a chunk's ids (computed wherever is convenient)."""
        self._pending.append(hashes)
        self._pending_rows += len(hashes)
        if self._pending_rows >= SPILL_ROWS and not self.replace:
            self.flush()

    def flush(self) -> None:
        """Append the pending hashes to their bucket files (with `replace`: write every hash
        added so far as this part's files, replacing any earlier ones)."""
        if not self._pending and not self.replace:
            return
        hashes = np.concatenate(self._pending) if self._pending else np.empty(0, np.uint64)
        if self.replace:
            self._pending = [hashes]  # a later flush rewrites them all
        else:
            self._pending, self._pending_rows = [], 0
        buckets = (hashes >> np.uint64(64 - BUCKET_BITS)).astype(np.uint8)
        # A stable sort of one-byte keys is a radix sort: linear, unlike sorting the hashes.
        hashes = hashes[np.argsort(buckets, kind="stable")]
        sizes = np.bincount(buckets, minlength=1 << BUCKET_BITS)
        for bucket, piece in enumerate(np.split(hashes, np.cumsum(sizes)[:-1])):
            path = self.workdir / f"{bucket:02d}-{self.part}.u64"
            if self.replace:
                _replace_file(path, piece.tobytes())
            elif len(piece):
                with path.open("ab") as out:
                    out.write(piece.tobytes())

    def count(self, scored_ids: Iterable[pa.Array], top: int = 10) -> Duplicates:
        """Repeats per bucket (two buckets at a time: sorting releases the GIL); the ids behind
        the most repeated hashes come from a second pass over `scored_ids` (only run when there
        are repeats). Counts every writer's files."""
        self.flush()
        files: dict[str, list[Path]] = {}
        for path in sorted(self.workdir.glob("*.u64")):
            files.setdefault(path.name.split("-", 1)[0], []).append(path)
        result = Duplicates()
        repeated: list[tuple[int, int]] = []  # (repeats, id hash)
        with ThreadPoolExecutor(2, thread_name_prefix="batch-count") as pool:
            for values, counts in pool.map(_repeats, files.values()):
                result.duplicate_rows += int((counts - 1).sum())
                result.duplicated_ids += len(counts)
                repeated.extend(zip(counts.tolist(), values.tolist(), strict=True))
        if repeated:
            most = sorted(repeated, key=lambda cv: -cv[0])[:top]
            result.examples = self._names(scored_ids, {h: c for c, h in most})
        return result

    @staticmethod
    def _names(scored_ids: Iterable[pa.Array], wanted: dict[int, int]) -> dict[str, int]:
        found: dict[str, int] = {}
        keys = np.fromiter(wanted, np.uint64, len(wanted))
        for ids in scored_ids:
            hashes = hash_strings(ids)
            for i in np.flatnonzero(np.isin(hashes, keys)).tolist():
                found.setdefault(ids[i].as_py(), wanted[int(hashes[i])])
            if len(found) == len(wanted):
                break
        return dict(sorted(found.items(), key=lambda kv: (-kv[1], kv[0])))
