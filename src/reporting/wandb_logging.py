"""W&B for sweeps (called by `src.jobs.build` and `src.run`): which group/name/config a job's run gets, and what a
finished job logs to it.

- `wandb_run_settings(...)`: kwargs for `WandbLogger` — one group per sweep (its `sweep_name`, else the
  multirun's sweep dir name), the run named by the job's overrides (`cam=gradcam,proportion=2`), and the
  resolved config with dataset/backbone/cam/proportion/seed as top-level fields (the nested `backbone` and
  `cam` configs move to `backbone_cfg` and `cam_cfg`, so the top-level names stay plain values to group by).
- `log_job(...)`: at the end of a job, the metrics into the run summary, CAM overlays as `wandb.Image` with the
  ground-truth mask and the CAM seeds as named-class masks, and a table of per-class IoU.
"""
from __future__ import annotations

import numpy as np
import torch
from pytorch_lightning.loggers import Logger, WandbLogger

from src.metrics.seed_rule import seed_labels
from src.reporting.overlay import overlay

# Without a seed protocol (WSOL datasets: masks are 0 background / 1 object), a pixel is foreground where the
# CAM reaches half of its peak, the usual single-threshold reading of a min-max normalised map.
FOREGROUND_THRESHOLD = 0.5


def wandb_run_settings(resolved: dict, dataset: str, sweep_group: str | None = None,
                       job_name: str | None = None) -> dict:
    """`{"group": str | None, "name": str, "config": dict}` for `WandbLogger(**settings)` (or wandb.init), from the
    job's resolved config, its dataset's name and what Hydra knows of its sweep (`src.config.launch.sweep_names`:
    the multirun folder's name, the job's overrides; None outside one): the group is `sweep_name`, else that
    folder's name; the run is named by the overrides, else by cam/proportion/seed."""
    group = resolved.get("sweep_name") or sweep_group
    cam, backbone = resolved["cam"]["name"], resolved["backbone"]["name"]
    proportion, seed = float(resolved["proportion"]), int(resolved["seed"])
    name = job_name or f"cam={cam},proportion={proportion:g},seed={seed}"
    config = {key: value for key, value in resolved.items() if key not in ("backbone", "cam")}
    top = {"dataset": dataset, "backbone": backbone, "cam": cam, "proportion": proportion, "seed": seed}
    return {"group": None if group is None else str(group), "name": str(name),
            "config": {**config, "backbone_cfg": resolved["backbone"], "cam_cfg": resolved["cam"], **top}}


def log_job(loggers: list[Logger], results: dict, figure_samples: list[dict], class_names: list[str],
            ignore_index: int) -> None:
    """Log a finished job to every `WandbLogger` in `loggers` (a no-op without one).

    `results` is the job's results dict (metrics, details, timings, classifier, n_train, n_eval);
    `figure_samples` are CamEvaluation's (`image` [3,H,W] normalised, `labels` [C], `mask` [H,W],
    `cams` [C,H,W] seed maps in [0, 1]); `class_names` the C names; `ignore_index` the masks' ignore value.
    """
    runs = [logger.experiment for logger in loggers if isinstance(logger, WandbLogger)]
    if not runs:
        return
    import wandb

    threshold = results["metrics"].get("seed_threshold")
    has_seeds = "seed_mIoU" in results["metrics"]
    labels = class_labels(class_names, has_seeds, threshold is not None, ignore_index)
    images = [overlay_image(wandb, sample, class_names, labels, threshold, has_seeds) for sample in figure_samples]
    per_class = results.get("details", {}).get("per_class_IoU")
    for run in runs:
        run.summary.update(summary_values(results))
        payload = {"eval/cam_overlays": images} if images else {}
        if per_class:
            payload["eval/per_class_IoU"] = per_class_table(wandb, per_class, class_names)
        if payload:
            run.log(payload)


def summary_values(results: dict) -> dict:
    """Flat summary entries: `eval/<metric>`, `timings/<name>`, n_train, n_eval, classifier/cache_hit."""
    summary = {f"eval/{k}": v for k, v in results["metrics"].items() if v is not None}
    summary.update({f"timings/{k}": v for k, v in results.get("timings", {}).items()})
    summary.update({k: results[k] for k in ("n_train", "n_eval") if k in results})
    if "classifier" in results:
        summary["classifier/cache_hit"] = bool(results["classifier"].get("cache_hit"))
    return summary


def class_labels(class_names: list[str], has_seeds: bool, background: bool, ignore_index: int) -> dict[int, str]:
    """Mask value → name, in the dataset's mask convention (the same for ground truth and seeds)."""
    if not has_seeds:
        labels = {0: "background", 1: "foreground"}
    elif background:
        labels = {0: "background", **{i + 1: name for i, name in enumerate(class_names)}}
    else:
        labels = dict(enumerate(class_names))
    return {**labels, int(ignore_index): "ignore"}


def seed_prediction(cams: torch.Tensor, labels: torch.Tensor, threshold: float | None, has_seeds: bool = True
                ) -> torch.Tensor:
    """The CAM seeds of one image as a label map [H, W] long, in the mask convention of `class_labels`.

    cams [C, H, W] in [0, 1], labels [C] 0/1. With a seed protocol: the argmax over the image's classes, with a
    constant background plane at `threshold` (0 = background, c + 1 = class c) or without one (`threshold`
    None: class indices). Without (WSOL): 1 where the max over classes ≥ FOREGROUND_THRESHOLD, else 0.
    """
    if not has_seeds:
        return (cams.amax(0) >= FOREGROUND_THRESHOLD).long()
    return seed_labels(cams, labels > 0, threshold)


def overlay_image(wandb, sample: dict, class_names: list[str], labels: dict[int, str], threshold: float | None,
                  has_seeds: bool):
    """The image blended with its CAM (max over its classes, jet) as a `wandb.Image` captioned with its classes,
    with two masks named by `labels`: `ground_truth` and `prediction` (the seeds)."""
    blended = overlay(sample["image"], sample["cams"].amax(0))
    seeds = seed_prediction(sample["cams"], sample["labels"], threshold, has_seeds)
    present = [class_names[c] for c in torch.nonzero(sample["labels"] > 0).flatten().tolist()]
    masks = {"ground_truth": {"mask_data": sample["mask"].numpy().astype(np.int64), "class_labels": labels},
             "prediction": {"mask_data": seeds.numpy().astype(np.int64), "class_labels": labels}}
    return wandb.Image(blended, masks=masks, caption=", ".join(present))


def per_class_table(wandb, per_class_iou: list[float | None], class_names: list[str]):
    """A `wandb.Table` (class, IoU %); a leading background row when the list has one more entry."""
    names = list(class_names)
    if len(per_class_iou) == len(names) + 1:
        names = ["background", *names]
    if len(per_class_iou) != len(names):
        names = [str(i) for i in range(len(per_class_iou))]
    return wandb.Table(columns=["class", "IoU"], data=[[n, v] for n, v in zip(names, per_class_iou)])


def finish_loggers(loggers: list[Logger]) -> None:
    """Close every logger's run, so that jobs of a multirun never share a W&B run (even after a failure)."""
    for logger in loggers:
        logger.finalize("success")
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()
