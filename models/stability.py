"""The population stability index: one definition for the drift report (training profile against
scored rows) and the candidate comparison (served scores against the candidate's)."""

import math
from collections.abc import Sequence

PSI_MODERATE, PSI_SIGNIFICANT = 0.1, 0.25
# PSI is undefined for an empty bin; a floor this small keeps it finite without hiding drift.
PSI_FLOOR = 1e-4


def psi(actual: Sequence[int], expected: Sequence[float]) -> float:
    """Population stability index of observed bin counts against expected fractions."""
    total = sum(actual)
    value = 0.0
    for count, e in zip(actual, expected, strict=True):
        a, e = max(count / total, PSI_FLOOR), max(e, PSI_FLOOR)
        value += (a - e) * math.log(a / e)
    return value
