"""Which model answers a customer during a canary, and which requests a shadow samples: pure.

A customer goes to the candidate when the first 8 bytes of the BLAKE2b digest of its id, read
as a number in [0, 1), fall below the canary share: the same id gets the same model in every
worker, process and release (Python's `hash` of a string changes with each process's seed).
"""

import hashlib
import random
from collections.abc import Iterable

import numpy as np

_SCALE = float(2**64)


def position(key: str) -> float:
    """Where `key` falls in [0, 1), stable across processes and machines."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def to_candidate(keys: Iterable[str], percent: float) -> np.ndarray:
    """Per key, whether the candidate answers it under a canary of `percent` (0-100)."""
    share = percent / 100.0
    return np.array([position(k) < share for k in keys], bool)


def sampled(share: float, draw: float | None = None) -> bool:
    """Whether one request is shadow-scored, for a sample `share` in [0, 1]."""
    if share >= 1.0:
        return True
    return (random.random() if draw is None else draw) < share
