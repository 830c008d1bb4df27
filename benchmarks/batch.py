"""Batch benchmark: the batch script against the pandas way and against the unavoidable work.

    python -m benchmarks.batch [--rows 5000000] [--repeat 3] [--model TAG]   (make bench-batch)

On a generated parquet file (`--rows` customers, 1% invalid, cached in benchmarks/.data/) it runs,
each in a fresh subprocess so that peak memory (VmHWM) is that approach's alone:
- script:   `batch.predict.main` (imports and model load done before the clock starts);
- baseline: what users ran before: pandas reads the whole file, parses dates, drops bad rows,
            one `predict` and one `predict_proba`, writes the result;
- limit:    pyarrow reading the needed columns + `predict_proba` on the already-decoded
            feature matrix, timed piece by piece and added up;
then the script again on twice the rows, to show its memory does not grow with the input, and
the script with `--explain` (reason codes), against the script without.
Each approach also reports its CPU seconds (all threads). On a shared machine both swing from run
to run, so compare the ratios within one run; the load average is printed with the figures.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.contract import (
    AGE_MAX,
    AGE_MIN,
    DATE_COLUMN,
    FEATURES,
    ID_COLUMN,
    INPUT_COLUMNS,
    MODEL_FILE,
    SCALER_FILE,
)
from models.data import REFERENCE_AS_OF, synthetic_customers

DATA = Path(__file__).parent / ".data"
PIECE = 1_000_000
INVALID_SHARE = 0.01
# In-type corruptions a typed parquet file can carry, applied in turn to 1% of the rows.
CORRUPTIONS = [
    ("age", None), ("age", -5.0), ("age", 150.0), ("income", -1.0), ("income", float("inf")),
    ("purchase_history", None), ("purchase_history", -2), (DATE_COLUMN, "not-a-date"),
    (DATE_COLUMN, "2026-02-30"), (DATE_COLUMN, "2027-01-01"), (DATE_COLUMN, None),
    (ID_COLUMN, None), (ID_COLUMN, ""),
]  # fmt: skip


def piece(index: int, rows: int) -> pa.Table:
    """`rows` customers with unique ids (offset by piece) and 1% invalid rows."""
    frame = synthetic_customers(rows, seed=index).drop(columns=["days_since_purchase", "churned"])
    numbers = pc.cast(pa.array(np.arange(index * PIECE, index * PIECE + rows)), pa.string())
    frame[ID_COLUMN] = pc.binary_join_element_wise("c-", pc.utf8_lpad(numbers, 9, "0"), "")
    frame["purchase_history"] = frame["purchase_history"].astype("Int64")
    bad = np.random.default_rng(1000 + index).choice(rows, int(rows * INVALID_SHARE), replace=False)
    for k, (name, value) in enumerate(CORRUPTIONS):
        frame.iloc[bad[k :: len(CORRUPTIONS)], frame.columns.get_loc(name)] = value
    return pa.Table.from_pandas(frame, preserve_index=False)


def dataset(rows: int) -> Path:
    """The cached input file of `rows` customers (generated once, in 1M-row row groups)."""
    path = DATA / f"customers-{rows}.parquet"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    writer = None
    for index, start in enumerate(range(0, rows, PIECE)):
        table = piece(index, min(PIECE, rows - start))
        writer = writer or pq.ParquetWriter(partial, table.schema)
        writer.write_table(table)
        print(f"  generated {start + table.num_rows:,} / {rows:,} rows", file=sys.stderr)
    assert writer is not None
    writer.close()
    partial.rename(path)
    return path


def measure(kind: str, **params: object) -> dict:
    """Run one approach in a fresh interpreter; it prints its own figures as JSON."""
    # The script's interpreter imports the batch package first, as its commands do (it picks
    # arrow's allocator before pyarrow loads; see batch/__init__.py).
    first = "import batch; " if kind == "script" else ""
    call = f"print(json.dumps(b.run_{kind}(**{params!r})))"
    code = f"{first}import benchmarks.batch as b, json; {call}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _peak_mb() -> float:
    """This process's peak RSS. ru_maxrss would do, but Linux carries the parent's high-water
    mark over fork+exec into it; VmHWM belongs to this process's own address space."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_script(path: str, out: str, tag: str, as_of: str, explain: bool = False) -> dict:
    started = time.perf_counter()
    from batch.predict import main as batch_main
    from models.predictor import load_predictor

    load_predictor(tag)  # imports and first model load: a fixed cost, not per-row work
    startup, start_mb = time.perf_counter() - started, _peak_mb()
    shutil.rmtree(out, ignore_errors=True)
    argv = [path, "--output", out, "--as-of", as_of, "--model", tag, "--quiet"]
    argv += ["--explain"] if explain else []
    clock, cpu = time.perf_counter(), time.process_time()
    assert batch_main(argv) == 0
    seconds, cpu_s = time.perf_counter() - clock, time.process_time() - cpu
    summary = json.loads((Path(out) / "report.json").read_text())["summary"]
    shutil.rmtree(out)
    return {
        "rows": summary["rows_in"],
        "scored": summary["rows_scored"],
        "rejected": summary["rows_rejected"],
        "seconds": seconds,
        "cpu_s": cpu_s,
        "peak_mb": _peak_mb(),
        "start_mb": start_mb,
        "startup_s": startup,
    }


def run_baseline(path: str, out: str, as_of: str, model: str, scaler: str) -> dict:
    """The hand-written way: everything in memory, bad rows silently dropped."""
    import joblib
    import pandas as pd

    clf, scale = joblib.load(model), joblib.load(scaler)
    start_mb = _peak_mb()
    clock, cpu = time.perf_counter(), time.process_time()
    df = pd.read_parquet(path)
    dates = pd.to_datetime(df[DATE_COLUMN], errors="coerce", format="ISO8601")
    df["days_since_purchase"] = (pd.Timestamp(as_of) - dates).dt.days
    ok = (
        df[[ID_COLUMN, *FEATURES]].notna().all(axis=1)
        & df["age"].between(AGE_MIN, AGE_MAX)
        & df["income"].between(0, np.finfo(np.float64).max)
        & (df["purchase_history"] >= 0)
        & (df["days_since_purchase"] >= 0)
    )
    df = df[ok]
    x = scale.transform(df[list(FEATURES)].to_numpy(np.float64))
    df["prediction"] = clf.predict(x)
    df["churn_probability"] = clf.predict_proba(x)[:, 1]
    df[[ID_COLUMN, "prediction", "churn_probability"]].to_parquet(out)
    seconds, cpu_s = time.perf_counter() - clock, time.process_time() - cpu
    return {
        "rows": int(ok.size),
        "seconds": seconds,
        "cpu_s": cpu_s,
        "peak_mb": _peak_mb(),
        "start_mb": start_mb,
    }


def run_limit(path: str, model: str, scaler: str) -> dict:
    """Reading the needed columns (the fastest way we know) + predict_proba, each timed alone."""
    import joblib

    from models.features import matrix_from_frame
    from models.frames import validate_frame

    clf, scale = joblib.load(model), joblib.load(scaler)
    start_mb = _peak_mb()
    clock, cpu = time.perf_counter(), time.process_time()
    table = pq.read_table(path, columns=list(INPUT_COLUMNS), read_dictionary=[DATE_COLUMN])
    read_s, read_cpu = time.perf_counter() - clock, time.process_time() - cpu
    x = matrix_from_frame(validate_frame(table, REFERENCE_AS_OF))
    clock, cpu = time.perf_counter(), time.process_time()
    clf.predict_proba(scale.transform(x))
    proba_s, proba_cpu = time.perf_counter() - clock, time.process_time() - cpu
    return {
        "rows": table.num_rows,
        "seconds": read_s + proba_s,
        "cpu_s": read_cpu + proba_cpu,
        "read_s": read_s,
        "proba_s": proba_s,
        "peak_mb": _peak_mb(),
        "start_mb": start_mb,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", help="model store tag (default: the latest churn model)")
    args = parser.parse_args(argv)

    from models.predictor import load_predictor
    from models.settings import SharedSettings

    predictor = load_predictor(args.model or SharedSettings().tag())
    stored = __import__("bentoml").models.get(predictor.tag)
    model_files = {"model": stored.path_of(MODEL_FILE), "scaler": stored.path_of(SCALER_FILE)}
    as_of = REFERENCE_AS_OF.isoformat()
    print(f"model {predictor.tag} ({predictor.metadata.get('classifier')}), as of {as_of}")
    print(f"load average at start: {_load()}")
    one, two = dataset(args.rows), dataset(2 * args.rows)
    results: dict[str, list[dict]] = {
        "script": [], "baseline": [], "limit": [], "script_2x": [], "explain": []
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        for i in range(args.repeat):
            out = f"{tmp}/out"
            results["script"].append(
                measure("script", path=str(one), out=out, tag=predictor.tag, as_of=as_of)
            )
            base = f"{tmp}/base.parquet"
            results["baseline"].append(
                measure("baseline", path=str(one), out=base, as_of=as_of, **model_files)
            )
            results["limit"].append(measure("limit", path=str(one), **model_files))
            results["script_2x"].append(
                measure("script", path=str(two), out=f"{tmp}/out2", tag=predictor.tag, as_of=as_of)
            )
            results["explain"].append(
                measure(
                    "script", path=str(one), out=out, tag=predictor.tag, as_of=as_of, explain=True
                )
            )
            print(f"  round {i + 1}/{args.repeat} done", file=sys.stderr)
    report(results)
    print(f"load average at end: {_load()} ({os.cpu_count()} CPUs)")
    return 0


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def report(results: dict[str, list[dict]]) -> None:
    med = {k: _median(v) for k, v in results.items()}
    head = ("approach", "rows", "seconds", "rows/s", "CPU s", "peak MB", "start MB")
    print("\n{:<12}{:>12}{:>10}{:>14}{:>8}{:>10}{:>10}".format(*head))
    for name, r in med.items():
        print(
            f"{name:<12}{r['rows']:>12,}{r['seconds']:>10.2f}{r['rows'] / r['seconds']:>14,.0f}"
            f"{r['cpu_s']:>8.2f}{r['peak_mb']:>10.0f}{r['start_mb']:>10.0f}"
        )
    rate = {k: r["rows"] / r["seconds"] for k, r in med.items()}
    s, b, lim, s2 = med["script"], med["baseline"], med["limit"], med["script_2x"]
    e = med["explain"]
    print(
        f"\nthroughput: script / baseline = {rate['script'] / rate['baseline']:.2f}x"
        " (target >= 1.5)"
        f"\n            script / limit    = {rate['script'] / rate['limit']:.0%} (target >= 60%)"
        f"\npeak memory: script / baseline = {s['peak_mb'] / b['peak_mb']:.0%} (target < 25%)"
        f"\n             script at 2x rows / at 1x = {s2['peak_mb'] / s['peak_mb']:.2f}x"
        f" (flat = 1.00)"
        f"\n--explain: rows/s with / without = {rate['explain'] / rate['script']:.2f}x"
        f" (target >= 0.7), peak memory with / without = {e['peak_mb'] / s['peak_mb']:.2f}x"
        f"\nCPU seconds: script / limit = {s['cpu_s'] / lim['cpu_s']:.2f}x,"
        f" script / baseline = {s['cpu_s'] / b['cpu_s']:.2f}x"
        f"\nlimit pieces: read {lim['read_s']:.2f}s + predict_proba {lim['proba_s']:.2f}s"
        f"\nscript cold start (imports + model load, not in its time): {s['startup_s']:.1f}s"
        f"; outputs: {s['scored']:,} scored + {s['rejected']:,} rejected = {s['rows']:,} rows in"
    )


def _median(runs: list[dict]) -> dict:
    """The run with the median time, with the median peak memory and CPU time."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    middle = dict(ordered[len(ordered) // 2])
    middle["peak_mb"] = statistics.median(r["peak_mb"] for r in runs)
    middle["cpu_s"] = statistics.median(r["cpu_s"] for r in runs)
    return middle


if __name__ == "__main__":
    raise SystemExit(main())
