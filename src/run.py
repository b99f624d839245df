"""`python -m src.run`: one job = train a classifier on a proportion of the data (or load it from the cache)
→ (fit the BLS) → make CAMs of the evaluation split → score them → write `results.json`, a CAM figure, and log
(CSV, W&B). `python -m src.run -m proportion=1,2,5 cam=cam,gradcam` sweeps (Hydra multirun); a job whose
results already exist for the same config is skipped, so a killed sweep resumes where it stopped.
"""
from __future__ import annotations

import logging
import sys
import time

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import src.config.launcher_schema  # noqa: F401  (registers the SLURM launcher's schema with srun_args)
import src.config.resolvers  # noqa: F401  (registers the configs' resolvers: ${named_or:...}, ${job_dirname:...}, ...)
from src.config.checks import check_group_overrides
from src.jobs.build import build_job, check_config, job_settings
from src.jobs.cam_job import run_cam_job
from src.jobs.classifiers_pass import train_classifier_only
from src.reporting.wandb_logging import finish_loggers
from src.runtime.logs import rank_zero_handlers
from src.runtime.preemption import choose_requeue_signal, install_requeue_handler, remove_lightning_hpc_checkpoints
from src.runtime.rank_failure import BAD_INPUT, RankFailed  # BAD_INPUT: one line, exit 2, no traceback
from src.runtime.ranks import job_ranks
from src.runtime.timings import PhaseClock
from src.store.finished_jobs import RESULTS_FILE, previous_results

log = logging.getLogger("src.run")  # its name also when it runs as __main__ (python -m, submitit)


def run_job(cfg: DictConfig) -> dict:
    """Run one job; returns the results dict also written to `<output_dir>/results.json` (`job=classifiers`: the
    classifier's summary, also written to `<output_dir>/classifier.json`).

    `timings` are back-to-back phases that add up to `total_s`: setup_s (config, data, model, loggers, trainer),
    train_s (training or the cache load), bls_extract_s / bls_fit_s (BroadCAM: features of the subset, then the
    fit and its save), cam_s (the CAM passes of the evaluation, forwards included), eval_s (protocol + metrics),
    eval_loader_s (the rest of the test loop: batches loaded and moved, Lightning's loop), export_s (seeds on
    disk, when asked) and write_s (figure, loggers, results)."""
    clock, started = PhaseClock(), time.perf_counter()
    rank_zero_handlers()  # DDP: ranks > 0 keep their warnings and errors, not rank 0's story
    check_config(cfg)  # every bad value a ConfigError naming its key, before anything is built
    settings = job_settings(cfg)
    out = settings.output_dir
    if settings.kind == "cams" and not settings.overwrite:
        done = previous_results(out, settings.fingerprint, settings.current_classifier)
        if done is not None:
            log.info(f"[skip] {out / RESULTS_FILE} exists for this config and classifier (overwrite=true redoes it)")
            return done
    install_requeue_handler()  # a submitit SLURM job: its requeue signal waits for a checkpoint boundary
    remove_lightning_hpc_checkpoints(out)
    job = build_job(cfg, settings)
    try:
        clock.lap("setup_s")
        with job_ranks(job.trainer, settings.ddp_folder, settings.resolved, settings.global_batch) as rank:
            if settings.kind == "classifiers":  # the sweep's first pass: train each classifier once, no CAMs
                return train_classifier_only(job, rank, started)
            results = run_cam_job(job, rank, clock)
    finally:
        finish_loggers(job.loggers)
    if "timings" not in results:  # a DDP rank > 0: rank 0 writes and reports the results
        return results
    summary = " ".join(f"{k}={v:.2f}" for k, v in results["metrics"].items() if isinstance(v, float))
    timings = " ".join(f"{k}={v:.2f}" for k, v in results["timings"].items())
    log.info(f"[{settings.cam_name} | {settings.backbone_name} | {settings.proportion:g}% | seed {settings.seed}] "
             f"{summary} n_eval={results['n_eval']} | {timings} -> {out}")
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        results = run_job(cfg)
    except BAD_INPUT as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except RankFailed as error:  # a DDP rank failed: its one line ends the job's output
        print(f"error: {error}", file=sys.stderr, flush=True)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra records this job as failed and runs the sweep's other jobs
        sys.exit(1)
    return results["metrics"].get("seed_mIoU") if "metrics" in results else None


if __name__ == "__main__":
    choose_requeue_signal()  # before the SLURM launcher imports submitit: its sbatch --signal and the job's handler
    try:
        check_group_overrides(sys.argv[1:])
    except BAD_INPUT as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    main()
