"""The ranks of one job under DDP (`trainer=ddp`): who launches them, and the few collectives the job needs.

Mechanism (issue 12): Lightning's own launcher re-executes `sys.argv` for ranks > 0; under `python -m src.run -m
...` (Hydra multirun) that re-runs the whole sweep in every child. Instead the job launches its own ranks: rank 0
(the Hydra job's process) writes the job's resolved config to `<output_dir>/.ddp/config.yaml` and starts
`python -m src.ddp_rank <that file>` for ranks 1..N-1 with `LOCAL_RANK`/`NODE_RANK`/`WORLD_SIZE`/`MASTER_*` set,
which is how Lightning recognises processes created outside it (it then launches nothing). So each job of a
sweep runs once with N ranks, whatever the Hydra launcher. Where processes already exist (SLURM tasks with
ntasks-per-node = devices, torchrun), nothing is launched. The process group is opened before anything
collective (cache decision, BLS broadcast) and closed when the job ends, so the next job of a multirun opens its own.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from lightning_fabric.plugins.environments.lightning import find_free_network_port
from lightning_fabric.utilities.distributed import _set_num_threads_if_needed
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import Trainer
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from src.jobs.config_checks import ConfigError

RANK_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


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


def _launches_script(trainer: Trainer) -> bool:
    """True where Lightning itself would re-run `sys.argv` for the other ranks."""
    strategy = trainer.strategy
    return (isinstance(strategy, DDPStrategy) and isinstance(strategy.launcher, _SubprocessScriptLauncher)
            and not strategy.cluster_environment.creates_processes_externally)


def _world_size(trainer: Trainer) -> int:
    strategy = trainer.strategy
    return int(getattr(strategy, "num_nodes", 1)) * int(getattr(strategy, "num_processes", 1))


@contextmanager
def job_ranks(cfg: DictConfig, trainer: Trainer) -> Iterator[Ranks]:
    """Start the job's other ranks where needed, open the process group, yield this process's `Ranks`; on exit
    close the group and (rank 0) wait for the ranks it launched. One process without DDP: `Ranks()`."""
    world = _world_size(trainer)
    if world == 1 or not isinstance(trainer.strategy, DDPStrategy):
        yield Ranks()
        return
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
        children = _start_ranks(cfg, world, env)
    watcher = _watch(children)
    failed = False
    try:
        trainer.strategy.setup_environment()  # opens the process group now; Lightning's fit/test reuse it
        yield Ranks(trainer.global_rank, world)
    except BaseException:
        failed = True  # the other ranks wait in a collective that never comes: end them now
        raise
    finally:
        watcher.set()
        if dist.is_initialized():
            dist.destroy_process_group()
        _reap(children, timeout_s=0.0 if failed else 120.0, check=not failed)
        for key, value in saved_env.items():  # the next job of a multirun starts as this one did
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)


def _start_ranks(cfg: DictConfig, world: int, env: dict) -> list[subprocess.Popen]:
    spec = Path(cfg.paths.output_dir) / ".ddp" / "config.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, spec, resolve=True)  # resolved here: `${hydra:...}` only resolves inside the Hydra job
    repo = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    return [subprocess.Popen([sys.executable, "-m", "src.ddp_rank", str(spec)], cwd=os.getcwd(),
                             env={**os.environ, **env, "LOCAL_RANK": str(rank), "PYTHONPATH": path})
            for rank in range(1, world)]


def _watch(children: list[subprocess.Popen]) -> threading.Event:
    """A rank that dies leaves the others blocked in a collective until its timeout (30 min): end the job at once,
    as Lightning's own launcher does."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1.0):
            failed = [c for c in children if c.poll() not in (None, 0)]
            if failed and not stop.is_set():
                print(f"error: DDP rank process {failed[0].pid} exited with code {failed[0].returncode}; "
                      "stopping the job", file=sys.stderr, flush=True)
                for child in children:
                    child.kill()
                os._exit(1)

    if children:
        threading.Thread(target=watch, daemon=True, name="ddp-rank-watch").start()
    return stop


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
        raise RuntimeError(f"DDP rank processes exited with codes {codes}")


def to_cpu(value):
    """`value` with its tensors on the CPU (before a broadcast: a CUDA tensor would land on rank 0's GPU)."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value
