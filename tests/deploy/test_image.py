"""The bento's image, built by `bentoml containerize --backend buildah` and run on its entrypoint.

The bento is built with the repo's bentofile.yaml, its base image set to a local Debian one
(base_image.py), and containerized as a user would; the image then runs as
deploy/churn-service-deployment.yaml runs it (image.py: read-only root, the Deployment's
emptyDirs and environment) without the tokens' Secret, so that the README's curl answers as it
is. Needs root, buildah and debootstrap (installed with apt when missing); skips elsewhere
saying why, and fails instead on CI. Prints the build time, the image size and the time from
start to ready.
"""

import contextlib
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.deploy import base_image, image
from tests.deploy import manifests as m
from tests.reliability.test_shutdown import holds_listener, read_by_the_server
from tests.serving.test_build import build_bento
from tests.support import ROOT, free_port, wait_until

# The first test builds the base image (once per machine) and the image: minutes.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

HELD = 4  # requests in flight when SIGTERM comes: all but their last byte read by the server
CLIENTS = 4  # load alongside


@dataclass(frozen=True)
class Built:
    tag: str
    info: dict
    image: str
    pinned: str  # the model tag bento.yaml pins


def deployment_env() -> tuple[dict[str, str], list[str]]:
    """The service container's environment as the Deployment sets it, less the Secret's
    variables, and its emptyDir mount paths."""
    deployment = m.resource("Deployment", m.SERVICE)
    c = m.container(deployment, m.SERVICE)
    secret = {v["name"] for v in c["env"] if "secretKeyRef" in v.get("valueFrom", {})}
    env = {k: v for k, v in m.env_values(deployment, c).items() if k not in secret}
    return env, m.emptydir_mounts(deployment, c)


def volumes(root: Path, paths: list[str]) -> dict[str, Path]:
    """A host directory per emptyDir mount path (the container's writable places)."""
    return {path: root / path.strip("/").replace("/", "-") for path in paths}


@pytest.fixture(scope="module")
def built(model_tag: str, logs_dir: Path, tmp_path_factory) -> Iterator[Built]:
    log = logs_dir / "image-build.log"
    base_image.require_tools(log)
    started = time.monotonic()
    base = base_image.base_image(log)
    image.FIGURES["base image"] = f"{base} ready in {time.monotonic() - started:.0f} s"
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    bentofile["docker"]["base_image"] = base
    path = tmp_path_factory.mktemp("bentofile") / "bentofile.yaml"
    path.write_text(yaml.safe_dump(bentofile, sort_keys=False))
    home = os.environ["BENTOML_HOME"]
    tag, info = build_bento(home, model_tag, path)
    name = f"localhost/churn-service-test:{tag.split(':')[1]}"
    seconds = image.containerize(tag, name, home, log)
    try:
        image.FIGURES["bentoml containerize --backend buildah"] = f"{seconds:.0f} s"
        image.FIGURES["image size (buildah images)"] = image.image_size(name)
        (service,) = info["services"]
        (model,) = service["models"]
        yield Built(tag, info, name, model["tag"])
    finally:
        image.remove_image(name)


@pytest.fixture(scope="module")
def served(built: Built, logs_dir: Path, tmp_path_factory) -> Iterator[image.Container]:
    env, writable = deployment_env()
    pod = volumes(tmp_path_factory.mktemp("pod"), writable)
    c = image.start(built.image, free_port(), env, pod, logs_dir / "image-run.log")
    try:
        ready = c.wait_ready()
        image.FIGURES["start to /readyz 200 (buildah run)"] = f"{ready:.1f} s"
        yield c
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            c.terminate(30)
        c.remove()


def test_the_bento_is_built_on_the_configured_base(built: Built):
    home = Path(os.environ["BENTOML_HOME"])
    name, version = built.tag.split(":")
    dockerfile = home / "bentos" / name / version / "env" / "docker" / "Dockerfile"
    base = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["docker"].get("base_image")
    assert base is None, "bentofile.yaml's default must stay BentoML's usual base"
    assert re.search(r"^FROM localhost/churn-debian-python:\S+ AS ", dockerfile.read_text(), re.M)


def test_ready_and_every_probe_path_answers(served: image.Container):
    c = m.container(m.resource("Deployment", m.SERVICE), m.SERVICE)
    for path in sorted(m.http_probe_paths(c)):
        assert httpx.get(f"{served.url}{path}", timeout=10).status_code == 200, path


def readme_curl() -> tuple[str, str, dict[str, str], str]:
    """Method, URL, headers and body of the README's `curl ... /predict` command."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"^(curl [^`]*?/predict\b[^`]*?)^```", text, re.M | re.S)
    assert found, "no curl of /predict in README.md"
    words = shlex.split(found.group(1))
    option = {words[i]: words[i + 1] for i in range(len(words) - 1) if words[i] in ("-X", "-d")}
    headers = dict(h.split(": ", 1) for i, h in enumerate(words[1:], 1) if words[i - 1] == "-H")
    (url,) = [w for w in words if w.startswith("http")]
    return option.get("-X", "POST"), url, headers, option["-d"]


def test_the_readmes_curl_answers_with_the_pinned_model(served: image.Container, built: Built):
    method, url, headers, body = readme_curl()
    here = urlsplit(url)._replace(netloc=f"127.0.0.1:{served.port}").geturl()
    response = httpx.request(method, here, headers=headers, content=body, timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_version"] == built.pinned
    assert answer["customer_id"] == json.loads(body)["customer_id"]


def test_bad_input_is_a_400_naming_the_field(served: image.Container):
    _, _, headers, body = readme_curl()
    bad = json.loads(body)
    bad["features"]["age"] = "forty-two"
    response = httpx.post(f"{served.url}/predict", headers=headers, json=bad, timeout=30)
    assert response.status_code == 400, response.text
    assert any("age" in e["loc"] for e in response.json()["detail"]), response.text


def _uid_of_user(rootfs: Path, user: str) -> int:
    for line in (rootfs / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if user in (fields[0], fields[2]):
            return int(fields[2])
    raise AssertionError(f"USER {user} is not in the image's /etc/passwd")


def test_the_server_runs_as_the_images_non_root_user(served: image.Container, built: Built):
    user = image.image_config(built.image)["User"]
    uid = _uid_of_user(served.rootfs, user)
    assert uid != 0
    # The Deployment's numeric runAsUser is that same user.
    pod = m.pod_spec(m.resource("Deployment", m.SERVICE))
    assert pod["securityContext"]["runAsUser"] == uid
    pids = served.server_pids()
    assert len(pids) >= 2, "no worker under the server"  # the server and its worker(s)
    assert {image.uid_of(pid) for pid in pids} == {uid}


def metrics_dirs(c: image.Container) -> set[str | None]:
    return {image.environ_of(pid).get("PROMETHEUS_MULTIPROC_DIR") for pid in c.server_pids()[1:]}


def test_bentoml_writes_only_to_the_deployments_emptydirs(served: image.Container):
    """The root is read-only, and BentoML keeps its home (metrics directory included) in the
    emptyDir the Deployment gives it, not in a temporary directory it falls back to."""
    env, writable = deployment_env()
    main = served.main_pid()
    assert main is not None
    mounts = {}
    for line in Path(f"/proc/{main}/mountinfo").read_text().splitlines():
        fields = line.split()
        mounts[fields[4]] = fields[5].split(",")
    for top in ("/app", "/home", "/usr", "/etc"):
        assert "ro" in mounts[top], f"{top} is writable: {mounts[top]}"
    assert env["BENTOML_HOME"] in writable
    assert metrics_dirs(served) == {f"{env['BENTOML_HOME']}/prometheus_multiproc_dir"}
    assert httpx.get(f"{served.url}/metrics", timeout=10).status_code == 200


def test_the_served_model_is_the_bentos(served: image.Container, built: Built):
    """BENTOML_HOME moved to an emptyDir: the model still comes from the bento."""
    versions = httpx.get(f"{served.url}/models/versions", timeout=10).json()
    assert versions["served"] == built.pinned
    assert [v["tag"] for v in versions["versions"]] == [built.pinned]


def test_the_image_has_the_deployments_port_and_prestop_command(
    served: image.Container, built: Built
):
    c = m.container(m.resource("Deployment", m.SERVICE), m.SERVICE)
    config = image.image_config(built.image)
    assert {f"{p['containerPort']}/tcp" for p in c["ports"]} <= set(config["ExposedPorts"])
    program = c["lifecycle"]["preStop"]["exec"]["command"][0]
    path = dict(e.split("=", 1) for e in config["Env"])["PATH"].split(":")
    assert any((served.rootfs / d.lstrip("/") / program).is_file() for d in path), program


@pytest.fixture(scope="module")
def pod_volumes(tmp_path_factory) -> dict[str, Path]:
    """The emptyDirs of one pod, kept across its containers' restarts."""
    return volumes(tmp_path_factory.mktemp("restarted-pod"), deployment_env()[1])


def test_sigterm_with_requests_in_flight_answers_them_and_exits_0(
    built: Built, logs_dir: Path, pod_volumes: dict[str, Path]
):
    env, _ = deployment_env()
    c = image.start(built.image, free_port(), env, pod_volumes, logs_dir / "image-sigterm.log")
    _, _, headers, body = readme_curl()
    raw = body.encode()
    request = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{c.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    ).encode() + raw
    lock, stop, phase = threading.Lock(), threading.Event(), ["load"]
    results: list[tuple[str, str, str]] = []  # (phase at start, phase at end, outcome)

    def client() -> None:
        with httpx.Client(base_url=c.url, timeout=60, headers={"connection": "close"}) as http:
            while not stop.is_set():
                with lock:
                    started = phase[0]
                try:
                    status = http.post("/predict", headers=headers, content=raw).status_code
                    outcome = "ok" if status == 200 else f"http {status}"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    results.append((started, phase[0], outcome))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    held: list[socket.socket] = []
    try:
        c.wait_ready()
        expected = httpx.post(f"{c.url}/predict", headers=headers, content=raw, timeout=30).json()
        workers = [p for p in c.server_pids()[1:] if holds_listener(p, c.port)]
        assert workers, "no worker holds the listening socket"
        for t in threads:
            t.start()
        wait_until(lambda: len(results) >= 50, 60, "load on the image's server")
        for _ in range(HELD):
            conn = socket.create_connection(("127.0.0.1", c.port), timeout=60)
            conn.sendall(request[:-1])
            held.append(conn)
        wait_until(lambda: read_by_the_server(c.port, held), 30, "the held requests read")
        with lock:
            main = c.main_pid()
            assert main is not None
            os.kill(main, signal.SIGTERM)  # as the kubelet sends it
            phase[0] = "signalled"
        draining = lambda: not any(holds_listener(p, c.port) for p in workers)  # noqa: E731
        wait_until(draining, 30, "the workers to stop accepting")
        answers = []
        for conn in held:
            conn.sendall(request[-1:])
            response = http.client.HTTPResponse(conn)
            response.begin()
            answers.append((response.status, json.loads(response.read())))
        code = c.proc.wait(60)
    finally:
        stop.set()
        for conn in held:
            conn.close()
        for t in threads:
            t.join(60)
        c.remove()
    assert code == 0, c.log_tail()
    for status, answer in answers:
        assert status == 200, answer
        assert answer["churn_probability"] == expected["churn_probability"]
    assert {outcome for _, ended, outcome in results if ended == "load"} == {"ok"}
    assert not [r for r in results if r[2].startswith("http 5")], results


def test_a_restarted_container_starts_on_its_pods_emptydirs(
    built: Built, logs_dir: Path, pod_volumes: dict[str, Path]
):
    """A container restarted in its pod finds the emptyDirs as the last one left them."""
    env, _ = deployment_env()
    log = logs_dir / "image-restart.log"
    metrics = pod_volumes[env["BENTOML_HOME"]] / "prometheus_multiproc_dir"
    if not any(metrics.glob("*.db")):  # the SIGTERM test did not run first: a first container
        first = image.start(built.image, free_port(), env, pod_volumes, log)
        try:
            first.wait_ready()
            assert first.terminate() == 0, first.log_tail()
        finally:
            first.remove()
    assert any(metrics.glob("*.db")), "the first container left no metrics files"
    c = image.start(built.image, free_port(), env, pod_volumes, log)
    try:
        c.wait_ready()
        assert metrics_dirs(c) == {f"{env['BENTOML_HOME']}/prometheus_multiproc_dir"}
        _, _, headers, body = readme_curl()
        assert httpx.post(f"{c.url}/predict", headers=headers, content=body).status_code == 200
        assert c.terminate() == 0, c.log_tail()
    finally:
        c.remove()
