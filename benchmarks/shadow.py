"""Shadow scoring's cost: /predict of the service with a candidate in its shadow at full
sampling, against the same service without one, in one run.

    python -m benchmarks.shadow [--candidate-classifier logistic_regression] [--rounds 3]
        [--concurrency 64] [--warmup 3] [--duration 10]

It trains the served model (logistic regression) and the candidate into a private BentoML
home, then starts `service:ChurnService` alone on loopback, one worker, without
(`shadow-off`) and with `CHURN_CANDIDATE_TAG` (`shadow-on`, `CHURN_SHADOW_SAMPLE=1`), in turns
for `--rounds` rounds, each driven by the serving benchmark's load generator with 1,000
distinct customers in turn. It prints each run, the medians, the on / off ratios of
throughput, p99 and server CPU per request, and what `/models/candidate` saw in the last
`shadow-on` run: pairs compared, requests dropped, and each model's CPU per call on the shadow
thread (what the candidate costs).
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

from benchmarks.serving_run import ROOT, load, start, stop
from models.samples import AS_OF, records, request

KEYS = ("req_per_s", "p50_ms", "p99_ms", "cpu_ms")
CUSTOMERS = 1_000


def train(env: dict[str, str], classifier: str, seed: int) -> str:
    cmd = [sys.executable, "-m", "models.train", "--classifier", classifier, "--seed", str(seed)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return next(w for w in out.stdout.split() if w.startswith("churn_model:"))


def run(name: str, env: dict[str, str], work: Path, body: Path, args) -> dict:
    proc, url = start("service", env, work / f"{name}.log")
    try:
        result = load(proc, f"{url}/predict", body, args, args.concurrency)
        if name == "shadow-on":
            result["candidate"] = httpx.get(f"{url}/models/candidate", timeout=30).json()
    finally:
        stop(proc)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate-classifier", default="logistic_regression")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--duration", type=float, default=10)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="churn-bench-shadow-"))
    env = {
        **os.environ,
        "BENTOML_HOME": str(work / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "CHURN_AS_OF": AS_OF.isoformat(),
    }
    print(f"training the served model and the candidate in {work} ...", flush=True)
    served = train(env, "logistic_regression", 42)
    candidate = train(env, args.candidate_classifier, 7)
    env["CHURN_MODEL_TAG"] = served
    body = work / "distinct.jsonl"
    body.write_text("\n".join(json.dumps(request(r)) for r in records(CUSTOMERS, "shadow")))
    envs = {
        "shadow-off": env,
        "shadow-on": {**env, "CHURN_CANDIDATE_TAG": candidate, "CHURN_SHADOW_SAMPLE": "1"},
    }

    results: dict[str, list[dict]] = {name: [] for name in envs}
    for round_no in range(1, args.rounds + 1):
        for name, server_env in envs.items():
            r = run(name, server_env, work, body, args)
            results[name].append(r)
            print(
                f"round {round_no} {name:<11} {r['req_per_s']:6.0f} req/s  p50 {r['p50_ms']:6.1f}"
                f" ms  p99 {r['p99_ms']:6.1f} ms  errors {r['errors']}"
                f"  server CPU {r['cpu_ms']:.2f} ms/request",
                flush=True,
            )

    med = {n: {k: statistics.median(r[k] for r in rs) for k in KEYS} for n, rs in results.items()}
    print(
        f"\n/predict, served {served}, candidate {candidate} ({args.candidate_classifier}),"
        f" {args.concurrency} clients, median of {args.rounds} rounds;"
        f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"{'server':<12}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}")
    for name, m in med.items():
        print(
            f"{name:<12}{m['req_per_s']:8.0f}{m['p50_ms']:9.1f}{m['p99_ms']:9.1f}{m['cpu_ms']:12.2f}"
        )
    on, off = med["shadow-on"], med["shadow-off"]
    print(
        f"\nshadow on / off: throughput {on['req_per_s'] / off['req_per_s']:.2f}x,"
        f" p99 {on['p99_ms'] / off['p99_ms']:.2f}x,"
        f" CPU per request {on['cpu_ms'] / off['cpu_ms']:.2f}x"
        " (issue 20's target: throughput and p99 within 1.25x)"
    )
    last = results["shadow-on"][-1]["candidate"]
    per_call = last["cpu_seconds_per_call"]
    print(
        f"last shadow-on run: {last['comparison']['pairs']} pairs compared, {last['dropped']}"
        f" requests dropped, {last['candidate_errors']} candidate errors; CPU per call on the"
        f" shadow thread: served {1e6 * (per_call['served'] or 0):.0f} us,"
        f" candidate {1e6 * (per_call['candidate'] or 0):.0f} us"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
