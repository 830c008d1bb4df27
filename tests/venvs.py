"""Virtualenvs of their own for tools whose pins clash with the project's (kserve's client).

A venv is pip-installed once per requirement set and Python, and cached under
~/.cache/churn-serving/ (later runs and CI on the same machine reuse it). It is built in a
temporary directory and renamed into place when complete, so an interrupted build is never
reused; run it as `VENV/bin/python -m ...` (a renamed venv's script shebangs point at the build
directory). tests/airflow/conftest.py builds its Airflow venv with it too.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "churn-serving"
READY = ".churn-ready"  # written last into a complete venv


def venv_key(requirements: Sequence[str]) -> str:
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    text = "\n".join([*requirements, sys.version, base])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_logged(cmd: Sequence[str], log: Path, timeout: float, **kwargs) -> None:
    """`cmd` in its own process group, output appended to `log`; killed at `timeout`."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
        try:
            code = proc.wait(timeout)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {code}:\n{tail}")


def cached_venv(name: str, requirements: Sequence[str], timeout: float = 1200) -> Path:
    """The python of the cached venv `name` holding `requirements`, built first if missing."""
    target = CACHE_ROOT / f"{name}-venv-{venv_key(requirements)}"
    python = target / "bin" / "python"
    if (target / READY).is_file():
        return python
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    for stale in CACHE_ROOT.glob(f".{target.name}.building-*"):  # builds killed mid-way
        if time.time() - stale.stat().st_mtime > 2 * timeout:
            shutil.rmtree(stale, ignore_errors=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=CACHE_ROOT))
    building.chmod(0o755)
    log = building / "build.log"
    try:
        run_logged([sys.executable, "-m", "venv", str(building)], log, 120)
        pip = [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        run_logged([*pip, *requirements], log, timeout)
        log.unlink()
        (building / READY).write_text("\n".join(requirements) + "\n")
        if target.exists() and not (target / READY).is_file():
            shutil.rmtree(target)  # not ours and incomplete: a stale leftover
        try:
            building.rename(target)
        except OSError:
            if not (target / READY).is_file():  # another session's complete build won
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return python
