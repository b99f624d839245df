"""Lightning's console noise that says nothing about the job, silenced where it comes from (one message from one
module each, never a category or all warnings), so a job's console holds its own lines and real warnings.

Each run printed (pytorch_lightning 2.6, torch 2.14):
- "💡 Tip: For seamless cloud logging … litlogger …" (and, with a ModelCheckpoint, the same for litmodels):
  `rank_zero_info` from the trainer's logger and callback connectors whenever no LitLogger is attached; no
  argument, attribute or environment variable turns it off, so a filter on the logger it is sent to drops it.
- "`isinstance(treespec, LeafSpec)` is deprecated …" (FutureWarning): torch deprecated `LeafSpec`, and
  Lightning's own `pytorch_lightning.utilities._pytree` still builds one for every logged value.
- "The `srun` command is available on your system but is not used" (PossibleUserWarning from
  `lightning_fabric.plugins.environments.slurm`) on a machine with SLURM's tools, outside a SLURM job: the
  jobs here never use `srun` by hand (a local job runs its DDP ranks itself, submitit starts SLURM's tasks),
  so the hint, which assumes `python train.py` launched inside an allocation, is wrong for every job.
"""
from __future__ import annotations

import logging
import warnings

from lightning_fabric.utilities.warnings import PossibleUserWarning

TIP_PREFIX = "💡 Tip:"
# Both names: lightning_utilities' `rank_zero_info` logs to whichever of the two packages was imported last.
RANK_ZERO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP_PREFIX)


_DROP_TIPS = _DropTips()


def quiet_lightning() -> None:
    """Silence Lightning's tips and its known third-party warnings in this process. Idempotent; call it before the
    Trainer is built, in every process that builds one (a DDP job's ranks included)."""
    for name in RANK_ZERO_LOGGERS:
        logging.getLogger(name).addFilter(_DROP_TIPS)  # a filter already attached is not added twice
    # `append=False` (the default) puts a filter first and removes an equal one first: calling twice adds nothing
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"pytorch_lightning\.utilities\._pytree")
    warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used",
                            category=PossibleUserWarning, module=r"lightning_fabric\.plugins\.environments\.slurm")
