"""Preemption and time limits on SLURM, with one owner: submitit's requeue.

SLURM sends `USR1` (`--signal=USR1@<signal_delay_s>`) before a time limit, and before a preemption where the
cluster is set up so. Two mechanisms could answer it: Lightning's `SLURMEnvironment(auto_requeue=True)` (its
default) and submitit's signal handler (the Hydra launcher's job). We keep submitit's and switch Lightning's off:
- submitit's handler lives for the whole job process (cache load, BLS fit, CAM pass, export), Lightning's only
  while a `fit`/`test` runs (a signal during the BLS fit killed the job);
- submitit tells a time-out from a preemption and bounds the requeues after time-outs (`max_num_timeout`),
  Lightning requeues forever;
- Lightning's requeue is tied to its `hpc_ckpt_<n>.ckpt` in the job dir, which every later `fit` *and* `test` of
  that dir loads (that is how the CAM pass once scored a step-415 network while the cache held the step-1,000
  one); our resume points are ours: the training checkpoint (`src.jobs.training`) and the evaluation's
  metric checkpoint (`src.evaluation.checkpoint`).
submitit listens on `USR2` by default; the launching process sets `SUBMITIT_PREEMPT_SIGNAL=USR1` (unless set),
which both the `#SBATCH --signal` line and the job's handler read, so one signal, SLURM's usual one, does it.

submitit's handler requeues at once, wherever the job is. Inside a training step or a CAM batch that would lose
the work since the last periodic checkpoint, so `install()` puts a deferring handler in front of it: inside a
loop that checkpoints (`defer(True)`), the signal only sets `requested`; the loop saves its state at the next
step or batch boundary and calls `requeue_now()` (submitit's checkpoint-and-requeue, which exits). Anywhere else
the signal goes straight to submitit. A job that is not a submitit SLURM job (a local run, your own sbatch
script) has no requeue: a re-run resumes from the same checkpoints.
"""
from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from pytorch_lightning import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)

REQUEUE_SIGNAL = "USR1"
SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"  # read by submitit at import, in the launcher and in the job


def choose_requeue_signal() -> None:
    """In the launching process, before submitit is imported: the signal sbatch asks for and the job handles."""
    os.environ.setdefault(SIGNAL_ENV, REQUEUE_SIGNAL)


def trainer_plugins() -> list:
    """Lightning's SLURM environment with its auto-requeue off, where Lightning would detect SLURM (else none)."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def remove_lightning_hpc_checkpoints(job_dir: str | Path) -> None:
    """Lightning loads `<default_root_dir>/hpc_ckpt_<n>.ckpt` into every `fit` and `test` under SLURM; ones left by
    an older version of this project must not replace the cached network."""
    for path in sorted(Path(job_dir).glob("hpc_ckpt_*.ckpt")):
        path.unlink(missing_ok=True)
        log.info(f"[requeue] removed {path}: a leftover Lightning auto-requeue checkpoint (resumes are ours now)")


class Preemption:
    """The job process's requeue signal: deferred to a checkpoint boundary inside checkpointing loops."""

    def __init__(self):
        self.requested = False
        self._submitit_handler = None
        self._pid: int | None = None
        self._signum: int | None = None
        self._deferring = False

    @property
    def installed(self) -> bool:
        return self._submitit_handler is not None and self._pid == os.getpid()

    def install(self) -> bool:
        """Put the deferring handler in front of submitit's, when this process is a submitit SLURM job."""
        try:
            from submitit.core.job_environment import JobEnvironment, SignalHandler
        except ImportError:
            return False
        signum = JobEnvironment._usr_sig()
        current = signal.getsignal(signum)
        if current == self._on_signal:
            return True
        if not isinstance(getattr(current, "__self__", None), SignalHandler):
            return False
        self._submitit_handler, self._signum, self._pid = current, signum, os.getpid()
        self.requested = False
        signal.signal(signum, self._on_signal)
        log.info(f"[requeue] submitit requeues this job on {signal.Signals(signum).name}, after a checkpoint when it "
              "arrives during training or the CAM pass")
        return True

    def defer(self, on: bool) -> None:
        """Inside a loop that checkpoints at its boundaries (on), or outside (off: a signal requeues at once)."""
        self._deferring = bool(on)

    def _on_signal(self, signum, frame) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker inherited the handler: the main process acts
            return
        if self._deferring:
            self.requested = True
            log.info(f"[requeue] {signal.Signals(signum).name} received: checkpoint at the next boundary, then requeue")
        else:
            self._submitit_handler(signum, frame)

    def requeue_now(self) -> None:
        """submitit's checkpoint-and-requeue: requeues this SLURM job and exits the process."""
        self.requested = False
        self._deferring = False
        if self._submitit_handler is None:
            raise RuntimeError("requeue requested outside a submitit SLURM job")
        self._submitit_handler(self._signum, None)


PREEMPTION = Preemption()


def install_requeue_handler() -> bool:
    """`PREEMPTION.install()`, for entry points: under submitit `src.run`'s functions are pickled by value (it runs
    as `__main__`), so they must reach this module's one instance through a function, not hold their own copy."""
    return PREEMPTION.install()


class EvaluationRequeue(Callback):
    """The CAM pass's boundary: at the start of a batch after the signal, save the evaluation's metric checkpoint
    (`CamEvaluation.checkpoint`, all batches done so far) and requeue; the requeued job resumes after them."""

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        PREEMPTION.defer(getattr(pl_module, "checkpoint", None) is not None)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        PREEMPTION.defer(False)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        PREEMPTION.defer(False)

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        if PREEMPTION.requested:
            pl_module.checkpoint.save(pl_module.batches_done, pl_module, pl_module.figure_samples)
            done, path = pl_module.batches_done, pl_module.checkpoint.path
            log.info(f"[eval] requeue signal: {done} batches checkpointed to {path}")
            PREEMPTION.requeue_now()
