"""The bridge's probes for Kubernetes: `/livez` and `/readyz` on `--health-port`.

- `/livez`: the consume loop has polled the broker within `--live-timeout-s`. The loop polls at
  least every half second while it runs; the long waits without a poll are one scoring call (at
  most `--service-timeout-s`) and one flush to a broker that is away (the producer's delivery
  timeout, 2 minutes), hence the 180 s default: only a loop stuck past both fails it, and the
  kubelet restarts the bridge (nothing is lost: the batches in hand are uncommitted).
- `/readyz`: the consumer has partitions assigned and the service answered the last scoring
  call (before the first call, its own `/readyz`); an in-process scorer is always answered.

Served by the standard library's `ThreadingHTTPServer` on a daemon thread, on a port of its
own: prometheus_client's server answers every path with the registry, and a probe should not
queue behind a scrape. The loop and the scoring thread write plain attributes that the server
thread reads (each write is atomic under the GIL); the clock is injected so tests step it.
"""

import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

LIVE_PATH, READY_PATH = "/livez", "/readyz"
PROBE_TIMEOUT_S = 2.0


class Health:
    def __init__(
        self,
        live_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        service_probe: Callable[[], bool] | None = None,
    ) -> None:
        self.live_timeout_s = live_timeout_s
        self._clock = clock
        self._service_probe = service_probe
        self._last_poll = clock()  # starting up counts as alive, for one timeout
        self._assigned = False
        self._service_answered: bool | None = None  # None: no scoring call yet

    def polled(self, assigned: bool) -> None:
        """The loop called poll(); `assigned`: whether it holds any partition now."""
        self._last_poll = self._clock()
        self._assigned = assigned

    def service_answered(self, answered: bool) -> None:
        """The outcome of a scoring call: answered, or unavailable/refused."""
        self._service_answered = answered

    def live(self) -> tuple[bool, str]:
        idle = self._clock() - self._last_poll
        if idle > self.live_timeout_s:
            return False, f"no poll for {idle:.0f}s (limit {self.live_timeout_s:.0f}s)"
        return True, "polling"

    def ready(self) -> tuple[bool, str]:
        if not self._assigned:
            return False, "no partition assigned"
        answered = self._service_answered
        if answered is None:
            answered = self._service_probe() if self._service_probe else True
        if not answered:
            return False, "the service did not answer"
        return True, "assigned, service answering"


def service_probe(url: str, token: str | None) -> Callable[[], bool]:
    """Whether the bento's own `/readyz` answers 200 (its probes need no token, but a
    deployment may put one in front, so it is sent)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}

    def probe() -> bool:
        try:
            answer = httpx.get(f"{url.rstrip('/')}{READY_PATH}", headers=headers,
                               timeout=PROBE_TIMEOUT_S)  # fmt: skip
        except httpx.HTTPError:
            return False
        return answer.status_code == httpx.codes.OK

    return probe


def start_health_server(health: Health, port: int, host: str = "") -> ThreadingHTTPServer:
    """Serve the probes on `port` (0: any free one, see `server_address`) until `shutdown()`."""
    checks = {LIVE_PATH: health.live, READY_PATH: health.ready}

    class Probes(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            check = checks.get(self.path.split("?", 1)[0])
            if check is None:
                self._answer(HTTPStatus.NOT_FOUND, "not found")
                return
            ok, why = check()
            self._answer(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, why)

        def _answer(self, status: HTTPStatus, text: str) -> None:
            body = f"{text}\n".encode()
            self.send_response(status)
            self.send_header("content-type", "text/plain; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds are no news: not logged."""

    server = ThreadingHTTPServer((host, port), Probes)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
