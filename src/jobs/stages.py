"""The classifiers stage of a sweep (`stage=classifiers`): each job trains its classifier into the cache and
stops, so that the CAM jobs of the same grid (`stage=all`, the default) then start as cache hits and no GPU
waits on another job's training.

One job per classifier: a job whose classifier is already cached (by this launch, under `force_retrain`), or is
being trained right now by another job of the sweep (its cache lock is held), returns at once with `[skip]`
instead of waiting, so CAM-axis duplicates of a grid (same classifier key, another `cam`) cost only a start.
`make reproduce-*` also drops the CAM axis from that pass (`cam=cam`), so the stage launches one job per key.
"""
from __future__ import annotations

import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from src.jobs.cache import ClassifierCache, classifier_key, must_train, sweep_launch_id, train_or_load_held
from src.jobs.preemption import install_requeue_handler, trainer_plugins
from src.jobs.setup import finish_loggers, prepare_job
from src.reporting.results import write_json_atomic

STAGES = ("all", "classifiers")
CLASSIFIER_FILE = "classifier.json"


def train_classifier_only(cfg: DictConfig) -> dict:
    """Train (or find) the job's classifier; write `<output_dir>/classifier.json` (what was done and how long)
    and return it. No CAM, no evaluation, no results.json."""
    started = time.perf_counter()
    cache = ClassifierCache(cfg.paths.cache_dir)
    key = classifier_key(cfg)
    force = bool(cfg.get("force_retrain", False))
    summary = {"stage": "classifiers", "key": key, "dir": str(cache.path(key)), "trained": False}
    if not must_train(cache, key, force, sweep_launch_id()):
        print(f"[skip] classifier {key} is in the cache ({cache.path(key)})")
        return summary
    with cache.lock(key, wait=False) as held:
        if not held:
            print(f"[skip] classifier {key} is being trained by another job")
            return summary
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)  # as src.run: same classifier either way
        job = prepare_job(cfg)
        try:
            install_requeue_handler()  # a submitit SLURM job: the requeue signal waits for a training checkpoint
            trainer = hydra.utils.instantiate(cfg.trainer, logger=job.loggers, callbacks=job.callbacks,
                                              plugins=trainer_plugins())
            train_s, info = train_or_load_held(cfg, cache, key, job.model, job.datamodule, trainer)
        finally:
            finish_loggers(job.loggers)
    summary.update(trained=not info["cache_hit"], identity=info["identity"],
                   resumed_from_steps=info["resumed_from_steps"], train_s=round(train_s, 3),
                   total_s=round(time.perf_counter() - started, 3), n_train=len(job.datamodule.subset_indices))
    write_json_atomic(Path(cfg.paths.output_dir) / CLASSIFIER_FILE, summary)
    print(f"[classifier {key}] trained on {summary['n_train']} images in {summary['train_s']:.1f} s")
    return summary
