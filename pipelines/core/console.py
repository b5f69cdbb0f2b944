"""What a person sees while a flow runs: one line per step; the tools' chatter goes to a log file.

Prefect's console handler, third-party warnings (DuckDB deprecations, sklearn's ill-defined precision on
an empty class) and library INFO lines are written to ``<home>/logs/casebook.log`` (and Prefect's own
run logs, which the UI shows) instead of the terminal; ``--verbose`` leaves them on the terminal too.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from pipelines.core.settings import Paths

LOG_FORMAT = "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"


def log_file(paths: Paths | None = None) -> Path:
    return (paths or Paths.from_env()).home / "logs" / "casebook.log"


def route_logs(verbose: bool, paths: Paths | None = None) -> Path:
    """Send logs and warnings to the log file (and, with ``verbose``, the terminal); returns the file.

    Must run before Prefect is imported: Prefect reads its console level from the environment once.
    """
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    import prefect.logging.configuration  # noqa: F401  configures the loggers the file handler joins

    target = log_file(paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(target)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    logging.captureWarnings(True)  # warnings become log records on 'py.warnings'
    if not verbose:
        warnings.simplefilter("default")  # once per location, into the file
    return target
