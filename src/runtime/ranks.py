"""The ranks of one job under DDP (`trainer=ddp`): who launches them, the few collectives the job needs, and what
happens when one of them fails. Every stage that trains or evaluates (the CAM job, the classifiers pass,
pretraining) opens its ranks here, whoever started them.

Who starts the ranks: Lightning's own launcher re-executes `sys.argv` for ranks > 0; under `python -m src.run -m
...` (Hydra multirun) that re-runs the whole sweep in every child. Instead the job launches its own ranks: rank 0
(the Hydra job's process) writes the job's resolved config to `<folder>/.ddp/config.yaml` and starts
`python -m src.ddp_rank <that file> <task>` for ranks 1..N-1 with `LOCAL_RANK`/`NODE_RANK`/`WORLD_SIZE`/`MASTER_*`
set, which is how Lightning recognises processes created outside it (it then launches nothing). So each job of a
sweep runs once with N ranks, whatever the Hydra launcher. Where processes already exist (SLURM tasks with
ntasks-per-node = devices, torchrun), nothing is launched. The process group is opened before anything
collective (cache decision, BLS broadcast) and closed when the job ends, so the next job of a multirun opens its own.

`data.batch_size` is the global batch: each rank takes `batch_size / world_size` (`Rank.batch_share`), so 1, 2
or 4 devices train the same recipe (and share one classifier cache key).

A failing rank ends every rank of its job with its one line: `src.runtime.rank_failure`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from lightning_fabric.plugins.environments.lightning import find_free_network_port
from lightning_fabric.utilities.distributed import _set_num_threads_if_needed
from omegaconf import OmegaConf
from pytorch_lightning import Trainer
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from src.config.checks import ConfigError
from src.runtime.rank_failure import FailureWatch, RankFailed, StopOnRankFailure

RANK_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TASKS = ("run", "pretrain")  # what `python -m src.ddp_rank` runs in a launched rank


@dataclass(frozen=True)
class Rank:
    """This process's place in the job: `rank` of `world_size` (1 = no DDP)."""

    index: int = 0
    world_size: int = 1

    @property
    def is_zero(self) -> bool:
        return self.index == 0

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


@contextmanager
def job_ranks(trainer: Trainer, folder: str | Path, config: dict, global_batch: int,
              task: str = "run") -> Iterator[Rank]:
    """Start the job's other ranks where needed (they run `task` of `src.ddp_rank` on `config`, the job's resolved
    config), open the process group, yield this process's `Rank`; on exit close the group and (rank 0) wait for
    the ranks it launched. `folder` is where the ranks meet on disk (the same path on every rank; a job's is
    `<output_dir>/.ddp`). One process without DDP: `Rank()`. A failure of any rank ends every rank of the job
    (`src.runtime.rank_failure`)."""
    world = _world_size(trainer)
    if world == 1 or not isinstance(trainer.strategy, DDPStrategy):
        yield Rank()
        return
    check_global_batch(global_batch, world)  # before any rank starts: one line, once
    folder = Path(folder)
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
        children = _start_ranks(config, folder, world, env, task)
    watch = FailureWatch(folder, world, children, exclusive=not saved_env)
    try:
        try:
            trainer.strategy.setup_environment()  # opens the process group now; Lightning's fit/test reuse it
            rank = Rank(trainer.global_rank, world)
            watch.start(rank.index, attempt=rank.broadcast(uuid.uuid4().hex[:12]))
            trainer.callbacks.append(StopOnRankFailure(watch))  # a rank busy in its own batches stops too
            yield rank
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


def _start_ranks(config: dict, folder: Path, world: int, env: dict, task: str) -> list[subprocess.Popen]:
    if task not in TASKS:
        raise ValueError(f"task={task!r}; expected one of {TASKS}")
    spec = folder / "config.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(config), spec)  # resolved: `${hydra:...}` only resolves inside the Hydra job
    repo = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    return [subprocess.Popen([sys.executable, "-m", "src.ddp_rank", str(spec), task], cwd=os.getcwd(),
                             env={**os.environ, **env, "LOCAL_RANK": str(rank), "PYTHONPATH": path})
            for rank in range(1, world)]


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
