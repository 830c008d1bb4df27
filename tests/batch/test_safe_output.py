"""A run killed midway never leaves a DIR that looks finished."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.output import OutputExistsError, staged_output
from models.samples import records
from tests.conftest import AS_OF
from tests.support import ROOT, wait_until


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    """300,000 rows: hundreds of small chunks, so a run lasts long enough to be interrupted."""
    block = pa.Table.from_pylist(records(1000))
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


# Publishing fails: a rename refused by the filesystem (or another run publishing first). The
# staging directory never stays behind, and with --overwrite the previous DIR stays (or is put
# back) in place.


def fail_renames_from(monkeypatch, source) -> list[tuple[str, str]]:
    """Make every rename whose source `source(path)` selects raise; return all renames tried."""
    tried: list[tuple[str, str]] = []
    for name in ("rename", "replace"):
        real = getattr(os, name)

        def refuse(src, dst, *args, _real=real, **kwargs):
            tried.append((Path(src).name, Path(dst).name))
            if source(Path(src)):
                raise OSError(f"injected: cannot rename {src}")
            return _real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, name, refuse)
    return tried


def is_staging(path: Path) -> bool:
    return path.name.startswith(".out.partial-")


def publish(target: Path, overwrite: bool, files: dict[str, str]) -> None:
    with staged_output(target, overwrite) as staging:
        for name, text in files.items():
            (staging / name).write_text(text)


def contents(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in directory.iterdir()}


def test_a_failing_rename_to_dir_leaves_no_partial_directory(tmp_path, monkeypatch):
    target = tmp_path / "out"
    tried = fail_renames_from(monkeypatch, is_staging)
    with pytest.raises(OSError, match="injected"):
        publish(target, False, {"report.json": "{}"})
    assert tried  # the publishing rename was attempted, and refused
    assert list(tmp_path.iterdir()) == []


def test_overwrite_restores_the_old_dir_when_the_new_one_cannot_be_put_in_place(
    tmp_path, monkeypatch
):
    target = tmp_path / "out"
    publish(target, False, {"report.json": "old run"})
    tried = fail_renames_from(monkeypatch, is_staging)
    with pytest.raises(OSError, match="injected"):
        publish(target, True, {"report.json": "new run", "extra": "x"})
    # The old DIR was moved aside, the new one refused, and the old one put back.
    assert any(src == "out" for src, _ in tried)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert contents(target) == {"report.json": "old run"}


def test_overwrite_keeps_the_old_dir_when_it_cannot_be_moved_aside(tmp_path, monkeypatch):
    target = tmp_path / "out"
    publish(target, False, {"report.json": "old run"})
    fail_renames_from(monkeypatch, lambda path: path == target)
    with pytest.raises(OSError, match="injected"):
        publish(target, True, {"report.json": "new run"})
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert contents(target) == {"report.json": "old run"}


def test_a_dir_published_meanwhile_by_another_run_is_kept_and_ours_removed(tmp_path):
    target = tmp_path / "out"

    def overtaken() -> None:
        with staged_output(target, False) as staging:
            (staging / "report.json").write_text("ours")
            target.mkdir()  # another run publishes first
            (target / "report.json").write_text("theirs")

    with pytest.raises(OutputExistsError):
        overtaken()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert contents(target) == {"report.json": "theirs"}
