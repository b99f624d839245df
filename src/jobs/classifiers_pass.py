"""The classifiers pass of a sweep (`job=classifiers`): each job trains its classifier into the cache and stops,
so that the CAM jobs of the same grid (`job=cams`, the default) then start as cache hits and no GPU waits on
another job's training.

One job per classifier: a job whose classifier is already cached (by this launch, under `force_retrain`), or is
being trained right now by another job of the sweep (its cache lock is held), returns with `[skip]` instead of
waiting, so CAM-axis duplicates of a grid (same classifier key, another `cam`) cost only a start.
`make reproduce-*` also drops the CAM axis from that pass (`cam=cam`), so the pass launches one job per key.
Under DDP the pass opens its ranks like any job (`job_ranks`) and follows the same rank protocol
(`classifier_protocol`): rank 0 decides, every rank trains, rank 0 saves.
"""
from __future__ import annotations

import logging
import time

from src.jobs.build import Job
from src.jobs.classifier import classifier_protocol
from src.reporting.results import write_json_atomic
from src.runtime.ranks import Rank

CLASSIFIER_FILE = "classifier.json"
log = logging.getLogger(__name__)


def train_classifier_only(job: Job, rank: Rank, started: float) -> dict:
    """Train (or find) the job's classifier; write `<output_dir>/classifier.json` (what was done and how long)
    and return it. No CAM, no evaluation, no results.json. `started`: the job's start (`time.perf_counter()`)."""
    settings = job.settings
    train_s, info, decision = classifier_protocol(settings, job.model, job.datamodule, job.trainer, rank,
                                                  classifiers_pass=True)
    key = info["key"]
    summary = {"job": "classifiers", "key": key, "dir": info["dir"], "trained": decision == "train"}
    if not rank.is_zero:
        return summary
    if decision != "train":
        reason = "is in the cache" if decision == "hit" else "is being trained by another job"
        log.info(f"[skip] classifier {key} {reason} ({info['dir']})")
        return summary
    summary.update(identity=info["identity"], resumed_from_steps=info["resumed_from_steps"],
                   train_s=round(train_s, 3), total_s=round(time.perf_counter() - started, 3),
                   n_train=len(job.datamodule.subset_indices), ranks=rank.world_size)
    write_json_atomic(settings.output_dir / CLASSIFIER_FILE, summary)
    log.info(f"[classifier {key}] trained on {summary['n_train']} images with {rank.world_size} rank(s) in "
             f"{summary['train_s']:.1f} s")
    return summary
