"""Debian's Prometheus programs for the monitoring tests, and the rule files they test.

`promtool`, `prometheus` (the `prometheus` package) and `prometheus-node-exporter` are installed
with apt when missing where that can be done: as root (CI runs as root on Debian, so there the
tests always run). Elsewhere, without them and without root to install them, the tests skip,
saying so: never on CI, where a missing program fails.
"""

import json
import os
import re
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


# Names in a PromQL expression that are not metric names: operators, grouping keywords.
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
             "group_right", "bool", "offset", "inf", "nan"}  # fmt: skip
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")


def selectors(expr: str) -> list[str]:
    """The instant-vector selectors (`name{matchers}`) of a PromQL expression of ours.

    Enough of PromQL for deploy/'s expressions: label lists of by/on/... are dropped, a name
    followed by `(` is a function or an aggregation, durations start with a digit.
    """
    text = _GROUPING.sub(" ", expr)
    found = []
    for m in _NAME.finditer(text):
        name, matchers = m.group(1), m.group(2) or ""
        rest = text[m.end() :].lstrip()
        if name.lower() in _KEYWORDS or (not matchers and rest.startswith("(")):
            continue
        found.append(name + matchers)
    return found


def dashboard_queries() -> list[str]:
    """Every query of every panel of every dashboard under deploy/grafana/."""
    return [
        target["expr"]
        for path in sorted(GRAFANA_DIR.glob("*.json"))
        for panel in json.loads(path.read_text())["panels"]
        for target in panel.get("targets", [])
    ]
