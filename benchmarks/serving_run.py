"""Running one server of the serving benchmark and driving it with the load generator."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from benchmarks.cpu import cpu_seconds
from benchmarks.serving_servers import SERVERS, free_port
from models.samples import request

ROOT = Path(__file__).resolve().parents[1]


def start(name: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command, extra_env = SERVERS[name]
    proc = subprocess.Popen(
        command(port),
        cwd=ROOT,
        env={**env, **extra_env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited; see {log}")
        try:
            if httpx.post(f"{url}/predict", json=request(), timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise TimeoutError(f"{name} did not answer /predict; see {log}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def load_command(url: str, body: Path, args: argparse.Namespace, clients: int) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.serving_load", url, str(body)]
    cmd += ["--concurrency", str(clients), "--warmup", str(args.warmup)]
    cmd += ["--duration", str(args.duration)]
    return [*cmd, "--lines"] if body.suffix == ".jsonl" else cmd


def load(
    proc: subprocess.Popen[bytes],
    url: str,
    body: Path,
    args: argparse.Namespace,
    clients: int,
    side_load: list[str] | None = None,
) -> dict:
    """Drive the server (with `side_load`, another load generator, running alongside); also
    its CPU ms per request, which noise from other programs on the machine inflates far less
    than it deflates req/s."""
    cpu_before = cpu_seconds(proc.pid)
    side = subprocess.Popen(side_load, cwd=ROOT, stdout=subprocess.PIPE) if side_load else None
    try:
        cmd = load_command(url, body, args, clients)
        out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    finally:
        side_out = side.communicate()[0] if side else None
    result = json.loads(out)
    if side_out:
        result["side"] = json.loads(side_out)
    result["cpu_ms"] = 1000 * (cpu_seconds(proc.pid) - cpu_before) / max(result["sent"], 1)
    return result
