"""One-command benchmarks: each prints figures and ratios against a baseline run in the same run."""
