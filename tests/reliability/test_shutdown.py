"""SIGTERM to the served bento under load: accepted requests complete, then it refuses and exits 0.

What "in flight" can mean here: BentoML's supervisor (circus) keeps the listening socket open
until its worker has drained, so a connection opened *after* SIGTERM can be queued by the kernel
and then reset instead of refused. Requests sent before the signal must all complete; later ones
may fail to connect. docs/guarantees.md states this and how to deploy around it.

Every step waits for an event, never for time to pass: requests the worker has provably begun
(the kernel shows it has read them) before the signal, the worker provably draining (it has
closed its listening socket) before they are allowed to finish, and requests made after the
server exited.
"""

import contextlib
import http.client
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.reliability.corpus import nested, valid_customers
from tests.support import port_open, process_tree, start_bento, wait_until

CLIENTS = 8
HELD = 4  # requests begun before the signal, whose last byte is sent only once it drains


def tcp_sockets() -> Iterator[tuple[int, int, str, int, str]]:
    """(local port, remote port, state, bytes received and unread, inode) of every TCP socket
    of this network namespace; state "01" is established, "0A" listening."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = (int(a.rsplit(":", 1)[1], 16) for a in fields[1:3])
            yield local, remote, fields[3], int(fields[4].split(":")[1], 16), fields[9]


def read_by_the_server(port: int, clients: list[socket.socket]) -> bool:
    """Whether every byte each client sent has been read by the server's end: taken from the
    kernel's accept queue and read by the worker (only the worker reads)."""
    mine = {c.getsockname()[1] for c in clients}
    read = {remote for local, remote, state, unread, _ in tcp_sockets()
            if local == port and remote in mine and state == "01" and unread == 0}  # fmt: skip
    return read == mine


def holds_listener(pid: int, port: int) -> bool:
    """Whether process `pid` still has the socket listening on `port` open."""
    inodes = {f"socket:[{inode}]" for local, _, state, _, inode in tcp_sockets()
              if local == port and state == "0A"}  # fmt: skip
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False  # exited
    for fd in fds:
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue
    return False


def test_sigterm_under_load_completes_accepted_requests_and_exits_0(logs_dir, service_env):
    bento = start_bento(logs_dir, service_env)
    tree = process_tree(bento.proc.pid)
    workers = [pid for pid in tree[1:] if holds_listener(pid, bento.port)]
    body = nested(valid_customers(1)[0])
    raw = json.dumps(body).encode()
    request = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{bento.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    ).encode() + raw

    lock, stop = threading.Lock(), threading.Event()
    phase = ["load"]  # then "signalled", then "exited"
    # (phase when the request started, phase when it ended, outcome, client number)
    results: list[tuple[str, str, str, int]] = []

    def client(number: int) -> None:
        # One connection per request ("Connection: close"), so each request is a new accept.
        with httpx.Client(base_url=bento.url, timeout=60, headers={"connection": "close"}) as http:
            while not stop.is_set():
                with lock:
                    started = phase[0]
                try:
                    resp = http.post("/predict", json=body)
                    outcome = "ok" if resp.status_code == 200 else f"http {resp.status_code}"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    results.append((started, phase[0], outcome, number))

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    held: list[socket.socket] = []
    try:
        expected = httpx.post(f"{bento.url}/predict", json=body, timeout=60).json()
        assert workers, "no worker process holds the listening socket"
        for t in threads:
            t.start()
        wait_until(lambda: len(results) >= 150, 60, "load on the bento")

        # Requests the worker has begun: their head and all but the last byte of the body read.
        for _ in range(HELD):
            conn = socket.create_connection(("127.0.0.1", bento.port), timeout=60)
            conn.sendall(request[:-1])
            held.append(conn)
        wait_until(lambda: read_by_the_server(bento.port, held), 30, "held requests read")

        with lock:
            bento.proc.send_signal(signal.SIGTERM)
            phase[0] = "signalled"
        # The worker drains (it has closed its listener); only now do the held requests end.
        draining = lambda: not any(holds_listener(pid, bento.port) for pid in workers)  # noqa: E731
        wait_until(draining, 30, "the worker to stop accepting")
        answers = []
        for conn in held:
            conn.sendall(request[-1:])
            response = http.client.HTTPResponse(conn)
            response.begin()
            answers.append((response.status, json.loads(response.read())))
        exit_code = bento.proc.wait(60)

        with lock:
            phase[0] = "exited"

        # Every client makes at least one request after the server has exited.
        def late() -> bool:
            return {n for s, _, _, n in results if s == "exited"} == set(range(CLIENTS))

        wait_until(late, 60, "a request from every client after exit")
    finally:
        stop.set()
        for conn in held:
            conn.close()
        for t in threads:
            t.join(60)
        if bento.proc.poll() is None:
            for pid in tree:  # the worker too: it is in a session of its own
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            bento.proc.wait(20)
    assert not any(t.is_alive() for t in threads)

    assert exit_code == 0, bento.log_tail()
    # Begun before the signal, finished during the drain: answered, and answered right.
    for status, answer in answers:
        assert status == 200, answer
        assert answer["churn_probability"] == expected["churn_probability"]
        assert answer["prediction"] == expected["prediction"]
    # Under load, every request answered before the signal was answered well.
    before = {outcome for _, ended, outcome, _ in results if ended == "load"}
    assert before == {"ok"}, f"requests answered before SIGTERM failed: {sorted(before)}"
    # Once the server has exited, the port refuses.
    after_exit = {outcome for started, _, outcome, _ in results if started == "exited"}
    assert after_exit == {"ConnectError"}, "the port kept accepting after shutdown"
    assert not {o for *_, o, _ in results if o.startswith("http 5")}, results
    assert not port_open(bento.port)
