"""Keep the objects of start-up out of the garbage collector's way.

A worker holds hundreds of thousands of objects once BentoML, pandas, pyarrow, scikit-learn and
the model are loaded, and they live as long as the process. Every full collection walked all of
them with the event loop stopped, every few seconds under load: /predict's long tail
(benchmarks/README.md, "The tail"). `gc.freeze()` moves them to a generation the collector never
scans; objects created later are collected as before, and frozen ones are still freed when
their last reference goes.
"""

import gc


def freeze_startup_objects() -> None:
    """Collect once, then freeze what survived (call when start-up is done)."""
    gc.collect()
    gc.freeze()
