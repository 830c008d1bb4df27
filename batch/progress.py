"""Progress of a run: a rich bar with rows/s and ETA on a terminal, log lines otherwise."""

import logging
import sys
import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger("batch")
LOG_EVERY_S = 10.0


class RunProgress:
    """`advance(rows)` after each chunk; `close()` at the end. Silent when `quiet`."""

    def __init__(self, total: int | None, quiet: bool, terminal: bool | None = None) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.started = self._last_log = time.monotonic()
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self._bar: Progress | None = None
        if terminal and not quiet:
            self._bar = Progress(
                TextColumn("scoring"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]} rows/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=True,
            )
            self._task = self._bar.add_task("rows", total=total, rate="–")
            self._bar.start()

    @property
    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def advance(self, rows: int) -> None:
        self.done += rows
        if self._bar is not None:
            self._bar.update(self._task, advance=rows, rate=f"{self.rate:,.0f}")
        elif not self.quiet and time.monotonic() - self._last_log >= LOG_EVERY_S:
            self._last_log = time.monotonic()
            left = ""
            if self.total:
                eta = (self.total - self.done) / max(self.rate, 1e-9)
                left = f" of {self.total:,} ({self.done / self.total:.0%}), ETA {eta:,.0f}s"
            log.info("scored %s rows%s, %s rows/s", f"{self.done:,}", left, f"{self.rate:,.0f}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
