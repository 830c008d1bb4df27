"""The bento's image: built by `bentoml containerize --backend buildah`, run on its entrypoint.

`podman run` cannot start containers on these machines (the OCI runtime may not set rlimits),
but `buildah run --isolation chroot` runs a command in an image's filesystem, with its
environment and USER, and no network namespace: the server listens on the host's loopback, on
a free port given by BentoML's BENTOML_PORT (and BENTOML_HOST=127.0.0.1).

The container is run as the Deployment runs it (deploy/churn-service-deployment.yaml): the root
filesystem read-only (each top-level directory of the image bind-mounted read-only onto itself;
/run stays as buildah makes it, root-owned), a host directory at each path where the Deployment
mounts an emptyDir, and the Deployment's environment.

buildah does not pass SIGTERM on to the command (it kills its helper and leaves the command
running), so signals go to the container's main process, as a kubelet's do: the process the
entrypoint execs, whose exit status `buildah run` returns.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.deploy.base_image import run
from tests.support import process_tree, wait_until

BUILD_TIMEOUT = 1800
FIGURES: dict[str, str] = {}  # printed at the end of the run (tests/deploy/conftest.py)
NOT_READ_ONLY = {"dev", "proc", "sys", "run"}  # buildah's own mounts, and /run/.containerenv


def build_env(home: str) -> dict[str, str]:
    return {**os.environ, "BENTOML_HOME": home, "BUILDAH_ISOLATION": "chroot"}


def containerize(tag: str, image: str, home: str, log: Path) -> float:
    """`bentoml containerize TAG --backend buildah -t IMAGE`; the seconds it took."""
    cmd = [sys.executable, "-m", "bentoml", "containerize", tag, "--backend", "buildah"]
    started = time.monotonic()
    run([*cmd, "--image-tag", image], log, BUILD_TIMEOUT, env=build_env(home))
    return time.monotonic() - started


def image_config(image: str) -> dict:
    out = subprocess.run(
        ["buildah", "inspect", "--type", "image", image], capture_output=True, check=True
    )
    return json.loads(out.stdout)["OCIv1"]["config"]


def image_size(image: str) -> str:
    out = subprocess.run(["buildah", "images", "--json", image], capture_output=True, check=True)
    return json.loads(out.stdout)[0]["size"]


def remove_image(image: str) -> None:
    subprocess.run(["buildah", "rmi", "--force", image], capture_output=True)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def uid_of(pid: int) -> int:
    """The real uid of a process (the first field of `Uid:` in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise ValueError(f"no Uid in /proc/{pid}/status")


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


@dataclass
class Container:
    """A working container of the image, running its entrypoint under `buildah run`."""

    name: str
    rootfs: Path  # the container's filesystem, mounted on the host
    proc: subprocess.Popen[bytes]  # `buildah run`
    port: int
    log: Path
    started: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def main_pid(self) -> int | None:
        """The process the entrypoint became (PID 1 in a pod): buildah-chroot-exec's child."""
        tree = process_tree(self.proc.pid)
        helpers = [p for p in tree if _cmdline(p)[:1] == ["buildah-chroot-exec"]]
        children = [p for p in tree if helpers and _parent(p) == helpers[0]]
        return children[0] if children else None

    def server_pids(self) -> list[int]:
        """The main process and every process under it (BentoML's workers)."""
        main = self.main_pid()
        return process_tree(main) if main else []

    def wait_ready(self, timeout: float = 180) -> float:
        """Seconds from `buildah run` to /readyz answering 200."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the image's entrypoint exited:\n{self.log_tail()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, "the image's server")
        return time.monotonic() - self.started

    def terminate(self, timeout: float = 90) -> int:
        """SIGTERM to the main process, as the kubelet sends it; `buildah run`'s exit status."""
        main = self.main_pid()
        if main is None:
            raise RuntimeError(f"no main process in the container:\n{self.log_tail()}")
        os.kill(main, signal.SIGTERM)
        return self.proc.wait(timeout)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def remove(self) -> None:
        """Kill whatever still runs (buildah leaves its command running when killed itself),
        then remove the working container."""
        for pid in reversed(process_tree(self.proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        subprocess.run(["buildah", "umount", self.name], capture_output=True)
        subprocess.run(["buildah", "rm", self.name], capture_output=True)


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def start(
    image: str, port: int, env: dict[str, str], volumes: dict[str, Path], log: Path
) -> Container:
    """The image's entrypoint (and Cmd) with a read-only root but for `volumes` (container path:
    host directory, world-writable like an emptyDir) and `env` on top of the image's,
    listening on 127.0.0.1:`port`."""
    name = f"churn-image-test-{uuid.uuid4().hex[:12]}"
    run(["buildah", "from", "--pull=never", "--name", name, image], log, 120)
    rootfs = Path(run(["buildah", "mount", name], log, 60).strip())
    for path, host in volumes.items():  # mount points, as the container runtime makes them
        (rootfs / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        host.mkdir(parents=True, exist_ok=True)
        host.chmod(0o777)
    read_only = [
        f"--volume={entry}:/{entry.name}:ro"
        for entry in sorted(rootfs.iterdir())
        if entry.is_dir() and not entry.is_symlink()
        and entry.name not in NOT_READ_ONLY and f"/{entry.name}" not in volumes
    ]  # fmt: skip
    config = image_config(image)
    command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    options = [*read_only, *(f"--volume={host}:{path}" for path, host in volumes.items())]
    server = {**env, "BENTOML_PORT": str(port), "BENTOML_HOST": "127.0.0.1"}
    options += [f"--env={k}={v}" for k, v in server.items()]
    cmd = ["buildah", "run", "--isolation", "chroot", *options, name, "--", *command]
    out = log.open("ab")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Container(name, rootfs, proc, port, log, started)
