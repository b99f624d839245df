"""A failing rank ends its whole DDP job with its own one-line error (issue 19): it writes the line to
`<folder>/<attempt>.rank<r>.error` and prints it as its last line (`error: DDP rank r of N: ...`); every other rank
watches that folder (and rank 0 its launched children) and ends with the same line within a second or two,
instead of waiting in a collective until the process group's timeout (with NCCL the collective itself never
notices). A process that holds only this job (a rank started by SLURM, torchrun or `src.ddp_rank`) then exits at
once (code 1; under SLURM `--kill-on-bad-exit` ends the others too); rank 0 of a job that started its own ranks
shares its process with the rest of a local multirun, so it raises `RankFailed` instead and the multirun's other
jobs go on.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import torch.distributed as dist
from pytorch_lightning import Callback

from src.config.checks import ConfigError
from src.data.image_io import DatasetError
from src.store.atomic import write_text_atomic

POLL_S = 0.5  # how often a rank looks for another rank's failure
GRACE_S = 10.0  # how long a rank whose collective broke waits for the failing rank's own report
BAD_INPUT = (ConfigError, DatasetError)  # errors whose one line says it all: no traceback


class RankFailed(RuntimeError):
    """A rank of this DDP job failed; the message is that rank's one-line error (`DDP rank r of N: ...`)."""


def one_line(error: BaseException) -> str:
    """`error` as one line: its message's first line; for an error re-raised from a DataLoader worker (whose
    message holds the worker's traceback) the original error's own message."""
    text = str(error).strip()
    lines = text.splitlines()
    if text.startswith("Caught ") and "Original Traceback" in text:
        head, _, message = lines[-1].strip().partition(": ")
        return message if message and " " not in head else lines[-1].strip()
    return lines[0] if lines else type(error).__name__


def is_collective_failure(error: BaseException) -> bool:
    """Whether `error` is a broken collective (a peer gone, an aborted or timed-out group): another rank's failure
    seen from here, not this rank's own."""
    if isinstance(error, (RankFailed, getattr(dist, "DistError", RankFailed))):
        return True
    text = f"{type(error).__name__} {error}".lower()
    return any(word in text for word in ("gloo", "nccl", "connection closed", "connection reset", "broken pipe",
                                         "process group", "timed out"))


class FailureWatch:
    """The failure reports of one DDP attempt: each failing rank writes its one-line error to
    `<folder>/<attempt>.rank<r>.error`; a thread ends this rank when another rank reports (rank 0 also when a rank
    it launched dies). `exclusive`: this process holds only this job, so it may print and exit at once."""

    def __init__(self, folder: Path, world: int, children: list[subprocess.Popen], exclusive: bool):
        self.folder, self.world, self.children, self.exclusive = folder, world, children, exclusive
        self.rank, self.attempt = 0, ""
        self.found: str | None = None  # the failing rank's line, once known
        self._stop = threading.Event()
        self._ending = threading.Lock()  # one last line per process

    def start(self, rank: int, attempt: str) -> None:
        self.rank, self.attempt = rank, attempt
        self.folder.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=self._watch, daemon=True, name="ddp-rank-watch").start()

    def stop(self) -> None:
        self._stop.set()

    def _file(self, rank: int) -> Path:
        return self.folder / f"{self.attempt}.rank{rank}.error"

    def _line(self, rank: int, line: str) -> str:
        return f"DDP rank {rank} of {self.world}: {line}"

    def reported(self) -> str | None:
        """Another rank's own failure (not a broken collective), or a launched rank that died without a word."""
        for rank in range(self.world) if self.attempt else ():
            try:
                report = json.loads(self._file(rank).read_text()) if rank != self.rank else None
            except (OSError, ValueError):
                continue
            if report is not None and not report["collective"]:
                return self._line(rank, report["line"])
        for rank, child in enumerate(self.children, start=1):
            if child.poll() not in (None, 0):
                return self._line(rank, f"exited with code {child.returncode} without a report (killed?)")
        return None

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            self.found = self.reported()
            if self.found is not None:
                if self.exclusive:
                    self._end(self.found, origin=False)
                self._mark_ended()  # rank 0 of a launching job: its line follows once its collective breaks
                _abort_nccl()  # the main thread's collective then returns an error (gloo sees the closed peer)
                return

    def failed(self, error: BaseException) -> str:
        """This rank's report of `error`, as one line: its own error, or, when its collective broke because
        another rank failed, that rank's error (waiting up to GRACE_S for its report). Writes this rank's own
        report for the others; an exclusive process prints the line and exits here."""
        collective = is_collective_failure(error)
        message = str(error) if isinstance(error, RankFailed) else self._line(self.rank, one_line(error))
        if self.attempt and not isinstance(error, RankFailed):
            try:
                report = {"line": one_line(error), "collective": collective}
                write_text_atomic(self._file(self.rank), json.dumps(report))
            except OSError:
                pass  # the others still see the closed connection, only later and without the cause
        if collective:
            deadline = time.monotonic() + GRACE_S
            while self.found is None and time.monotonic() < deadline:
                self.found = self.reported()
                time.sleep(POLL_S / 5)
            message = self.found or message
        elif not isinstance(error, BAD_INPUT):
            traceback.print_exception(error)  # a bug keeps its traceback, above the one-line summary
        if self.exclusive:
            self._end(message, origin=self.found is None)
        self._mark_ended()
        return message

    def _ended(self, rank: int) -> Path:
        return self._file(rank).with_suffix(".ended")

    def _mark_ended(self) -> None:
        """Tell the failing rank that this one has (or is about to have) its last line out."""
        if self.attempt:
            try:
                self._ended(self.rank).touch()
            except OSError:
                pass

    def _end(self, message: str, origin: bool) -> None:
        """Print `message` as this process's last line and exit at once. The rank whose own error it is (`origin`)
        first waits (up to GRACE_S) for the others to have printed it too and exits 1; the others exit 0. So under
        SLURM the first non-zero exit, which `--kill-on-bad-exit` answers by cancelling the step, comes last
        and cuts no rank's line (it still ends a rank that cannot report)."""
        if not self._ending.acquire(blocking=False):
            time.sleep(3600)  # the other thread is printing and exiting
        sys.stdout.flush()
        sys.stderr.write(f"error: {message}\n")  # the process's last line, as an entry point's `error:` line
        sys.stderr.flush()
        self._mark_ended()
        deadline = time.monotonic() + GRACE_S
        while origin and self.attempt and time.monotonic() < deadline and not all(
                self._ended(rank).exists() for rank in range(self.world)):
            time.sleep(POLL_S / 5)
        os._exit(1 if origin else 0)


class StopOnRankFailure(Callback):
    """Ends this rank's training or CAM pass at its next batch once another rank has failed: work that is not a
    collective (a rank's own share of the evaluation) would otherwise go on until the next collective."""

    def __init__(self, watch: FailureWatch):
        self.watch = watch

    def _check(self, *args, **kwargs) -> None:
        if self.watch.found is not None:
            raise RankFailed(self.watch.found)

    on_train_batch_start = on_test_batch_start = on_validation_batch_start = on_predict_batch_start = _check


def _abort_nccl() -> None:
    """Abort an NCCL process group so that a collective waiting for a dead rank returns (best effort: the process
    group's timeout, trainer.strategy.timeout, remains the backstop)."""
    try:
        if dist.is_initialized() and dist.get_backend() == "nccl":
            dist.distributed_c10d._abort_process_group()
    except Exception:  # noqa: BLE001
        pass
