"""Log lines (`src.runtime.logs`): rank 0 writes the job's story, every rank its warnings and errors; outside Hydra
the lines reach whatever stdout is current."""
from __future__ import annotations

import io
import logging
from contextlib import redirect_stdout

from lightning_fabric.utilities.rank_zero import rank_zero_only

from src.runtime.logs import EVERY_RANK, RankZeroOnly, StdoutHandler


def records(rank: int, monkeypatch) -> list[str]:
    monkeypatch.setattr(rank_zero_only, "rank", rank)
    out = io.StringIO()
    handler = StdoutHandler()
    handler.addFilter(RankZeroOnly())
    log = logging.getLogger("tests.runtime.rank_lines")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # only this handler: the suite's own console handler sits on the root logger
    try:
        with redirect_stdout(out):  # the handler writes to the stdout of the moment
            log.info("the story")
            log.info("this rank's own line", extra=EVERY_RANK)
            log.warning("a warning")
    finally:
        log.removeHandler(handler)
    return out.getvalue().splitlines()


def test_rank_zero_writes_every_line(monkeypatch):
    assert records(0, monkeypatch) == ["the story", "this rank's own line", "a warning"]


def test_other_ranks_write_only_their_own_lines_and_warnings(monkeypatch):
    assert records(1, monkeypatch) == ["this rank's own line", "a warning"]
