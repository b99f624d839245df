"""Fitting the BLS once the classifier is trained: a plain function and the Lightning callback around it."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from src.bls.broad_learning_system import BroadLearningSystem
from src.bls.features import extract_gap_features


def fit_bls(
    net: nn.Module, dataloader: Iterable[dict], stages: Sequence[str], alpha: float, step: int,
    device: torch.device | str,
) -> tuple[BroadLearningSystem, dict]:
    """Extract GAP features of `stages` (in that order) over `dataloader` and fit a BLS on them.

    Returns the fitted BLS (on `device`, `bls.stages` = `stages`) and `info`: `fit_s`, `extract_s` (seconds),
    `n`, `d`, `C`, `stages` (list of str) and `indices` (`[n]` long, the dataset indices fitted on, in order).
    """
    stages = [str(name) for name in stages]
    start = time.perf_counter()
    features, labels, indices = extract_gap_features(net, dataloader, stages, device)
    extract_s = time.perf_counter() - start
    start = time.perf_counter()
    bls = BroadLearningSystem(alpha=alpha, step=step).fit(features, labels)
    bls.stages = stages
    if features.is_cuda:
        torch.cuda.synchronize(features.device)
    fit_s = time.perf_counter() - start
    n, d = features.shape
    info = dict(fit_s=fit_s, extract_s=extract_s, n=n, d=d, C=labels.shape[1], stages=stages, indices=indices)
    return bls, info


class BLSFitting(pl.Callback):
    """At the end of `Trainer.fit`, fit BroadCAM's BLS on the proportion's training subset.

    Uses `trainer.datamodule.train_subset_eval_dataloader()` (the subset with evaluation transforms) and
    `pl_module.net`; saves `<output_dir or trainer.default_root_dir>/<filename>`; sets `pl_module.bls`,
    `pl_module.bls_info` (`fit_s`, `extract_s`, `n`, `d`, `C`, `stages`) and `pl_module.bls_indices` ([n] long).
    """

    def __init__(self, stages: Sequence[str], alpha: float = 50.0, step: int = 256, filename: str = "bls.pt",
                 output_dir: str | None = None):
        self.stages = [str(name) for name in stages]
        self.alpha, self.step = float(alpha), int(step)
        self.filename, self.output_dir = filename, output_dir

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "train_subset_eval_dataloader"):
            raise AttributeError("BLSFitting needs trainer.datamodule.train_subset_eval_dataloader()")
        self.fit_for(pl_module, datamodule, output_dir=trainer.default_root_dir, loggers=trainer.loggers,
                     save=trainer.is_global_zero, step=trainer.global_step)

    def fit_for(self, pl_module: pl.LightningModule, datamodule, output_dir: str | None = None,
                loggers: Iterable = (), save: bool = True, step: int = 0) -> BroadLearningSystem:
        """Fit, save and attach the BLS for `pl_module` on `datamodule`'s subset; also called directly when
        the classifier comes from the cache (no `Trainer.fit`, so no `on_fit_end`)."""
        bls, info = fit_bls(pl_module.net, datamodule.train_subset_eval_dataloader(), self.stages,
                            self.alpha, self.step, pl_module.device)
        path = Path(self.output_dir or output_dir or ".") / self.filename
        if save:
            bls.save(path)
        pl_module.bls = bls
        pl_module.bls_indices = info.pop("indices")
        pl_module.bls_info = info
        # LightningModule.log is not allowed in on_fit_end, so the numbers go to the loggers directly
        metrics = {f"bls/{key}": float(info[key]) for key in ("fit_s", "extract_s", "n", "d", "C")}
        for logger in loggers:
            logger.log_metrics(metrics, step=step)
        rank_zero_info(
            f"BLS fitted on n={info['n']} images, d={info['d']} ({'+'.join(info['stages'])}), C={info['C']} "
            f"in {info['fit_s']:.2f} s (features {info['extract_s']:.2f} s) -> {path}"
        )
        return bls
