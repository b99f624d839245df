"""Fitting BroadCAM's BLS once the classifier is trained (or loaded from the cache): called by the job
(`src.jobs.build.fit_cam_method`) on both paths, it returns the BLS; nothing is attached to other objects.
`BLS_FILE` is the one name of the fitted BLS in a job dir (written here, read by `src.jobs.artifacts`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from src.bls.broad_learning_system import BroadLearningSystem
from src.bls.features import extract_gap_features
from src.store.atomic import atomic_path

BLS_FILE = "bls.pt"


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


class BLSFitting:
    """BroadCAM's fitting step, built from `cam.fitting` in the config: fits the BLS on the proportion's
    training subset (the datamodule's `train_subset_eval_dataloader()`, evaluation transforms)."""

    def __init__(self, stages: Sequence[str], alpha: float = 50.0, step: int = 256):
        self.stages = [str(name) for name in stages]
        self.alpha, self.step = float(alpha), int(step)

    def __call__(self, net: nn.Module, datamodule, device: torch.device | str,
                 output_dir: str | Path | None = None) -> tuple[BroadLearningSystem, dict]:
        """Fit on `datamodule`'s subset; save `<output_dir>/bls.pt` when `output_dir` is given. Returns
        (bls, info) as `fit_bls`; the CAM gets it as `create_cam(..., bls=bls)`."""
        return self.fit_loader(net, datamodule.train_subset_eval_dataloader(), device, output_dir)

    def fit_loader(self, net: nn.Module, dataloader: Iterable[dict], device: torch.device | str,
                   output_dir: str | Path | None = None) -> tuple[BroadLearningSystem, dict]:
        """The same step on any loader of `{"image", "labels", "index"}` batches (the Lightning callback's)."""
        bls, info = fit_bls(net, dataloader, self.stages, self.alpha, self.step, device)
        if output_dir is not None:
            with atomic_path(Path(output_dir) / BLS_FILE) as tmp:  # a killed job never leaves half a BLS
                bls.save(tmp)
        return bls, info
