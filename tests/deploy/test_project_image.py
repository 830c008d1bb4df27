"""The project's image (deploy/Containerfile: the bridge and the batch job), built and run.

Built with `buildah bud --isolation chroot` from the repository root as deploy/README.md says,
on the local Debian base (base_image.py) instead of the registry's python:3.11-slim, then each
program the manifests run is started in it with `buildah run`. Needs root, buildah and
debootstrap, like test_image.py: skips elsewhere saying why, fails instead on CI.
"""

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch import predict as batch_predict
from tests.deploy import base_image, image
from tests.deploy import manifests as m
from tests.support import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def project_image(logs_dir: Path) -> Iterator[str]:
    log = logs_dir / "project-image-build.log"
    base_image.require_tools(log)
    base = base_image.base_image(log)
    name = f"localhost/churn-serving-test:{uuid.uuid4().hex[:12]}"
    cmd = ["buildah", "bud", "--isolation", "chroot", f"--build-arg=BASE_IMAGE={base}"]
    started = time.monotonic()
    base_image.run([*cmd, "-f", "deploy/Containerfile", "-t", name, "."], log, 1800, cwd=ROOT)
    try:
        image.FIGURES["project image: buildah bud"] = f"{time.monotonic() - started:.0f} s"
        image.FIGURES["project image size (buildah images)"] = image.image_size(name)
        yield name
    finally:
        image.remove_image(name)


def run_in(name: str, *command: str) -> subprocess.CompletedProcess[str]:
    """`command` in a working container of the image, as its USER, with its environment."""
    c = subprocess.run(
        ["buildah", "from", "--pull=never", name], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        cmd = ["buildah", "run", "--isolation", "chroot", c, "--", *command]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["buildah", "rm", c], capture_output=True)


def test_the_image_runs_as_the_manifests_user(project_image: str):
    uids = {
        m.pod_spec(m.resource(kind, name))["securityContext"]["runAsUser"]
        for kind, name in (("Deployment", m.STREAM), ("CronJob", m.BATCH))
    }
    got = run_in(project_image, "python3", "-c", "import os; print(os.getuid())")
    assert got.returncode == 0, got.stderr
    assert {int(got.stdout)} == uids
    assert uids != {0}


def test_the_bridge_starts_in_the_image(project_image: str):
    (program,) = m.container(m.resource("Deployment", m.STREAM), m.STREAM)["command"]
    got = run_in(project_image, program, "--help")
    assert got.returncode == 0, got.stderr
    assert "usage:" in got.stdout


def test_the_batch_job_exits_as_the_dag_expects_on_missing_input(project_image: str):
    """The day's input missing: exit 2 (EXIT_USAGE), which the CronJob fails without a retry."""
    got = run_in(
        project_image,
        m.BATCH,
        "--output=/tmp/out",
        "--fail-on-anomaly",
        "/nonexistent/*.parquet",
    )
    assert got.returncode == batch_predict.EXIT_USAGE, got.stdout + got.stderr
