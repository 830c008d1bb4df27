"""The test servers' start-up: a port counts as ours only when our own process listens on it."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import support
from tests.support import owns_port


def listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_a_socket_this_process_listens_on_is_owned():
    with listener() as s:
        assert owns_port(os.getpid(), s.getsockname()[1])


def test_a_port_another_process_listens_on_is_not_owned():
    code = "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen();"
    code += " print(s.getsockname()[1], flush=True); sys.stdin.read()"
    other = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert other.stdout is not None
        port = int(other.stdout.readline())
        with listener() as mine:
            assert owns_port(other.pid, port)
            assert not owns_port(other.pid, mine.getsockname()[1])
    finally:
        other.kill()
        other.wait()


def test_a_server_that_loses_its_port_is_started_on_another(tmp_path: Path, monkeypatch):
    """The port handed out is taken by someone else before the server binds it: the server
    exits, and the start is retried on a port that is free."""
    monkeypatch.delenv(support.NO_SERVERS_ENV, raising=False)
    with listener() as taken:
        port = taken.getsockname()[1]
        handed = [port]
        real = support.free_port
        monkeypatch.setattr(support, "free_port", lambda: handed.pop() if handed else real())
        code = (
            "import signal,socket,sys; s=socket.socket(); s.bind(('127.0.0.1',int(sys.argv[1])));"
        )
        code += " s.listen(); signal.pause()"
        proc = support.start_server(
            "binder", lambda p: [sys.executable, "-c", code, str(p)], tmp_path, {}
        )
        try:
            assert proc.port != port
            assert owns_port(proc.proc.pid, proc.port)
            assert "Address already in use" in (tmp_path / f"binder-{port}.log").read_text()
        finally:
            proc.stop()


def test_a_fixed_port_that_is_taken_fails_at_once(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(support.NO_SERVERS_ENV, raising=False)
    code = "import socket,sys; socket.socket().bind(('127.0.0.1',int(sys.argv[1])))"
    with listener() as taken, pytest.raises(ChildProcessError, match="Address already in use"):
        support.start_server(
            "binder", lambda p: [sys.executable, "-c", code, str(p)], tmp_path, {},
            port=taken.getsockname()[1],
        )  # fmt: skip
