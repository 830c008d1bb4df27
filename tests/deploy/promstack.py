"""Debian's Prometheus programs for the monitoring tests, and the rule files they test.

`promtool`, `prometheus` (the `prometheus` package) and `prometheus-node-exporter` are installed
with apt when missing where that can be done: as root (CI runs as root on Debian, so there the
tests always run). Elsewhere, without them and without root to install them, the tests skip,
saying so: never on CI, where a missing program fails.
"""

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
UNIT_TESTS = PROMETHEUS_DIR / "churn-rules.test.yaml"


def must_run() -> bool:
    return bool(os.environ.get("CI")) or os.geteuid() == 0


def debian_program(name: str, package: str) -> str:
    """The path of `name`, installed from the Debian `package` first if it is missing."""
    found = shutil.which(name)
    if found:
        return found
    if not must_run():
        pytest.skip(
            f"{name} is not installed (Debian package {package}) and this is neither root nor "
            "CI, so it cannot be apt-get installed here; CI (root on Debian) installs it"
        )
    install = ["apt-get", "install", "-y", "--no-install-recommends", "-o",
               "DPkg::Lock::Timeout=300", package]  # fmt: skip
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0:  # an empty or stale package list: fetch it once and try again
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"apt-get install {package} failed:\n{done.stderr[-3000:]}"
    found = shutil.which(name)
    assert found, f"{package} installed, yet no {name} on PATH"
    return found


def rule_files() -> list[Path]:
    """Every file under deploy/prometheus/ that holds rule groups."""
    return sorted(
        p
        for p in PROMETHEUS_DIR.glob("*.yaml")
        if "groups" in (yaml.safe_load(p.read_text()) or {})
    )


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def recordings() -> list[dict[str, Any]]:
    return [r for r in rules() if "record" in r]
