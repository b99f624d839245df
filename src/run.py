"""`python -m src.run`: one job = train a classifier on a proportion of the data (or load it from the cache)
→ (fit the BLS) → make CAMs of the evaluation split → score them → write `results.json`, a CAM figure, and log
(CSV, W&B). `python -m src.run -m proportion=1,2,5 cam=cam,gradcam` sweeps (Hydra multirun); a job whose
results already exist for the same config is skipped, so a killed sweep resumes where it stopped.
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
import pytorch_lightning as pl
from omegaconf import DictConfig

import src.jobs.launcher_schema  # noqa: F401  (registers the SLURM launcher's schema with srun_args)
import src.jobs.resolvers  # noqa: F401  (registers ${safe_dirname:...} and ${named_or:...})
from src.evaluation.checkpoint import remove_checkpoints
from src.jobs.cache import train_or_load
from src.jobs.config_checks import ConfigError, check_group_overrides
from src.jobs.distributed import Ranks, RankFailed, job_ranks
from src.jobs.identity import weights_sha1
from src.jobs.preemption import (EvaluationRequeue, choose_requeue_signal, install_requeue_handler,
                                 remove_lightning_hpc_checkpoints, trainer_plugins)
from src.jobs.setup import (JobInputs, build_evaluation, build_export, evaluation_loader, finish_loggers,
                            fit_cam_method, prepare_job)
from src.jobs.stages import STAGES, train_classifier_only
from src.jobs.sweeps import config_fingerprint, previous_results
from src.jobs.timings import PhaseClock
from src.reporting import save_cam_grid, write_json_atomic
from src.reporting.results import PER_IMAGE_FILE, write_per_image
from src.reporting.wandb_logging import log_job


def run_job(cfg: DictConfig) -> dict:
    """Run one job; returns the results dict also written to `<output_dir>/results.json`.

    `timings` are back-to-back phases that add up to `total_s`: setup_s (config, data, model, loggers, trainer),
    train_s (training or the cache load), bls_extract_s / bls_fit_s (BroadCAM: features of the subset, then the
    fit and its save), cam_s (the CAM passes of the evaluation, forwards included), eval_s (protocol + metrics),
    eval_loader_s (the rest of the test loop: batches loaded and moved, Lightning's loop), export_s (seeds on
    disk, when asked) and write_s (figure, loggers, results)."""
    clock = PhaseClock()
    out = Path(cfg.paths.output_dir)
    stage = cfg.get("stage", "all")
    if stage not in STAGES:
        raise ConfigError(f"stage={stage!r} is unknown; expected one of {list(STAGES)}")
    if stage == "classifiers":  # the sweep's first pass: train each classifier once, no CAMs
        return train_classifier_only(cfg)
    done = previous_results(cfg)
    if done is not None:
        print(f"[skip] {out / 'results.json'} exists for this config and classifier (overwrite=true redoes it)")
        return done
    install_requeue_handler()  # a submitit SLURM job: its requeue signal waits for a checkpoint boundary
    remove_lightning_hpc_checkpoints(out)
    # Before anything random is built: weight init, data order, augmentation and (workers=True) each loader
    # worker's RNG follow `seed`. On the CPU this makes a job's metrics repeatable; on CUDA, atomics in
    # backward/scatter kernels and cuDNN's autotuned algorithms still vary run to run unless
    # `trainer.deterministic=true` (Lightning then sets torch.use_deterministic_algorithms and cuDNN's flags).
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)  # quiet: a bad-input error stays one line
    job = prepare_job(cfg)  # validates the config, builds data, model, CAM, loggers; raises ConfigError
    try:
        trainer = hydra.utils.instantiate(cfg.trainer, logger=job.loggers, plugins=trainer_plugins(),
                                          callbacks=[*job.callbacks, EvaluationRequeue()])
        clock.lap("setup_s")
        with job_ranks(cfg, trainer) as ranks:  # DDP: this job's other ranks run alongside (src.jobs.distributed)
            results = _run_stages(cfg, job, trainer, ranks, clock)
    finally:
        finish_loggers(job.loggers)
    if ranks.is_zero:
        summary = " ".join(f"{k}={v:.2f}" for k, v in results["metrics"].items() if isinstance(v, float))
        timings = " ".join(f"{k}={v:.2f}" for k, v in results["timings"].items())
        print(f"[{cfg.cam.name} | {cfg.backbone.name} | {job.proportion:g}% | seed {cfg.seed}] {summary} "
              f"n_eval={results['n_eval']} | {timings} -> {out}")
    return results


def _run_stages(cfg: DictConfig, job: JobInputs, trainer: pl.Trainer, ranks: Ranks, clock: PhaseClock) -> dict:
    """Train or load → fit the CAM method → CAM pass and scores → files and loggers (rank 0). Every stage runs on
    the trainer's root device, on a cache hit too."""
    out = Path(cfg.paths.output_dir)
    _, classifier = train_or_load(cfg, job.model, job.datamodule, trainer, ranks)
    device = trainer.strategy.root_device
    job.model.net.to(device)  # after `fit` Lightning moved it back to the CPU; on a cache hit it never left
    clock.lap("train_s")
    cam, bls_info = fit_cam_method(job, str(out) if ranks.is_zero else None, device, step=trainer.global_step,
                                   ranks=ranks)
    if bls_info:
        clock.lap("bls")
        clock.split("bls", {"bls_extract_s": bls_info["extract_s"]}, rest="bls_fit_s")
    else:
        clock.lap("setup_s")
    evaluation = build_evaluation(cfg, job, cam, ranks, classifier["identity"])
    trainer.test(evaluation, dataloaders=evaluation_loader(job, evaluation, ranks), verbose=False)
    if weights_sha1(job.model.net.state_dict()) != classifier["identity"]["weights_sha1"]:
        raise RuntimeError(f"the CAM pass scored weights other than classifier {classifier['key']}'s (a checkpoint "
                           f"was loaded into it?); expected exactly the cached network of {classifier['dir']}")
    scores = evaluation.results(device)  # every rank: the metric states of all ranks are summed
    clock.lap("test")
    clock.split("test", evaluation.timings, rest="eval_loader_s")
    results = {
        "dataset": job.dataset_name, "backbone": cfg.backbone.name, "cam": cfg.cam.name,
        "proportion": job.proportion, "seed": int(cfg.seed), "n_train": len(job.datamodule.subset_indices),
        "n_eval": scores["n_scored"], "metrics": scores["metrics"],
        "details": {**scores["details"], "eval_split_size": len(job.datamodule.eval_set)},
        "classifier": classifier, "bls": bls_info, "ranks": ranks.world_size,
        "rank_batch_size": ranks.batch_share(int(cfg.data.batch_size)),  # data.batch_size is the global batch
        "config_fingerprint": config_fingerprint(cfg), "job_id": uuid.uuid4().hex, "config": job.resolved_config,
    }
    made_by = {"job_id": results["job_id"], "config_fingerprint": results["config_fingerprint"],
               "classifier": classifier["identity"]}
    if evaluation.scoremaps is not None:  # wsolevaluation's scoremap_root, written by the CAM pass (every rank)
        results["scoremap_root"] = str(evaluation.scoremaps.root)
    if not ranks.is_zero:
        return results
    export = build_export(cfg)
    if export.seeds:  # before results.json, so an interrupted export reruns
        results["export"] = export(job.model.net, cam, job.datamodule, scores["metrics"].get("seed_threshold"),
                                   device=device, job={k: made_by[k] for k in ("config_fingerprint", "classifier")},
                                   overwrite=bool(cfg.get("overwrite", False)))
        clock.lap("export_s")
    class_names = list(job.datamodule.class_names)
    save_cam_grid(evaluation.figure_samples, class_names, out / "cams.png", job.datamodule.ignore_index)
    if "per_image" in scores:
        results["per_image_scores"] = write_per_image(out / PER_IMAGE_FILE, scores["per_image"], made_by).name
    else:
        (out / PER_IMAGE_FILE).unlink(missing_ok=True)  # an earlier run's counts are not these results'

    for logger in job.loggers:
        logger.log_metrics({f"eval/{k}": v for k, v in scores["metrics"].items() if v is not None})
    clock.lap("write_s")
    results["timings"] = clock.summary()
    log_job(job.loggers, results, evaluation.figure_samples, class_names, job.datamodule.ignore_index)
    write_json_atomic(out / "results.json", results)  # last: its presence means the job is complete
    remove_checkpoints(out)  # every rank's: the job is complete, nothing to resume
    clock.lap("write_s")  # the results' own write (a few ms) is after their timings were taken
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        results = run_job(cfg)
    except ConfigError as error:
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
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    main()
