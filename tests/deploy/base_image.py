"""The tools and the base image the image tests need, on a machine without a registry.

No registry is reachable here, so BentoML's usual base (python:3.11-slim) cannot be pulled: the
tests build the bento on a Debian bookworm base made locally with debootstrap and imported with
buildah. The base has what BentoML's generated Containerfile expects of a custom base image:

- python3 of the bento's `python_version` (bookworm's is 3.11; `uv venv --python 3.11` finds it
  rather than downloading one), pip on PATH (to install uv), bash, groupadd/useradd, apt-get
  (BentoML's debian recipe runs it), and PATH declared in the image (the Containerfile's
  `ENV PATH=/app/.venv/bin:${PATH}` would otherwise drop /usr/bin);
- pip allowed to install into the system Python: Debian's EXTERNALLY-MANAGED marker (PEP 668)
  is removed, as PEP 668 suggests for container images;
- the package index reached as the host reaches it: the host's CA certificates (an intercepting
  proxy's CA, if any) and SSL_CERT_FILE, which uv reads (it ignores the system store otherwise),
  and the host pip's index-url, if it sets one.

The root filesystem is cached as a tarball under ~/.cache/churn-serving/, written to a temporary
file and renamed into place when complete, so an interrupted build is never reused; its name
carries a hash of everything that goes into it.
"""

import glob
import hashlib
import os
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest

CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "churn-serving"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-pip", "ca-certificates")
TOOLS = {"buildah": "buildah", "debootstrap": "debootstrap"}  # command: Debian package
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's CA bundle, in the image
RECIPE = "3"  # bump when the steps below change


def unavailable(reason: str) -> None:
    """Skip with the reason; on CI (CI set) fail instead: there the test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, and this test cannot run: {reason}")
    pytest.skip(reason)


def run(cmd: list[str], log: Path, timeout: float, **kwargs) -> str:
    """Run cmd with its output appended to log; its stdout when it succeeds."""
    with log.open("ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=out, timeout=timeout, **kwargs)
        out.write(done.stdout)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{tail}")
    return done.stdout.decode()


def require_tools(log: Path) -> None:
    """buildah and debootstrap, installed with apt when missing and this runs as root."""
    if os.geteuid() != 0:
        unavailable(
            "building and running the image with buildah's chroot isolation needs root "
            f"(this runs as uid {os.geteuid()})"
        )
    missing = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        unavailable(f"{', '.join(missing)} missing, and there is no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "update", "-qq"], log, 600, env=env)
        run(["apt-get", "install", "-y", "-qq", *missing], log, 900, env=env)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        unavailable(f"apt-get could not install {', '.join(missing)}: {exc}")


def debian_mirror() -> str:
    """The host's mirror for SUITE (one-line or deb822 apt sources), else Debian's CDN."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in (p for p in sources if p.is_file()):
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields = dict(
                    line.split(":", 1) for line in stanza.splitlines() if ":" in line[:20]
                )
                if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
                    return fields["URIs"].split()[0]
        for line in text.splitlines():
            words = [w for w in line.split("#")[0].split() if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return "http://deb.debian.org/debian"


def _host_bundle() -> Path:
    return Path(os.environ.get("SSL_CERT_FILE") or ssl.get_default_verify_paths().cafile or BUNDLE)


def _pip_index() -> str | None:
    """The host pip's index-url (not a local file:// one, which the build cannot see)."""
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        got = subprocess.run(
            ["python3", "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True,
            text=True,
        )
        url = got.stdout.strip() if got.returncode == 0 else None
    return url if url and not url.startswith("file:") else None


def _local_cas() -> list[Path]:
    return sorted(Path(p) for p in glob.glob("/usr/local/share/ca-certificates/**/*.crt"))


def _key(mirror: str) -> str:
    parts = [RECIPE, SUITE, mirror, *PACKAGES, _pip_index() or ""]
    digest = hashlib.sha256("\n".join(parts).encode())
    for ca in [_host_bundle(), *_local_cas()]:
        digest.update(ca.read_bytes())
    return digest.hexdigest()[:12]


def _build_rootfs(tarball: Path, mirror: str, log: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="churn-debootstrap-", dir=CACHE_ROOT) as tmp:
        root = Path(tmp) / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}"]
        run([*cmd, SUITE, str(root), mirror], log, 1200)
        for leftover in [*root.glob("var/cache/apt/archives/*.deb"), root / "var/lib/apt/lists"]:
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        for ca in _local_cas():
            shutil.copy(ca, root / "usr/local/share/ca-certificates" / ca.name)
        shutil.copy(_host_bundle(), root / BUNDLE.lstrip("/"))
        if index := _pip_index():
            (root / "etc/pip.conf").write_text(f"[global]\nindex-url = {index}\n")
        partial = Path(tmp) / "rootfs.tar"
        run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], log, 600)
        partial.rename(tarball)  # same filesystem: atomic


def base_image(log: Path) -> str:
    """The local base image's name, importing (and first building) it when missing."""
    mirror = debian_mirror()
    key = _key(mirror)
    name = f"localhost/churn-debian-python:{SUITE}-{key}"
    known = subprocess.run(["buildah", "inspect", "--type", "image", name], capture_output=True)
    if known.returncode == 0:
        return name
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    tarball = CACHE_ROOT / f"debian-{SUITE}-python-{key}.tar"
    if not tarball.is_file():
        _build_rootfs(tarball, mirror, log)
    container = run(["buildah", "from", "scratch"], log, 60).strip()
    try:
        mount = run(["buildah", "mount", container], log, 60).strip()
        run(["tar", "--numeric-owner", "-C", mount, "-xpf", str(tarball)], log, 600)
        env = [f"--env=PATH={IMAGE_PATH}", f"--env=SSL_CERT_FILE={BUNDLE}"]
        run(["buildah", "config", *env, "--cmd", '["python3"]', container], log, 60)
        run(["buildah", "commit", "--quiet", container, name], log, 600)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
    return name
