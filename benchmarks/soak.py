"""Soak: minutes of sustained load on /predict and /predict/batch with the Redis cache on.

    python -m benchmarks.soak [--minutes 5] [--window 30]      (make soak; not part of CI)

Starts its own redis-server and `bentoml serve` (one worker) on free loopback ports, trains a
model into a private store, then drives /predict (32 connections) and /predict/batch (4
connections, 100 customers each) at once, window after window, with the load generator of the
serving benchmark in separate processes. After each window it prints req/s, p99 and errors per
endpoint and the service's resident memory (its whole process tree). It exits 1 if any request
failed or if memory in the grew by more than 10% after the first window.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from models.samples import records, request
from tests.support import start_bento, start_redis

MEMORY_GROWTH_TOLERANCE = 1.10


def rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20


def load(url: str, body: Path, connections: int, seconds: float) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "benchmarks.serving_load", url, str(body)]
    cmd += ["--concurrency", str(connections), "--warmup", "0", "--duration", str(seconds)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=30.0, help="seconds per report line")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="churn-soak-"))
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    subprocess.run(
        [sys.executable, "-m", "models.train", "--classifier", "logistic_regression"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    single, batch = work / "single.json", work / "batch.json"
    single.write_text(json.dumps(request()))
    batch.write_text(json.dumps({"requests": [request(r) for r in records(100)]}))

    redis = start_redis(work)
    bento = start_bento(work, {"CHURN_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"})
    windows = max(1, round(args.minutes * 60 / args.window))
    memory, failed = [], 0
    print(
        f"{'window':>6} {'predict/s':>10} {'p99 ms':>8} {'batch/s':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'RSS MB':>8}"
    )
    try:
        for w in range(windows):
            runs = [
                load(f"{bento.url}/predict", single, 32, args.window),
                load(f"{bento.url}/predict/batch", batch, 4, args.window),
            ]
            one, many = (json.loads(p.communicate()[0]) for p in runs)
            errors = sum(
                r["errors"] + sum(n for code, n in r["statuses"].items() if code != "200")
                for r in (one, many)
            )
            failed += errors
            memory.append(rss_mb(bento.proc.pid))
            print(
                f"{w + 1:>6} {one['req_per_s']:>10.0f} {one['p99_ms']:>8.1f} "
                f"{many['req_per_s']:>8.0f} {many['p99_ms']:>8.1f} {errors:>6} "
                f"{memory[-1]:>8.0f}",
                flush=True,
            )
    finally:
        bento.stop()
        redis.stop()

    # The first window includes warm-up (caches filling, lazy imports); compare against the second.
    growth = memory[-1] / memory[min(1, len(memory) - 1)]
    print(
        f"\nfailed requests: {failed}; service memory {memory[0]:.0f} MB after the first window, "
        f"{memory[-1]:.0f} MB at the end (x{growth:.2f} since the second window)"
    )
    return 0 if failed == 0 and growth <= MEMORY_GROWTH_TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
