"""Safe output: a run writes into a hidden staging directory beside DIR and renames it to DIR only
once complete, so a crashed or killed run never leaves a DIR that looks finished."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models.errors import OutputConflictError

PREDICTIONS_FILE = "predictions.parquet"
REJECTED_FILE = "rejected.parquet"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


class OutputExistsError(OutputConflictError):
    """DIR exists and `--overwrite` was not given."""


def check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} already exists; pass --overwrite to replace it")
    if target.exists() and not target.is_dir():
        raise OutputExistsError(f"{target} exists and is not a directory")


@contextmanager
def staged_output(target: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a fresh staging directory beside `target`; on success it becomes `target`, on any
    exception (including SystemExit and KeyboardInterrupt, and a failure to publish) it is
    removed. With `overwrite`, an existing `target` is replaced only by a complete run: if the
    new directory cannot be put in place, the old one is put back."""
    check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would otherwise become DIR's mode
    try:
        yield staging
        _publish(staging, target, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish(staging: Path, target: Path, overwrite: bool) -> None:
    check_target(target, overwrite)  # another run may have published meanwhile
    if not target.exists():
        staging.rename(target)
        return
    # A directory cannot be renamed onto a non-empty one: move the old one aside first.
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old.rmdir()
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        # Put the previous DIR back (should that fail too, it stays under its `.old-` name).
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
