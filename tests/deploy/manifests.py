"""deploy/'s Kubernetes manifests as data, and the facts the code holds about them.

The environment variable names each program reads come from its settings class (the source of
truth); nothing here lists them a second time.
"""

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from models.settings import SharedSettings
from serving.settings import ServiceSettings
from streaming.settings import StreamSettings
from tests.support import ROOT

DEPLOY = ROOT / "deploy"
SERVICE, STREAM, BATCH = "churn-service", "churn-stream", "churn-batch"
# Which settings class each container's program reads (batch/predict.py uses the shared one).
SETTINGS: dict[str, type[BaseSettings]] = {
    SERVICE: ServiceSettings,
    STREAM: StreamSettings,
    BATCH: SharedSettings,
}
OUR_PREFIX = "CHURN_"


def manifest_files() -> list[Path]:
    """deploy/*.yaml but kustomization.yaml (its subfolders hold Prometheus and Grafana files)."""
    return sorted(
        p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml" and p.name[0] != "."
    )


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())


def resources() -> list[dict[str, Any]]:
    docs = []
    for path in manifest_files():
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def resource(kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    return found


def workloads() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container of every Deployment and CronJob."""
    for r in resources():
        if r["kind"] in ("Deployment", "CronJob"):
            for c in pod_spec(r)["containers"]:
                yield r, c


def env_names_by_field(settings: type[BaseSettings]) -> dict[str, set[str]]:
    """The variables a settings class reads under our prefix, per field: the field's aliases,
    or the class's env_prefix + its name (pydantic-settings matches them case-insensitively)."""
    prefix = settings.model_config.get("env_prefix", "")
    by_field = {}
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names = {c for c in alias.choices if isinstance(c, str)}
        elif isinstance(alias, str):
            names = {alias}
        else:
            names = {f"{prefix}{name}"}
        by_field[name] = {n.upper() for n in names if n.upper().startswith(OUR_PREFIX)}
    return by_field


def env_names(settings: type[BaseSettings]) -> set[str]:
    return set().union(*env_names_by_field(settings).values())


def secret_env_names(settings: type[BaseSettings]) -> set[str]:
    """The variables of fields whose values are secrets: typed SecretStr, or named token(s)."""
    by_field = env_names_by_field(settings)
    return {
        env
        for name, field in settings.model_fields.items()
        if "SecretStr" in repr(field.annotation) or re.search(r"tokens?$", name)
        for env in by_field[name]
    }


def settings_from(
    workload: dict[str, Any], c: dict[str, Any], settings: type[BaseSettings]
) -> BaseSettings:
    """The settings the container's program would read from the container's environment."""
    ours = env_values(workload, c)
    rest = {k: v for k, v in os.environ.items() if not k.startswith(OUR_PREFIX)}
    with mock.patch.dict(os.environ, {**rest, **ours}, clear=True):
        return settings()


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def env_values(workload: dict[str, Any], c: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would set it: literal values, the downward
    API's resource fields (rounded up by the divisor), and a stand-in for each Secret key."""
    values = {}
    for var in c.get("env", []):
        source = var.get("valueFrom", {})
        if "value" in var:
            values[var["name"]] = var["value"]
        elif "secretKeyRef" in source:
            values[var["name"]] = f"secret-{source['secretKeyRef']['key']}"
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            (target,) = [
                x for x in pod_spec(workload)["containers"] if x["name"] == ref["containerName"]
            ]
            kind, resource_name = ref["resource"].split(".")
            quantity = target["resources"][kind][resource_name]
            divisor = cpu_cores(str(ref.get("divisor", "1")))
            values[var["name"]] = str(math.ceil(cpu_cores(str(quantity)) / divisor))
        else:
            raise AssertionError(f"{var['name']}: a source this test does not model: {source}")
    return values


def emptydir_mounts(workload: dict[str, Any], c: dict[str, Any]) -> list[str]:
    """Mount paths of the container's emptyDir volumes (its writable places)."""
    empty = {v["name"] for v in pod_spec(workload).get("volumes", []) if "emptyDir" in v}
    return [m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] in empty]


def http_probe_paths(c: dict[str, Any]) -> set[str]:
    probes = [c.get(k) for k in ("startupProbe", "livenessProbe", "readinessProbe")]
    return {p["httpGet"]["path"] for p in probes if p and "httpGet" in p}


def prestop_seconds(c: dict[str, Any]) -> float:
    """How long the preStop hook holds the pod: `sleep N` (exec) or the sleep action."""
    hook = c["lifecycle"]["preStop"]
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook["exec"]["command"]
    assert command[0] == "sleep", command
    assert len(command) == 2, command
    return float(command[1])
