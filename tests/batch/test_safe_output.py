"""A run killed midway never leaves a DIR that looks finished."""

import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.batch.conftest import customers
from tests.conftest import AS_OF
from tests.support import ROOT, wait_until


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    """300,000 rows: hundreds of small chunks, so a run lasts long enough to be interrupted."""
    block = pa.Table.from_pylist(customers(1000))
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    pq.write_table(pa.concat_tables([block] * 300), path, row_group_size=50_000)
    return path


def start(big_input, out, model_tag):
    cmd = [sys.executable, "-m", "batch.predict", str(big_input), "--output", str(out),
           "--model", model_tag, "--as-of", AS_OF.isoformat(), "--chunk-rows", "500"]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def staging_dirs(out):
    return list(out.parent.glob(f".{out.name}.partial-*"))


def wait_for_partial_output(proc, out):
    """Until the run has written part of its predictions (and is still running)."""

    def midway() -> bool:
        assert proc.poll() is None, "the run finished before it could be interrupted"
        files = [d / "predictions.parquet" for d in staging_dirs(out)]
        return any(f.exists() and f.stat().st_size > 100_000 for f in files)

    wait_until(midway, 120, "partial predictions")


def interrupt_midway(big_input, out, model_tag, sig: int, timeout: float) -> tuple[int, bytes]:
    """Start a run, send `sig` once it has written part of its predictions; (exit code, stderr)."""
    proc = start(big_input, out, model_tag)
    try:
        wait_for_partial_output(proc, out)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stderr


def test_sigkill_midway_leaves_no_finished_looking_output(big_input, tmp_path, model_tag):
    out = tmp_path / "result"
    returncode, _ = interrupt_midway(big_input, out, model_tag, signal.SIGKILL, timeout=30)
    assert returncode == -signal.SIGKILL
    assert not out.exists()
    (leftover,) = staging_dirs(out)  # hidden, named as partial, and without a report
    assert not (leftover / "report.json").exists()


def test_sigterm_midway_removes_the_partial_output(big_input, tmp_path, model_tag):
    out = tmp_path / "result"
    returncode, stderr = interrupt_midway(big_input, out, model_tag, signal.SIGTERM, timeout=60)
    assert returncode == 128 + signal.SIGTERM
    assert not out.exists()
    assert staging_dirs(out) == []
    assert b"Traceback" not in stderr
