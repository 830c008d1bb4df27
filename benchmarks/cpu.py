"""CPU time of a benchmarked process and everything it started."""

import psutil


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by `pid` and its live descendants (a server's
    workers, which `bentoml serve` starts in sessions of their own, included)."""
    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
