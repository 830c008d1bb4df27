"""Batch inference over parquet files with the packaged churn model."""

import os
import sys

# Arrow's C++ allocator is read from this variable once, when pyarrow loads, so `main()` is too
# late to choose it. The parquet reader and writer allocate there whatever pool Python code
# picks, and the default (mimalloc) kept ~30 MB of freed pages resident in the benchmark;
# jemalloc gives them back. Only when this package is the process's first arrow user (the
# `python -m batch.predict` and `churn-batch` commands), on Linux (whose pyarrow wheels have
# jemalloc), and never over an explicit setting.
if "pyarrow" not in sys.modules and sys.platform.startswith("linux"):
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
