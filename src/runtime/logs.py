"""The job's story as `logging` records, so that Hydra's job log (`<job dir>/<task>.log`) holds all of it: every
module logs through `logging.getLogger(__name__)`. Lightning's style for ranks: a line is written by rank 0 only
(ranks > 0 would repeat it), unless it is a warning or an error, or is logged with `extra=EVERY_RANK`.

The console keeps the one-line form (`conf/hydra/default.yaml`: the console handler prints the message alone,
the job log file adds time, module and level); outside a Hydra app (a DDP rank started by `src.ddp_rank`, a
script) `log_to_console()` sets up the same console form."""
from __future__ import annotations

import logging
import sys

from lightning_fabric.utilities.rank_zero import rank_zero_only

EVERY_RANK = {"every_rank": True}  # `log.info(..., extra=EVERY_RANK)`: a line every rank writes


class RankZeroOnly(logging.Filter):
    """Passes rank 0's records, every rank's warnings and errors, and records marked `EVERY_RANK`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (getattr(rank_zero_only, "rank", 0) == 0 or record.levelno >= logging.WARNING
                or getattr(record, "every_rank", False))


def rank_zero_handlers() -> None:
    """Put the rank-zero filter on every handler of the root logger (Hydra's console and job file), once."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RankZeroOnly) for f in handler.filters):
            handler.addFilter(RankZeroOnly())


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is when a record comes (a redirected or captured stdout too)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # logging.StreamHandler sets it; the current sys.stdout is used instead
        pass


def log_to_console(level: int = logging.INFO) -> None:
    """Outside a Hydra app: INFO lines to stdout, message only, as a Hydra job's console shows them (once)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(min(root.level or level, level))
    rank_zero_handlers()
