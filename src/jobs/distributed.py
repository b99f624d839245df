"""The ranks of one job under DDP (`trainer=ddp`): who launches them, the few collectives the job needs, and what
happens when one of them fails. Every stage that trains or evaluates (the CAM job, the classifiers stage,
pretraining) opens its ranks here, whoever started them.

Who starts the ranks: Lightning's own launcher re-executes `sys.argv` for ranks > 0; under `python -m src.run -m
...` (Hydra multirun) that re-runs the whole sweep in every child. Instead the job launches its own ranks: rank 0
(the Hydra job's process) writes the job's resolved config to `<folder>/.ddp/config.yaml` and starts
`python -m src.ddp_rank <that file> <task>` for ranks 1..N-1 with `LOCAL_RANK`/`NODE_RANK`/`WORLD_SIZE`/`MASTER_*`
set, which is how Lightning recognises processes created outside it (it then launches nothing). So each job of a
sweep runs once with N ranks, whatever the Hydra launcher. Where processes already exist (SLURM tasks with
ntasks-per-node = devices, torchrun), nothing is launched. The process group is opened before anything
collective (cache decision, BLS broadcast) and closed when the job ends, so the next job of a multirun opens its own.

`data.batch_size` is the global batch: each rank takes `batch_size / world_size` (`Ranks.batch_share`), so 1, 2
or 4 devices train the same recipe (and share one classifier cache key).

A failing rank (issue 19): it writes its one-line error to `<folder>/.ddp/<attempt>.rank<r>.error` and prints it
as its last line (`error: DDP rank r of N: ...`); every other rank watches that folder (and rank 0 its children)
and ends with the same line within a second or two, instead of waiting in a collective until the process
group's timeout (with NCCL the collective itself never notices). A process that holds only this job (a rank
started by SLURM, torchrun or this module) then exits at once (code 1; under SLURM `--kill-on-bad-exit` ends the
others too); rank 0 of a job that started its own ranks shares its process with the rest of a local multirun, so
it raises `RankFailed` instead and the multirun's other jobs go on.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from lightning_fabric.plugins.environments.lightning import find_free_network_port
from lightning_fabric.utilities.distributed import _set_num_threads_if_needed
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import Callback, Trainer
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from src.data.atomic import write_text_atomic
from src.data.image_io import DatasetError
from src.jobs.config_checks import ConfigError

RANK_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TASKS = ("run", "pretrain")  # what `python -m src.ddp_rank` runs in a launched rank
POLL_S = 0.5  # how often a rank looks for another rank's failure
GRACE_S = 10.0  # how long a rank whose collective broke waits for the failing rank's own report
BAD_INPUT = (ConfigError, DatasetError)  # errors whose one line says it all: no traceback


class RankFailed(RuntimeError):
    """A rank of this DDP job failed; the message is that rank's one-line error (`DDP rank r of N: ...`)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: `rank` of `world_size` (1 = no DDP)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, value=None):
        """Rank 0's `value` on every rank (picklable; tensors should be on the CPU)."""
        if not self.distributed:
            return value
        box = [value if self.is_zero else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, value) -> list:
        """Every rank's `value` (picklable, on the CPU), in rank order."""
        if not self.distributed:
            return [value]
        out = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def batch_share(self, global_batch: int) -> int:
        """This rank's part of the global batch `data.batch_size`: `global_batch / world_size`."""
        return check_global_batch(global_batch, self.world_size)


def check_global_batch(global_batch: int, world_size: int) -> int:
    """`global_batch / world_size`, or a ConfigError when the ranks cannot share the global batch evenly."""
    if global_batch < world_size or global_batch % world_size:
        raise ConfigError(f"data.batch_size={global_batch} is the global batch and must divide evenly among the "
                          f"{world_size} DDP ranks (trainer.devices x trainer.num_nodes); expected a multiple of "
                          f"{world_size}")
    return global_batch // world_size


def _launches_script(trainer: Trainer) -> bool:
    """True where Lightning itself would re-run `sys.argv` for the other ranks."""
    strategy = trainer.strategy
    return (isinstance(strategy, DDPStrategy) and isinstance(strategy.launcher, _SubprocessScriptLauncher)
            and not strategy.cluster_environment.creates_processes_externally)


def _world_size(trainer: Trainer) -> int:
    strategy = trainer.strategy
    return int(getattr(strategy, "num_nodes", 1)) * int(getattr(strategy, "num_processes", 1))


def ddp_folder(cfg: DictConfig) -> Path:
    """Where a job's ranks meet on disk (launched ranks' config, failure reports): `<output_dir>/.ddp`."""
    return Path(cfg.paths.output_dir) / ".ddp"


@contextmanager
def job_ranks(cfg: DictConfig, trainer: Trainer, folder: str | Path | None = None,
              task: str = "run") -> Iterator[Ranks]:
    """Start the job's other ranks where needed (they run `task` of `src.ddp_rank` on `cfg`), open the process
    group, yield this process's `Ranks`; on exit close the group and (rank 0) wait for the ranks it launched.
    `folder` (default `ddp_folder(cfg)`) is the same path on every rank. One process without DDP: `Ranks()`.
    A failure of any rank ends every rank of the job (see the module's docstring)."""
    world = _world_size(trainer)
    if world == 1 or not isinstance(trainer.strategy, DDPStrategy):
        yield Ranks()
        return
    check_global_batch(int(cfg.data.batch_size), world)  # before any rank starts: one line, once
    folder = Path(folder) if folder is not None else ddp_folder(cfg)
    children, saved_env, threads = [], {}, torch.get_num_threads()
    if _launches_script(trainer):
        if trainer.num_nodes > 1:
            raise ConfigError(f"trainer.num_nodes={trainer.num_nodes}: several nodes need their processes started "
                              "by SLURM (ntasks-per-node = devices) or torchrun; expected num_nodes=1 here")
        saved_env = {key: os.environ.get(key) for key in (*RANK_ENV, "OMP_NUM_THREADS")}
        _set_num_threads_if_needed(world)  # N ranks share the CPUs (as Lightning's launcher does); children inherit it
        env = {"NODE_RANK": "0", "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(find_free_network_port())}
        os.environ.update(env, LOCAL_RANK="0")
        children = _start_ranks(cfg, folder, world, env, task)
    watch = FailureWatch(folder, world, children, exclusive=not saved_env)
    try:
        try:
            trainer.strategy.setup_environment()  # opens the process group now; Lightning's fit/test reuse it
            ranks = Ranks(trainer.global_rank, world)
            watch.start(ranks.rank, attempt=ranks.broadcast(uuid.uuid4().hex[:12]))
            trainer.callbacks.append(StopOnRankFailure(watch))  # a rank busy in its own batches stops too
            yield ranks
        except Exception as error:
            message = watch.failed(error)  # a process that holds only this job ends in there
            _reap(children, timeout_s=3.0, check=False)  # the failing one prints and exits; the rest are ended
            raise (ConfigError if isinstance(error, ConfigError) else RankFailed)(message) from error
        except BaseException:  # Ctrl+C, exit: the launched ranks go with this one
            _reap(children, timeout_s=0.0, check=False)
            raise
        finally:
            watch.stop()
        _reap(children, timeout_s=120.0, check=True)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved_env.items():  # the next job of a multirun starts as this one did
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)


def _start_ranks(cfg: DictConfig, folder: Path, world: int, env: dict, task: str) -> list[subprocess.Popen]:
    if task not in TASKS:
        raise ValueError(f"task={task!r}; expected one of {TASKS}")
    spec = folder / "config.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, spec, resolve=True)  # resolved here: `${hydra:...}` only resolves inside the Hydra job
    repo = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    return [subprocess.Popen([sys.executable, "-m", "src.ddp_rank", str(spec), task], cwd=os.getcwd(),
                             env={**os.environ, **env, "LOCAL_RANK": str(rank), "PYTHONPATH": path})
            for rank in range(1, world)]


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
        print(f"error: {message}", file=sys.stderr, flush=True)
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


def _reap(children: list[subprocess.Popen], timeout_s: float, check: bool) -> None:
    """Wait for the launched ranks (they end right after rank 0); kill those still running after `timeout_s`;
    with `check`, a rank that failed fails the job."""
    deadline = time.monotonic() + timeout_s
    for child in children:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    codes = [child.returncode for child in children if child.returncode not in (0, None)]
    if codes and check:
        raise RankFailed(f"DDP rank processes exited with codes {codes}")


def to_cpu(value):
    """`value` with its tensors on the CPU (before a broadcast: a CUDA tensor would land on rank 0's GPU)."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value
