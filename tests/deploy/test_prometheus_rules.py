"""deploy/prometheus/'s rules: valid for promtool, and every alert unit-tested with it.

`promtool test rules` runs churn-rules.test.yaml: input series in, the recorded values and the
alerts (labels and rendered annotations) out, at chosen times. That every alert has a case where
it fires and one where it stays quiet is checked here, so a new alert without tests fails.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy import manifests as m
from tests.deploy import promstack
from tests.deploy.test_manifests import rendered

BIN = Path(sys.executable).parent


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = promstack.debian_program("promtool", "prometheus")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)


def test_promtool_checks_every_rule_file():
    files = [str(p) for p in promstack.rule_files()]
    assert files, "no rule file under deploy/prometheus/"
    done = promtool("check", "rules", *files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(promstack.rules())} rules found" in done.stdout, done.stdout


def test_promtools_unit_tests_pass():
    done = promtool("test", "rules", str(promstack.UNIT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout


def test_the_unit_tests_cover_every_rule_file_and_every_alert_both_ways():
    tests = yaml.safe_load(promstack.UNIT_TESTS.read_text())
    listed = {(promstack.PROMETHEUS_DIR / f).resolve() for f in tests["rule_files"]}
    assert listed == {p.resolve() for p in promstack.rule_files()}
    cases = [case for test in tests["tests"] for case in test.get("alert_rule_test", [])]
    for alert in (a["alert"] for a in promstack.alerts()):
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{alert}: no case where it stays quiet"


def test_every_alert_says_how_bad_and_links_its_runbook():
    runbooks = (promstack.PROMETHEUS_DIR.parents[1] / "docs" / "monitoring.md").read_text().lower()
    for alert in promstack.alerts():
        assert alert["labels"]["severity"] in ("critical", "warning"), alert["alert"]
        page, _, anchor = alert["annotations"]["runbook"].partition("#")
        assert page == "docs/monitoring.md", alert["alert"]
        assert anchor == alert["alert"].lower(), alert["alert"]
        assert f"### {alert['alert'].lower()}" in runbooks, f"{alert['alert']}: no runbook"


def test_yamllint_strict_passes_on_the_prometheus_files():
    config = promstack.PROMETHEUS_DIR.parent / ".yamllint.yaml"
    files = sorted(map(str, promstack.PROMETHEUS_DIR.glob("*.yaml")))
    lint = subprocess.run(
        [str(BIN / "yamllint"), "--strict", "-c", str(config), *files],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_kustomization_ships_the_rules_verbatim_in_a_configmap():
    (configmap,) = [
        d for d in rendered()
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "churn-prometheus-rules"
    ]  # fmt: skip
    assert configmap["data"] == {p.name: p.read_text() for p in promstack.rule_files()}


def test_the_dashboard_is_well_formed_and_shipped_in_a_configmap():
    (path,) = sorted(promstack.GRAFANA_DIR.glob("*.json"))
    dashboard = json.loads(path.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    (configmap,) = [
        d for d in rendered()
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "churn-grafana-dashboard"
    ]  # fmt: skip
    assert configmap["metadata"]["labels"] == {"grafana_dashboard": "1"}
    assert configmap["data"] == {path.name: path.read_text()}


def test_selectors_finds_each_metric_of_an_expression_and_nothing_else():
    # The live test checks these selectors for data: what it reads out of an expression.
    expr = """histogram_quantile(0.99, sum by (job, le) (rate(
        a_bucket{job="x", endpoint=~"/predict(/batch)?"}[5m]))) > 0.5
        and on (job) (time() - b_seconds > 26 * 3600) or max by (f) (c:d:rate5m) * 0"""
    assert promstack.selectors(expr) == [
        'a_bucket{job="x", endpoint=~"/predict(/batch)?"}',
        "b_seconds",
        "c:d:rate5m",
    ]


def test_the_example_scrape_config_names_the_jobs_the_rules_select():
    # Debian's promtool is built without Kubernetes discovery, so it cannot load the example;
    # its job names and file path are what the rules and the ConfigMap depend on.
    example = yaml.safe_load((promstack.PROMETHEUS_DIR / "prometheus.example.yaml").read_text())
    jobs = {c["job_name"] for c in example["scrape_configs"]}
    selected = {
        match for rule in promstack.rules() for match in re.findall(r'job="([^"]+)"', rule["expr"])
    }
    assert selected == jobs == {m.SERVICE, m.STREAM}
    for name in jobs:
        labels = m.resource("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == name
    assert [Path(f).name for f in example["rule_files"]] == [p.name for p in promstack.rule_files()]
    for config in example["scrape_configs"]:  # kept by the pods' own label
        (keep,) = [
            r for r in config["relabel_configs"]
            if r["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
        ]  # fmt: skip
        assert keep == {**keep, "action": "keep", "regex": config["job_name"]}
