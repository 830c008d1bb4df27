"""`python -m benchmarks.streaming` (`make bench-streaming`): the Kafka bridge against baselines.

In one run, on a private broker (tansu), a private model store and a served bento:
  (a) the bridge, micro-batched, calling the served bento (`python -m streaming.bridge`);
  (b) our users' way: one in-process model call per message;
  (c) one HTTP call to the bento per message (fewer events: it is slow);
  (d) the ceiling: a pass-through that decodes, re-produces and commits, with no model;
  (e) the bridge with --in-process: the model from the store, no bento.
Throughput: each drains the same backlog (`--events`, 3 partitions) in its own consumer group;
msg/s is counted between its first and last result (output record timestamps), so process start
and group join are left out. CPU per message, from the first commit to the last, is counted for
the variant's process, the bento and the broker: on a machine whose cores are all busy, the
ratio of two variants' total CPU per message bounds the ratio of their msg/s. Latency: each then
gets a fresh topic fed at `--paced-rate` msg/s, and end-to-end latency is the result's record
time minus the event's record time.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from benchmarks.cpu import cpu_seconds
from streaming.settings import StreamSettings
from tests.support import ROOT, Process, spawn, start_bento, start_kafka, wait_until

AS_OF = date(2026, 6, 30)
T = TypeVar("T")
VARIANTS = {
    "pass-through (d, ceiling)": "passthrough",
    "bridge, micro-batched (a)": "bridge",
    "per-message in-process (b)": "per-message",
    "per-message HTTP (c)": "per-message-http",
    "bridge --in-process (e)": "bridge-in-process",
}


def events(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    from models.data import synthetic_customers

    frame = synthetic_customers(n, seed=seed, as_of=AS_OF)
    cols = ["customer_id", "age", "income", "purchase_history", "last_purchase_date"]
    return [
        (row[0].encode(), json.dumps(dict(zip(cols, row, strict=True))).encode())
        for row in frame[cols].astype(object).itertuples(index=False)
    ]


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.env = {"BENTOML_HOME": str(work / "bentoml"), "CHURN_AS_OF": AS_OF.isoformat()}
        self.kafka = start_kafka(work)
        self.servers = f"127.0.0.1:{self.kafka.port}"
        self.admin = KafkaAdminClient(bootstrap_servers=self.servers)
        self.producer = KafkaProducer(bootstrap_servers=self.servers, acks="all", linger_ms=5)
        self.bento: Process | None = None

    def start_bento(self) -> None:
        train = [sys.executable, "-m", "models.train", "--rows", "20000"]
        train += ["--classifier", "logistic_regression"]
        env = {**os.environ, **self.env}
        subprocess.run(train, cwd=ROOT, env=env, check=True, capture_output=True)
        self.bento = start_bento(self.work, self.env)

    def topic(self, name: str) -> str:
        spec = {"num_partitions": self.args.partitions, "replication_factor": 1}
        self.admin.create_topics({name: spec}, wait_for_metadata=True)
        return name

    def produce(self, topic: str, batch: list[tuple[bytes, bytes]], rate: float = 0) -> dict:
        """Send `batch`, optionally paced; returns {(partition, offset): record time in ms}."""
        started, futures = time.monotonic(), []
        for i, (key, value) in enumerate(batch):
            if rate and (ahead := started + i / rate - time.monotonic()) > 0:
                time.sleep(ahead)
            futures.append(self.producer.send(topic, key=key, value=value))
        self.producer.flush()
        return {(m.partition, m.offset): m.timestamp for m in (f.get() for f in futures)}

    def launch(self, kind: str, topic: str, group: str) -> Process:
        common = [
            *("--bootstrap-servers", self.servers, "--input-topic", topic),
            *("--output-topic", f"{group}-out", "--error-topic", f"{group}-err"),
            *("--group", group, "--as-of", AS_OF.isoformat(), "--session-timeout-ms", "6000"),
            *("--service-url", self.bento.url if self.bento else ""),
            *("--compression", self.args.compression),
        ]
        if kind.startswith("bridge"):
            batching = ["--max-batch", str(self.args.max_batch)]
            batching += ["--max-wait-ms", str(self.args.max_wait_ms)]
            cmd = [sys.executable, "-m", "streaming.bridge", *common, "--metrics-port", "0"]
            cmd += batching + (["--in-process"] if kind == "bridge-in-process" else [])
        else:
            cmd = [sys.executable, "-m", "benchmarks.streaming_baselines", kind, *common]
        return spawn(kind, cmd, 0, self.work / f"{group}.log", self.env)

    def committed(self, group: str) -> dict[int, int]:
        offsets = self.admin.list_group_offsets({group: None}).get(group, {})
        return {tp.partition: meta.offset for tp, meta in offsets.items()}

    def cpu(self, proc: Process) -> dict[str, float]:
        """CPU seconds so far of the variant's process, the bento and the broker."""
        bento = cpu_seconds(self.bento.proc.pid) if self.bento else 0.0
        broker = cpu_seconds(self.kafka.proc.pid)
        return {"client": cpu_seconds(proc.proc.pid), "bento": bento, "broker": broker}

    def run_until_committed(
        self,
        proc: Process,
        group: str,
        ends: dict[int, int],
        first_commit: Callable[[int], None] | None = None,
    ) -> None:
        """Wait until `group` has committed `ends`; `first_commit(messages committed)` is called
        when the first commit is seen."""

        def done() -> bool:
            nonlocal first_commit
            if proc.proc.poll() is not None:
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
            got = self.committed(group)
            if first_commit is not None and any(o > 0 for o in got.values()):
                first_commit(sum(got.values()))
                first_commit = None
            return all(got.get(p, -1) >= end for p, end in ends.items())

        wait_until(done, self.args.timeout, f"{proc.name} draining {group}")

    def results(self, topic: str, expected: int) -> list[tuple[int, int, int]]:
        """(record time ms, source partition, source offset) of every result on `topic`."""
        consumer = KafkaConsumer(bootstrap_servers=self.servers, enable_auto_commit=False)
        consumer.assign([TopicPartition(topic, p) for p in range(self.args.partitions)])
        consumer.seek_to_beginning()
        out: list[tuple[int, int, int]] = []
        deadline = time.monotonic() + 60
        # tansu's end offsets are wrong for batched topics: read until nothing more comes.
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=1500)
            if not polled and len(out) >= expected:
                break
            for records in polled.values():
                for r in records:
                    source = json.loads(r.value)["source"]
                    out.append((r.timestamp, source["partition"], source["offset"]))
        consumer.close()
        return out

    def drain(
        self, kind: str, topic: str, ends: dict[int, int], tag: str
    ) -> tuple[float, dict[str, float]]:
        """msg/s, and CPU microseconds per message of each process."""
        group = f"drain-{kind}-{tag}"
        proc = self.launch(kind, topic, group)
        marks: list[tuple[int, dict[str, float]]] = []
        try:
            self.run_until_committed(
                proc, group, ends, lambda done: marks.append((done, self.cpu(proc)))
            )
            last = self.cpu(proc)
        finally:
            proc.stop(signal.SIGTERM)
        done, first = marks[0]
        n = sum(ends.values()) - done
        # A drain over before its first commit was seen has no window to count: not a zero.
        cpu = {k: 1e6 * (last[k] - first[k]) / n if n > 0 else float("nan") for k in last}
        got = self.results(f"{group}-out", sum(ends.values()))
        unique = {(p, o) for _, p, o in got}
        if len(unique) != sum(ends.values()):
            raise RuntimeError(f"{kind}: {len(unique)} results for {sum(ends.values())} events")
        times = sorted(t for t, _, _ in got)
        return (len(times) - 1) / max((times[-1] - times[0]) / 1000, 1e-3), cpu

    def paced(self, kind: str) -> tuple[float, float]:
        group = f"paced-{kind}"
        topic = self.topic(f"live-{kind}")
        proc = self.launch(kind, topic, group)
        try:
            # Warm up (group join, first connection), then measure.
            warm = self.produce(topic, events(20, seed=7))
            self.run_until_committed(proc, group, _ends(warm))
            n = int(self.args.paced_rate * self.args.paced_seconds)
            sent = self.produce(topic, events(n, seed=8), rate=self.args.paced_rate)
            self.run_until_committed(proc, group, _ends({**warm, **sent}))
        finally:
            proc.stop(signal.SIGTERM)
        first = {}
        for t, p, o in self.results(f"{group}-out", len(warm) + len(sent)):
            first.setdefault((p, o), t)
        lat = sorted(first[k] - t for k, t in sent.items())
        return statistics.median(lat), lat[min(len(lat) - 1, int(0.99 * len(lat)))]

    def close(self) -> None:
        self.producer.close()
        self.admin.close()
        if self.bento:
            self.bento.stop()
        self.kafka.stop()


def _ends(sent: dict[tuple[int, int], int]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for p, o in sent:
        ends[p] = max(ends.get(p, 0), o + 1)
    return ends


def fast_crc() -> bool:
    from kafka.record import util

    return util._crc32c is not util.crc32c_py


def timed(what: str, fn: Callable[[], T]) -> T:
    started = time.monotonic()
    print(f"  {what} ...", end="", flush=True)
    value = fn()
    print(f" {time.monotonic() - started:.1f}s", flush=True)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="backlog for (a), (b), (d)")
    parser.add_argument("--http-events", type=int, default=3_000, help="backlog for (c)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=500, help="the bridge's --max-batch")
    parser.add_argument("--max-wait-ms", type=int, default=20, help="the bridge's --max-wait-ms")
    parser.add_argument("--paced-rate", type=float, default=100, help="msg/s for latency")
    parser.add_argument("--paced-seconds", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=1, help="drains per variant (median)")
    parser.add_argument(
        "--compression", default="auto", help="every variant's result codec (the bridge's flag)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per drain")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="churn-bench-streaming-"))
    print(f"streaming benchmark: work dir {work}; {os.cpu_count()} CPUs", flush=True)
    bench = Bench(args, work)
    rates: dict[str, list[float]] = {kind: [] for kind in VARIANTS.values()}
    cpus: dict[str, list[dict[str, float]]] = {kind: [] for kind in VARIANTS.values()}
    latency: dict[str, tuple[float, float]] = {}
    try:
        timed("train a model, serve the bento", bench.start_bento)
        topics = {"main": bench.topic("events"), "http": bench.topic("events-http")}
        counts = {"main": args.events, "http": args.http_events}
        started = time.monotonic()
        ends = {w: _ends(bench.produce(topics[w], events(n, seed=1))) for w, n in counts.items()}
        print(f"  produced the backlogs in {time.monotonic() - started:.1f}s", flush=True)

        def drain(kind: str, which: str, run: int) -> None:
            what = f"{kind}: drain {counts[which]} events"
            rate, cpu = timed(what, lambda: bench.drain(kind, topics[which], ends[which], str(run)))
            rates[kind].append(rate)
            cpus[kind].append(cpu)

        # The bridge and its ceiling alternate, so both see the same load on a shared machine.
        for run in range(args.repeats):
            drain("passthrough", "main", run)
            drain("bridge", "main", run)
        drain("per-message", "main", 0)
        drain("per-message-http", "http", 0)
        drain("bridge-in-process", "main", 0)
        for kind in VARIANTS.values():
            what = f"{kind}: paced {args.paced_rate:g} msg/s"
            latency[kind] = timed(what, lambda k=kind: bench.paced(k))
    finally:
        bench.close()
    rows = []
    for label, kind in VARIANTS.items():
        n = counts["http" if kind == "per-message-http" else "main"]
        rows.append((label, n, statistics.median(rates[kind]), *latency[kind]))
    report(rows, args)
    report_cpu(cpus)
    return 0


def report(rows: list[tuple[str, int, float, float, float]], args: argparse.Namespace) -> None:
    ceiling, bridge = rows[0][2], rows[1][2]
    head = f"{'variant':<28}{'events':>8}{'msg/s':>9}{'x ceiling':>11}{'p50 ms':>9}{'p99 ms':>9}"
    print(f"\n{head}  (latency at {args.paced_rate:g} msg/s)")
    for label, n, rate, p50, p99 in rows:
        print(f"{label:<28}{n:>8}{rate:>9.0f}{rate / ceiling:>11.2f}{p50:>9.0f}{p99:>9.0f}")
    p99_gap = rows[1][4] - rows[0][4]
    print(f"\nbridge / pass-through = {bridge / ceiling:.2f} (target >= 0.8)")
    print(f"bridge / per-message in-process = {bridge / rows[2][2]:.2f}x (target >= 1.5)")
    print(f"bridge / per-message HTTP = {bridge / rows[3][2]:.1f}x")
    print(f"bridge --in-process / bridge = {rows[4][2] / bridge:.2f}x")
    print(f"bridge p99 - pass-through p99 = {p99_gap:+.0f} ms (target <= +50)")
    print(f"bridge: --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms}")
    print(f"msg/s: median of {args.repeats} alternating drains for (a) and (d), one for the others")
    print(
        f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        f"kafka-python CRC32C: {'C (crc32c package)' if fast_crc() else 'pure Python'}; "
        f"result compression: {StreamSettings(compression=args.compression).compression}"
    )


def report_cpu(cpus: dict[str, list[dict[str, float]]]) -> None:
    """CPU per message of each process (medians), and the bound it puts on the bridge."""
    print(f"\n{'CPU us per message':<28}{'variant':>9}{'bento':>9}{'broker':>9}{'total':>9}")
    total = {}
    for label, kind in VARIANTS.items():
        med = {k: statistics.median(c[k] for c in cpus[kind]) for k in cpus[kind][0]}
        total[kind] = sum(med.values())
        print(
            f"{label:<28}{med['client']:>9.0f}{med['bento']:>9.0f}{med['broker']:>9.0f}"
            f"{total[kind]:>9.0f}"
        )
    print(
        f"with every core busy, CPU alone bounds bridge / pass-through at "
        f"{total['passthrough'] / total['bridge']:.2f}"
        f" (the bridge needs {total['bridge'] - total['passthrough']:.0f} us more per message)"
    )


if __name__ == "__main__":
    sys.exit(main())
