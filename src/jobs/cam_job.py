"""The CAM job's steps on its built objects (`src.jobs.build.Job`): train or load the classifier → fit the CAM
method (BroadCAM's BLS) → the CAM pass and its scores → files and loggers (rank 0). Every step runs on the
trainer's root device, on a cache hit too."""
from __future__ import annotations

import logging
import uuid

import torch

from src.cams import CamSpec
from src.evaluation import CamEvaluation
from src.evaluation.checkpoint import checkpoint_file, remove_checkpoints
from src.evaluation.sharding import sharded_loader
from src.jobs.build import Job
from src.jobs.classifier import classifier_protocol
from src.reporting import save_cam_grid, write_json_atomic
from src.reporting.results import PER_IMAGE_FILE, write_per_image
from src.reporting.wandb_logging import log_job
from src.runtime.ranks import Rank, to_cpu
from src.runtime.timings import PhaseClock
from src.store.finished_jobs import RESULTS_FILE
from src.store.identity import weights_sha1

log = logging.getLogger(__name__)


def run_cam_job(job: Job, rank: Rank, clock: PhaseClock) -> dict:
    """The job's results (every rank; rank 0 also writes them). See `src.run.run_job` for the timings."""
    settings, trainer, out = job.settings, job.trainer, job.settings.output_dir
    _, classifier, _ = classifier_protocol(settings, job.model, job.datamodule, trainer, rank)
    device = trainer.strategy.root_device
    job.model.net.to(device)  # after `fit` Lightning moved it back to the CPU; on a cache hit it never left
    clock.lap("train_s")
    cam, bls_info = fit_cam_method(job, str(out) if rank.is_zero else None, device, step=trainer.global_step,
                                   rank=rank)
    if bls_info:
        clock.lap("bls")
        clock.split("bls", {"bls_extract_s": bls_info["extract_s"]}, rest="bls_fit_s")
    else:
        clock.lap("setup_s")
    evaluation = build_evaluation(job, cam, rank, classifier["identity"])
    trainer.test(evaluation, dataloaders=evaluation_loader(job, evaluation, rank), verbose=False)
    if weights_sha1(job.model.net.state_dict()) != classifier["identity"]["weights_sha1"]:
        raise RuntimeError(f"the CAM pass scored weights other than classifier {classifier['key']}'s (a checkpoint "
                           f"was loaded into it?); expected exactly the cached network of {classifier['dir']}")
    scores = evaluation.results(device)  # every rank: the metric states of all ranks are summed
    clock.lap("test")
    clock.split("test", evaluation.timings, rest="eval_loader_s")
    results = {
        "dataset": job.dataset_name, "backbone": settings.backbone_name, "cam": settings.cam_name,
        "proportion": settings.proportion, "seed": settings.seed, "n_train": len(job.datamodule.subset_indices),
        "n_eval": scores["n_scored"], "metrics": scores["metrics"],
        "details": {**scores["details"], "eval_split_size": len(job.datamodule.eval_set)},
        "classifier": classifier, "bls": bls_info, "ranks": rank.world_size,
        "rank_batch_size": rank.batch_share(settings.global_batch),  # data.batch_size is the global batch
        "config_fingerprint": settings.fingerprint, "job_id": uuid.uuid4().hex, "config": settings.resolved,
    }
    made_by = {"job_id": results["job_id"], "config_fingerprint": results["config_fingerprint"],
               "classifier": classifier["identity"]}
    if evaluation.scoremaps is not None:  # wsolevaluation's scoremap_root, written by the CAM pass (every rank)
        results["scoremap_root"] = str(evaluation.scoremaps.root)
    if not rank.is_zero:
        return results
    if job.export.seeds:  # before results.json, so an interrupted export reruns
        results["export"] = job.export(job.model.net, cam, job.datamodule, scores["metrics"].get("seed_threshold"),
                                       device=device, overwrite=settings.overwrite,
                                       job={k: made_by[k] for k in ("config_fingerprint", "classifier")})
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
    write_json_atomic(out / RESULTS_FILE, results)  # last: its presence means the job is complete
    remove_checkpoints(out)  # every rank's: the job is complete, nothing to resume
    clock.lap("write_s")  # the results' own write (a few ms) is after their timings were taken
    return results


def fit_cam_method(job: Job, output_dir: str | None, device: torch.device | str, step: int = 0,
                   rank: Rank = Rank()) -> tuple[CamSpec, dict | None]:
    """Run the CAM method's fitting step, if it has one, on the trained (or loaded) classifier: the same call
    on a cache hit and after training, on `device` (the trainer's root device). Returns the CAM to use (with
    `bls=` when a BLS was fitted, saved under `output_dir` when given) and the fit's info for results.json (None
    without a fitting step). Under DDP rank 0 fits once on the whole subset and broadcasts the BLS."""
    if job.fitting is None:
        return job.cam, None
    fitted = None
    if rank.is_zero:
        bls, info = job.fitting(job.model.net, job.datamodule, device, output_dir)
        fitted = to_cpu((bls.to("cpu"), info)) if rank.distributed else (bls, info)
    bls, info = rank.broadcast(fitted)
    bls.to(device)
    info.pop("indices")  # which images were fitted on: the job's subset, saved as subset_ids.txt
    metrics = {f"bls/{key}": float(info[key]) for key in ("fit_s", "extract_s", "n", "d", "C")}
    for logger in job.loggers if rank.is_zero else ():
        logger.log_metrics(metrics, step=step)
    log.info(f"BLS fitted on n={info['n']} images, d={info['d']} ({'+'.join(info['stages'])}), C={info['C']} in "
             f"{info['fit_s']:.2f} s (features {info['extract_s']:.2f} s)")
    return CamSpec(job.cam.name, job.cam.target_layers, {**job.cam.options, "bls": bls}), info


def build_evaluation(job: Job, cam: CamSpec, rank: Rank = Rank(), classifier: dict | None = None) -> CamEvaluation:
    """The `eval` group's CamEvaluation of `cam` on the job's net, with the dataset's protocol; it checkpoints
    into (and resumes from) this rank's file in the job dir (`eval.checkpoint_every`), for the classifier of
    identity `classifier` only (`src.store.identity`)."""
    datamodule, settings = job.datamodule, job.settings
    return job.evaluation(net=job.model.net, cam=cam, num_classes=datamodule.num_classes,
                          seed_background=datamodule.seed_background, ignore_index=datamodule.ignore_index,
                          metric_names=datamodule.metrics,
                          checkpoint_file=str(checkpoint_file(settings.output_dir, rank.index, rank.world_size)),
                          checkpoint_tag=settings.fingerprint, checkpoint_classifier=classifier,
                          scoremap_dir=job.scoremap_dir)


def evaluation_loader(job: Job, evaluation: CamEvaluation, rank: Rank = Rank()):
    """This rank's share of the evaluation split, after the batches a resumed evaluation already scored."""
    return sharded_loader(job.datamodule.test_dataloader(), rank.world_size, rank.index, evaluation.batches_done)
