"""Serving benchmark: /predict of the BentoML service against a hand-written FastAPI server and
a bare Starlette ceiling, plus /predict/batch customers/s.

    python -m benchmarks.serving            # or: make bench-serving

For each `--classifier` (comma-separated; issue 11 asks for logistic_regression and
hist_gradient_boosting) it trains a model into a private BentoML home, then starts each server
alone on loopback, drives it from a separate load-generator process (64 keep-alive clients,
warm-up, fixed duration) and stops it; the servers take turns for `--rounds` rounds and the
medians are reported, so noise on this shared machine hits every server alike. Servers (one
worker each):

  service   `bentoml serve service:ChurnService` (the default design)
  batched   `bentoml serve service:BatchedChurnService` (/predict through adaptive batching)
  service-workers2  the service with CHURN_WORKERS=2
  service-explain  the service, each request asking for reason codes (`"explain": true`)
  service-predlog  the service with its prediction log on (CHURN_PREDICTION_LOG, a fresh
                   directory per run; docs/monitoring.md); after each run the log's lines are
                   counted against the predictions served
  service-distinct  the service sent 1,000 distinct customers in turn (cache off)
  service-cache  the same customers with the Redis cache on (a fresh redis-server per run):
                 misses until each is cached, hits after (compare with service-distinct)
  service-cache-miss  the cache on, every request a customer not sent before (all misses)
  service-mixed  the service's /predict while 4 more clients send 1,000-row
                 /predict/dataframe requests (compare its p99 with the service's)
  baseline-async  FastAPI `async def` endpoint, standard asyncio loop, no access log: the
                  strongest hand-written peer (issue 11's targets are against it)
  baseline-async-omp1  the same with OMP_NUM_THREADS=1 (what the service does by default;
                  matters for the hist-gradient-boosting model)
  baseline  FastAPI + uvicorn, `def` endpoint, predict + predict_proba per request
  ceiling   bare Starlette: parse the JSON, return a constant
and the service with its access log on, the baseline with its access log off.

Besides req/s, p50, p99 and errors it reports the server's CPU time per request (all its
processes): on a shared machine the req/s of a run moves with whatever else is running, the
CPU cost of a request much less.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.serving_run import ROOT, load, load_command, start, stop
from benchmarks.serving_servers import SERVERS
from models.samples import records, request
from tests.support import start_redis

AS_OF = "2026-06-30"
# Targets that are the service with another load or environment (set up by `run_target`).
VARIANTS = dict.fromkeys(
    ["service-predlog", "service-distinct", "service-cache", "service-cache-miss", "service-mixed"],
    "service",
)
PREDICTION_LOG = "service-predlog"
CACHED = ("service-cache", "service-cache-miss")
DISTINCT, UNIQUE, DATAFRAME_ROWS, DATAFRAME_CLIENTS = 1_000, 60_000, 1_000, 4
ISSUE_11 = "service,baseline-async,batched,service-distinct,service-cache,service-cache-miss"
ISSUE_11 += ",service-mixed"


def logged_predictions(directory: Path) -> int:
    """Lines of the prediction log's data files (complete once the server has stopped)."""
    files = directory.glob("churn_predictions/data/data.*.log*")
    return sum(sum(1 for _ in f.open("rb")) for f in files)


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def write_bodies(work: Path) -> dict[str, Path]:
    bodies = {"single": work / "single.json", "explain": work / "explain.json"}
    bodies["single"].write_text(json.dumps(request()))
    bodies["explain"].write_text(json.dumps({**request(), "explain": True}))
    for kind, n in (("distinct", DISTINCT), ("unique", UNIQUE)):
        bodies[kind] = work / f"{kind}.jsonl"
        bodies[kind].write_text("\n".join(json.dumps(request(r)) for r in records(n, kind)))
    bodies["dataframe"] = work / "dataframe.json"
    bodies["dataframe"].write_text(json.dumps(records(DATAFRAME_ROWS, "df")))
    return bodies


def run_target(
    name: str, round_no: int, work: Path, env: dict[str, str], bodies: dict[str, Path], args
) -> dict:
    """One measured run of `name`: its server started alone (with Redis or a prediction log
    when it needs one), driven, stopped."""
    body = {
        "service-explain": "explain",
        "service-distinct": "distinct",
        "service-cache": "distinct",
        "service-cache-miss": "unique",
    }.get(name, "single")
    server_env, redis, prediction_log = dict(env), None, work / f"prediction-log-{round_no}"
    if name == PREDICTION_LOG:
        server_env["CHURN_PREDICTION_LOG"] = str(prediction_log)
    if name in CACHED:
        redis = start_redis(work)  # a fresh, empty cache each run
        server_env["CHURN_REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/0"
    try:
        proc, url = start(VARIANTS.get(name, name), server_env, work / f"{name}.log")
        try:
            side = None
            if name == "service-mixed":
                frames = f"{url}/predict/dataframe"
                side = load_command(frames, bodies["dataframe"], args, DATAFRAME_CLIENTS)
            result = load(proc, f"{url}/predict", bodies[body], args, args.concurrency, side)
            if redis is not None:
                result["note"] = "  cache " + cache_lookups(url)
        finally:
            stop(proc)  # the service writes what its log still has queued, then exits
    finally:
        if redis is not None:
            redis.stop()
    if name == PREDICTION_LOG:
        # Every answered request (the one `start` sends included) should be a line.
        result["note"] = f"  logged {logged_predictions(prediction_log)} of {result['sent'] + 1}"
    if "side" in result:
        side_result = result["side"]
        result["note"] = (
            f"  alongside: {side_result['req_per_s'] * DATAFRAME_ROWS:.0f} DataFrame rows/s,"
            f" p99 {side_result['p99_ms']:.0f} ms, errors {side_result['errors']}"
        )
    return result


def cache_lookups(url: str) -> str:
    """The service's cache hits and misses so far, from its /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    counts = {"hit": 0.0, "miss": 0.0, "skipped": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "churn_cache_lookups_total":
                counts[sample.labels["result"]] += sample.value
    return ", ".join(f"{k} {v:.0f}" for k, v in counts.items())


def ratio(med: dict, a: str, b: str, key: str) -> str:
    return f"{med[a][key] / med[b][key]:.2f}x" if a in med and b in med else "not run"


def issue_11(med: dict) -> None:
    """Issue 11's targets, from this run's medians."""
    rows = [
        ("service / baseline-async, throughput", "service", "baseline-async", "req_per_s",
         ">= 1.2x"),
        ("service / baseline-async, p99", "service", "baseline-async", "p99_ms", "<= 2x"),
        ("cache on / off, 1,000 customers repeated", "service-cache", "service-distinct",
         "req_per_s", ">= 0.9x"),
        ("cache on / off, every customer new", "service-cache-miss", "service-distinct",
         "req_per_s", ">= 0.9x"),
        ("/predict p99 with / without DataFrame requests", "service-mixed", "service", "p99_ms",
         "<= 3x"),
        ("adaptive batching / service, throughput", "batched", "service", "req_per_s", ""),
        ("adaptive batching / service, p99", "batched", "service", "p99_ms", ""),
    ]  # fmt: skip
    print("\nissue 11:")
    for label, a, b, key, target in rows:
        print(f"  {label}: {ratio(med, a, b, key)}" + (f" (target {target})" if target else ""))


def benchmark(classifier: str, targets: list[str], work: Path, args) -> None:
    work.mkdir(parents=True)
    env = {
        **os.environ,
        "BENTOML_HOME": str(work / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "CHURN_AS_OF": AS_OF,
    }
    print(f"\n== {classifier}: training the model in {work} ...", flush=True)
    train = [sys.executable, "-m", "models.train", "--classifier", classifier]
    subprocess.run(train, cwd=ROOT, env=env, check=True, capture_output=True)
    bodies = write_bodies(work)

    results: dict[str, list[dict]] = {t: [] for t in targets}
    for round_no in range(1, args.rounds + 1):
        for name in targets:
            result = run_target(name, round_no, work, env, bodies, args)
            results[name].append(result)
            print(
                f"round {round_no} {name:<18} {result['req_per_s']:6.0f} req/s"
                f"  p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms"
                f"  errors {result['errors']}  server CPU {result['cpu_ms']:.2f} ms/request"
                f"{result.get('note', '')}",
                flush=True,
            )

    print(
        f"\n/predict, {classifier}, {args.concurrency} clients, median of {args.rounds}"
        f" rounds; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"{'server':<19}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU ms/req':>12}")
    keys = ("req_per_s", "p50_ms", "p99_ms", "cpu_ms")
    med = {t: {k: median(results[t], k) for k in keys} for t in targets}
    for name in targets:
        errors = sum(r["errors"] for r in results[name])
        m = med[name]
        print(
            f"{name:<19}{m['req_per_s']:8.0f}{m['p50_ms']:9.1f}{m['p99_ms']:9.1f}{errors:8d}"
            f"{m['cpu_ms']:12.2f}"
        )
    issue_11(med)
    pairs = [("service", "baseline"), ("baseline-async-omp1", "baseline-async")]
    pairs += [("service", "baseline-async-omp1")]
    pairs += [("service-workers2", "service")]  # what a second worker gives here
    pairs += [("service-explain", "service")]  # target: CPU per request <= 1.15x
    pairs += [("service-predlog", "service")]  # the prediction log's cost
    pairs += [("service-accesslog", "service"), ("baseline-nolog", "baseline")]
    pairs += [("service", "ceiling"), ("baseline", "ceiling")]
    print()
    for a, b in pairs:
        if a in med and b in med:
            print(
                f"{a} / {b}: throughput {ratio(med, a, b, 'req_per_s')},"
                f" p99 {ratio(med, a, b, 'p99_ms')}, CPU per request {ratio(med, a, b, 'cpu_ms')}"
            )
    sizes = [int(n) for n in args.batch_sizes.split(",") if n]
    if sizes:
        batch_endpoint(sizes, work, env, args)


def batch_endpoint(sizes: list[int], work: Path, env: dict[str, str], args) -> None:
    print(f"\n/predict/batch, {args.batch_concurrency} clients")
    proc, url = start("service", env, work / "service-batch.log")
    try:
        for n in sizes:
            body = work / f"batch-{n}.json"
            body.write_text(json.dumps({"requests": [request(r) for r in records(n)]}))
            r = load(proc, f"{url}/predict/batch", body, args, args.batch_concurrency)
            print(
                f"{n:>5} per request: {r['req_per_s'] * n:9.0f} customers/s"
                f"  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  errors {r['errors']}"
                f"  server CPU {1000 * r['cpu_ms'] / n:.1f} us/customer"
            )
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--targets",
        default="service,baseline-async,service-predlog,service-explain,batched,"
        "service-accesslog,baseline,baseline-nolog,ceiling",
        help=f"comma-separated, from: {', '.join([*SERVERS, *VARIANTS])}; or `issue11`: {ISSUE_11}",
    )
    parser.add_argument(
        "--classifier",
        default="logistic_regression",
        help="the model every server serves (models.train --classifier), comma-separated for "
        "one run each: issue 11 asks for logistic_regression,hist_gradient_boosting",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch-sizes", default="100,1000")
    parser.add_argument("--batch-concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    targets = args.targets.replace("issue11", ISSUE_11).split(",")
    unknown = set(targets) - {*SERVERS, *VARIANTS}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    for classifier in args.classifier.split(","):
        benchmark(classifier, targets, work / classifier, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
