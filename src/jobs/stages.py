"""The classifiers stage of a sweep (`stage=classifiers`): each job trains its classifier into the cache and
stops, so that the CAM jobs of the same grid (`stage=all`, the default) then start as cache hits and no GPU
waits on another job's training.

One job per classifier: a job whose classifier is already cached (by this launch, under `force_retrain`), or is
being trained right now by another job of the sweep (its cache lock is held), returns with `[skip]` instead of
waiting, so CAM-axis duplicates of a grid (same classifier key, another `cam`) cost only a start.
`make reproduce-*` also drops the CAM axis from that pass (`cam=cam`), so the stage launches one job per key.
Under DDP the stage opens its ranks like any job (`job_ranks`) and follows the same rank protocol
(`classifier_protocol`): rank 0 decides, every rank trains, rank 0 saves.
"""
from __future__ import annotations

import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from src.jobs.cache import classifier_protocol
from src.jobs.distributed import job_ranks
from src.jobs.preemption import install_requeue_handler, trainer_plugins
from src.jobs.setup import finish_loggers, prepare_job
from src.reporting.results import write_json_atomic

STAGES = ("all", "classifiers")
CLASSIFIER_FILE = "classifier.json"


def train_classifier_only(cfg: DictConfig) -> dict:
    """Train (or find) the job's classifier; write `<output_dir>/classifier.json` (what was done and how long)
    and return it. No CAM, no evaluation, no results.json."""
    started = time.perf_counter()
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)  # as src.run: same classifier either way
    job = prepare_job(cfg)
    try:
        install_requeue_handler()  # a submitit SLURM job: the requeue signal waits for a training checkpoint
        trainer = hydra.utils.instantiate(cfg.trainer, logger=job.loggers, callbacks=job.callbacks,
                                          plugins=trainer_plugins())
        with job_ranks(cfg, trainer) as ranks:
            train_s, info, decision = classifier_protocol(cfg, job.model, job.datamodule, trainer, ranks, stage=True)
    finally:
        finish_loggers(job.loggers)
    key = info["key"]
    summary = {"stage": "classifiers", "key": key, "dir": info["dir"], "trained": decision == "train"}
    if not ranks.is_zero:
        return summary
    if decision != "train":
        reason = "is in the cache" if decision == "hit" else "is being trained by another job"
        print(f"[skip] classifier {key} {reason} ({info['dir']})")
        return summary
    summary.update(identity=info["identity"], resumed_from_steps=info["resumed_from_steps"],
                   train_s=round(train_s, 3), total_s=round(time.perf_counter() - started, 3),
                   n_train=len(job.datamodule.subset_indices), ranks=ranks.world_size)
    write_json_atomic(Path(cfg.paths.output_dir) / CLASSIFIER_FILE, summary)
    print(f"[classifier {key}] trained on {summary['n_train']} images with {ranks.world_size} rank(s) in "
          f"{summary['train_s']:.1f} s")
    return summary
