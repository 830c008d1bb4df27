"""deploy/'s rules and dashboard against a real Prometheus scraping the real programs.

A Prometheus server (Debian's `prometheus`) on loopback, scraping every second, with
deploy/prometheus/churn-rules.yaml loaded, scrapes: a served bento with a Redis cache; the
Kafka bridge on the test broker, calling that bento; and node_exporter's textfile collector
(Debian's `prometheus-node-exporter`) serving the file a real `churn-batch --metrics-textfile`
run wrote. After a little traffic (valid and invalid requests, a cache hit, a Redis outage,
results and dead letters on Kafka) and two scrapes and two rule evaluations past it, every
metric selector of every rule and every dashboard query returns data through Prometheus's HTTP
API, and every recording rule's series exists: a renamed metric or label value fails here.
"""

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from models.samples import AS_OF, event, records, request
from tests.batch.conftest import write_parquet
from tests.deploy import promstack
from tests.streaming.support import Kafka, Reader, metrics, read_until, start_bridge, unique
from tests.support import Process, port_open, start_bento, start_redis, start_server, wait_until

BIN = Path(sys.executable).parent
MISTYPED = "/predict/batches"


def prometheus_config(bento: Process, bridge: Process, node: Process) -> dict[str, Any]:
    """Static targets, with the example configuration's relabelling of the scraped series."""
    example = yaml.safe_load((promstack.PROMETHEUS_DIR / "prometheus.example.yaml").read_text())
    relabel = {
        c["job_name"]: c.get("metric_relabel_configs", []) for c in example["scrape_configs"]
    }

    def job(name: str, port: int) -> dict[str, Any]:
        targets = [{"targets": [f"127.0.0.1:{port}"]}]
        return {
            "job_name": name,
            "static_configs": targets,
            "metric_relabel_configs": relabel.get(name, []),
        }

    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in promstack.rule_files()],
        "scrape_configs": [
            job("churn-service", bento.port),
            job("churn-stream", bridge.port),
            job("node", node.port),
        ],
    }


def start_prometheus(tmp: Path, config: dict[str, Any], logs: Path) -> Process:
    program = promstack.debian_program("prometheus", "prometheus")
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))

    def command(port: int) -> list[str]:
        return [
            program,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]

    def ready(proc: Process) -> bool:
        try:
            return httpx.get(f"{proc.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return start_server("prometheus", command, logs, {}, ready, timeout=60)


def start_node_exporter(textfiles: Path, logs: Path) -> Process:
    program = promstack.debian_program("prometheus-node-exporter", "prometheus-node-exporter")

    def command(port: int) -> list[str]:
        return [
            program,
            f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={textfiles}",
        ]

    return start_server("node-exporter", command, logs, {})


def api(prometheus: Process, path: str, **params: str) -> Any:
    body = httpx.get(f"{prometheus.url}/api/v1/{path}", params=params, timeout=10).json()
    assert body["status"] == "success", body
    return body["data"]


def query(prometheus: Process, expr: str) -> list[dict[str, Any]]:
    return api(prometheus, "query", query=expr)["result"]


def when(stamp: str) -> float:
    """Unix time of one of Prometheus's RFC 3339 stamps (nanoseconds cut to microseconds)."""
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", stamp)
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def start_batch(tmp: Path, model_tag: str, textfiles: Path) -> subprocess.Popen[str]:
    """A real churn-batch run, big enough for PSI (500 rows at least), with one bad row; it
    runs while the servers start."""
    source = write_parquet(tmp / "in.parquet", [*records(600), {**records(1)[0], "age": -1.0}])
    command = [
        str(BIN / "churn-batch"), str(source), "--output", str(tmp / "out"), "--quiet",
        *("--model", model_tag, "--as-of", AS_OF.isoformat()),
        *("--metrics-textfile", str(textfiles / "churn-batch.prom")),
    ]  # fmt: skip
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)


def serve_traffic(bento: Process, redis: Process) -> None:
    """Valid and invalid requests, a cache hit, then Redis gone (a cache error)."""
    with httpx.Client(base_url=bento.url, timeout=30) as client:
        for i in range(5):
            assert client.post("/predict", json=request(customer_id=f"m-{i}")).status_code == 200
        assert client.post("/predict", json=request(age=-5)).status_code == 400
        assert client.post("/predict", content=b"{not json").status_code == 400
        assert client.get(MISTYPED).status_code == 404
        items = [request(customer_id="m-b1"), request(age="old")]
        assert client.post("/predict/batch", json={"requests": items}).status_code == 200

        def hit() -> bool:  # the first answer's cache write is asynchronous
            assert client.post("/predict", json=request(customer_id="m-0")).status_code == 200
            return sample(bento, "churn_cache_lookups_total", result="hit") > 0

        wait_until(hit, 30, "a cache hit")
        redis.stop()
        assert client.post("/predict", json=request(customer_id="m-x")).status_code == 200
        wait_until(lambda: sample(bento, "churn_cache_errors_total") > 0, 30, "a cache error")


def sample(proc: Process, name: str, **labels: str) -> float:
    return sum(
        v
        for (n, found), v in metrics(proc).items()
        if n == name and all((k, x) in found for k, x in labels.items())
    )


def stream_traffic(kafka: Kafka, topic: str, bridge: Process) -> None:
    """Valid events and two kinds of dead letter, all delivered and committed."""
    out, err = Reader(kafka.servers, f"{topic}-out"), Reader(kafka.servers, f"{topic}-err")
    try:
        events = [*(event(i) for i in range(6)), event(7, age=None), b"{not json"]
        sent = kafka.send(topic, events, one_per_batch=True)  # the test broker's lag is right so
        read_until([out, err], len(sent), 120, bridge)
        assert len(err.records) == 2
    finally:
        out.close()
        err.close()

    def committed_and_lag_known() -> bool:
        return sample(bridge, "churn_stream_commits_total") > 0 and any(
            n == "churn_stream_consumer_lag" for n, _ in metrics(bridge)
        )

    wait_until(committed_and_lag_known, 30, "a commit and the lag gauge")


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory,
    logs_dir: Path,
    service_env: dict[str, str],
    model_tag: str,
    kafka_broker: Process,
) -> Iterator[Process]:
    """Prometheus once it has scraped everything twice and evaluated every rule group twice
    after the traffic."""
    tmp = tmp_path_factory.mktemp("prometheus-live")
    textfiles = tmp / "textfile"
    textfiles.mkdir()
    started: list[Process] = []
    kafka = Kafka(kafka_broker.port)
    batch = start_batch(tmp, model_tag, textfiles)
    try:
        redis = start_redis(logs_dir)
        started.append(redis)
        env = {**service_env, "CHURN_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"}
        bento = start_bento(logs_dir, env)
        started.append(bento)
        topic = kafka.topic("monitoring")
        bridge = start_bridge(
            logs_dir, kafka, topic, unique("monitoring"), "--service-url", bento.url
        )
        started.append(bridge)
        wait_until(lambda: port_open(bridge.port), 60, "the bridge's metrics port")
        _, errors = batch.communicate(timeout=300)
        assert batch.returncode == 0, errors
        node = start_node_exporter(textfiles, logs_dir)
        started.append(node)
        prom = start_prometheus(tmp, prometheus_config(bento, bridge, node), logs_dir)
        started.append(prom)

        serve_traffic(bento, redis)
        stream_traffic(kafka, topic, bridge)
        traffic_done = time.time()

        def scraped_twice_since(t: float) -> bool:
            targets = api(prom, "targets", state="active")["activeTargets"]
            return len(targets) == 3 and all(
                x["health"] == "up" and when(x["lastScrape"]) > t + 1.1 for x in targets
            )

        wait_until(lambda: scraped_twice_since(traffic_done), 60, "two scrapes of every target")
        scraped = time.time()

        def evaluated_twice_since(t: float) -> bool:
            groups = api(prom, "rules")["groups"]
            return bool(groups) and all(when(g["lastEvaluation"]) > t + 1.1 for g in groups)

        wait_until(lambda: evaluated_twice_since(scraped), 60, "two evaluations of every group")
        yield prom
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.wait()
        for proc in reversed(started):
            proc.stop()
        kafka.close()


def test_every_rule_loads_and_evaluates_cleanly(prometheus):
    rules = [r for g in api(prometheus, "rules")["groups"] for r in g["rules"]]
    assert sorted(r["name"] for r in rules) == sorted(
        r.get("alert") or r["record"] for r in promstack.rules()
    )
    for rule in rules:
        assert rule["health"] == "ok", rule
    # Every target is up and the batch run exited 0: these stay quiet. (Others may be
    # pending, or firing on the small run's anomalies.)
    state = {r["name"]: r["state"] for r in rules if r["type"] == "alerting"}
    for quiet in ("ChurnServiceDown", "ChurnServiceAbsent", "ChurnStreamDown", "ChurnBatchFailed"):
        assert state[quiet] == "inactive", quiet


def test_every_recording_rule_has_data(prometheus):
    empty = [r["record"] for r in promstack.recordings() if not query(prometheus, r["record"])]
    assert empty == []


def test_every_selector_of_every_rule_has_data(prometheus):
    empty = {
        (rule.get("alert") or rule["record"], selector)
        for rule in promstack.rules()
        for selector in promstack.selectors(rule["expr"])
        if not query(prometheus, selector)
    }
    # The 5xx selectors have data in a run without a 5xx: BentoML starts each route's 200 and
    # 500 series at 0.
    assert empty == set()


def test_every_dashboard_query_has_data(prometheus):
    queries = promstack.dashboard_queries()
    assert queries
    # Grafana's $__rate_interval: at least four scrape intervals; a minute holds every sample.
    empty = [q for q in queries if not query(prometheus, q.replace("$__rate_interval", "1m"))]
    assert empty == []


def test_a_mistyped_path_makes_series_in_bentoml_but_not_in_prometheus(prometheus):
    # BentoML labels requests with the raw path; the example's metric relabelling drops all
    # but the API's routes and probes at scrape time.
    requests = query(prometheus, "bentoml_service_request_total")
    endpoints = {s["metric"]["endpoint"] for s in requests}
    assert {"/predict", "/predict/batch", "/readyz"} <= endpoints
    assert MISTYPED not in endpoints
    assert not [s for s in requests if "__tmp_route" in s["metric"]]
    (target,) = [
        t for t in api(prometheus, "targets", state="active")["activeTargets"]
        if t["labels"]["job"] == "churn-service"
    ]  # fmt: skip
    scraped = httpx.get(target["scrapeUrl"], timeout=10).text
    assert f'endpoint="{MISTYPED}"' in scraped  # BentoML's own /metrics still has it


def test_the_batch_runs_outcome_reaches_prometheus_as_written(prometheus):
    by_result = {
        s["metric"]["result"]: float(s["value"][1])
        for s in query(prometheus, "churn_batch_run_rows")
    }
    assert by_result == {"scored": 600, "rejected": 1}
    (code,) = query(prometheus, "churn_batch_run_exit_code")
    assert code["metric"]["job"] == "node"
    assert float(code["value"][1]) == 0
