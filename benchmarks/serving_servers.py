"""The command line and extra environment of each server the serving benchmark can start
(one worker each, loopback). The `-accesslog` / `-nolog` variants switch the per-request access
log on (the service has it off) or off (uvicorn has it on), to show what it costs each side."""

import json
import socket
import sys
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Command = Callable[[int], list[str]]


def bentoml(target: str, config: dict[str, Any] | None = None) -> tuple[Command, dict[str, str]]:
    def command(port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "bentoml", "serve", target),
            *("--host", "127.0.0.1", "--port", str(port)),
        ]

    # BentoML's config overrides: nested JSON, merged over the service's own config.
    return command, {"BENTOML_CONFIG_OVERRIDES": json.dumps(config)} if config else {}


def uvicorn(factory: str, *options: str) -> tuple[Command, dict[str, str]]:
    def command(port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "uvicorn", factory, "--factory"),
            *("--host", "127.0.0.1", "--port", str(port), *options),
        ]

    return command, {}


SERVERS: dict[str, tuple[Command, dict[str, str]]] = {
    "service": bentoml("service:ChurnService"),
    "service-accesslog": bentoml(
        "service:ChurnService",
        {"services": {"churn_service": {"logging": {"access": {"enabled": True}}}}},
    ),
    "batched": bentoml("service:BatchedChurnService"),
    # Two API worker processes (CHURN_WORKERS), to see what a second one gives on this machine.
    "service-workers2": (bentoml("service:ChurnService")[0], {"CHURN_WORKERS": "2"}),
    # The same server, sent `"explain": true` (reason codes) instead of the plain request.
    "service-explain": bentoml("service:ChurnService"),
    # uvicorn's defaults, access log included, as a hand-written service runs.
    "baseline": uvicorn("benchmarks.serving_baseline:make_baseline"),
    "baseline-nolog": uvicorn("benchmarks.serving_baseline:make_baseline", "--no-access-log"),
    # The strongest hand-written peer: `async def`, standard asyncio loop and h11, no access log.
    "baseline-async": uvicorn(
        "benchmarks.serving_baseline:make_baseline_async",
        *("--no-access-log", "--loop", "asyncio", "--http", "h11"),
    ),
    # The same with OpenMP held to one thread, as the service does by default (CHURN_MODEL_THREADS).
    "baseline-async-omp1": (
        uvicorn(
            "benchmarks.serving_baseline:make_baseline_async",
            *("--no-access-log", "--loop", "asyncio", "--http", "h11"),
        )[0],
        {"OMP_NUM_THREADS": "1"},
    ),
    "ceiling": uvicorn(
        "benchmarks.serving_baseline:make_ceiling", "--no-access-log", "--log-level", "warning"
    ),
}
