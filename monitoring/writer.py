"""Writing the prediction log with BentoML's inference-monitoring API (`bentoml.monitor`).

Files (BentoML's default monitor): DIR/churn_predictions/data/data.<worker>.log, one JSON object
per prediction (`monitoring.records.COLUMNS`, then BentoML's own `timestamp`, `request_id` and
`trace_id`), rotated daily, and the column list in DIR/churn_predictions/schema/schema.<worker>.log.
"""

import contextvars
from pathlib import Path

import bentoml

from monitoring.records import COLUMNS, NAMES, Columns

MONITOR_NAME = "churn_predictions"


class MonitorWriter:
    """Writes columns with `bentoml.monitor` into `directory` (BentoML's default monitor).

    BentoML keeps one monitor per name and process, so a process logs into one directory."""

    def __init__(self, directory: Path) -> None:
        self.options = {"log_path": str(directory)}
        self._schema_written = False

    def __call__(self, columns: Columns) -> None:
        if not self._schema_written:
            # BentoML 1.4.40 takes the column schema from the first block written, and until
            # then warns "Column name ... is duplicated" for every value but the first of each
            # `log_batch`: the first block is one row.
            self._schema_written = True
            self._block({k: v[:1] for k, v in columns.items()})
            columns = {k: v[1:] for k, v in columns.items()}
            if not columns[NAMES[0]]:
                return
        self._block(columns)

    def _block(self, columns: Columns) -> None:
        # BentoML holds a block's state in context variables and does not reset them when the
        # block fails: a fresh copy of the context per block keeps one failure from breaking
        # every block after it.
        contextvars.copy_context().run(self._write, columns)

    def _write(self, columns: Columns) -> None:
        with bentoml.monitor(MONITOR_NAME, monitor_options=self.options) as mon:
            for name, role, data_type in COLUMNS:
                mon.log_batch(columns[name], name=name, role=role, data_type=data_type)
