"""CAM generation and scoring over the evaluation split, as a Lightning test loop (DDP-ready); built by the job
from `conf/eval/` (`hydra.utils.instantiate`), with the net, the CAM and the dataset's protocol.

For each image, the CAMs of its ground-truth classes are made by the configured method and fed to the
dataset's metrics following the protocols of METHOD.md §6 (the functions of `protocol.py`):
- seeds (`seed_mIoU`): each GT-class map (ReLU'd, upsampled, raw) divided by its max; other classes 0; the
  maps are at the size of the batch's images, which the dataset's protocol sets (VOC: each original H×W);
  without a background plane (BCSS) an image without any class is counted and not scored;
- localisation (`PxAP`, `MaxBoxAccV2`), wsolevaluation's rule: the GT-class seed maps at the feature
  resolution (the CAM before its upsampling, `maps_at`), their max, resized bicubically to `wsol_size` and
  min-max normalised per image (`wsol_scoremaps`); boxes resized with its `resize_bbox` rule; mask
  foreground = any object, ignore kept.
The classifier's mAP on the same split comes from the CAM pass's own forward (the engine's `logits`: the
unflipped scale-1.0 view, i.e. the plain forward), so each view of an image is forwarded exactly once.

Under DDP each rank scores its own share of the split (`sharding.py`) and `results()` sums the metric states of
all ranks; every `checkpoint_every` batches the states are saved (`checkpoint.py`) and a re-run resumes.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import SumMetric
from torchmetrics.classification import MultilabelAveragePrecision

from src.cams import CamSpec
from src.data.transforms import resize_boxes
from src.evaluation.checkpoint import EvalCheckpoint, restore_metric_states
from src.evaluation.protocol import foreground_masks, gt_targets, seed_maps, threshold_range, wsol_scoremaps
from src.evaluation.reduction import evaluation_metrics, share_empty_states, to_reduction_device
from src.evaluation.scoremaps import ScoremapWriter
from src.metrics import MaxBoxAccV2, PxAP, SeedMIoU

log = logging.getLogger(__name__)


class CamEvaluation(pl.LightningModule):
    """Scores the CAMs of `net` on the evaluation split. `metric_names` ⊆ {seed_mIoU, PxAP, MaxBoxAccV2}.

    `cam` says which method, layers and options (incl. a fitted `bls=`); `num_classes`, `seed_background`,
    `ignore_index` and `metric_names` are the dataset's protocol (its datamodule's attributes); the
    thresholds are lists or `{start, stop, step}` ranges. `figure_images` samples of the first batches are
    kept in `figure_samples` for the overlay grid. With `checkpoint_file`, the states are saved there every
    `checkpoint_every` batches and restored from it (made with the same `checkpoint_tag` and, when given, the same
classifier identity `checkpoint_classifier`); `batches_done` says
    how many batches the loader must skip. With `per_image_scores`, `results()["per_image"]` holds each scored
    image's seed intersection and union per class at every threshold of the sweep (for paired statistics).
    With `scoremap_dir`, every scored WSOL map is also written there in wsolevaluation's layout (`scoremaps.py`).
    """

    def __init__(self, net: nn.Module, cam: CamSpec, num_classes: int, seed_background: bool, ignore_index: int,
                 metric_names: Sequence[str], seed_thresholds: Mapping | Sequence[float], wsol_size: int = 224,
                 box_thresholds: Mapping | Sequence[float] | None = None, iou_thresholds: Sequence[int] = (30, 50, 70),
                 figure_images: int = 8, checkpoint_every: int = 0, checkpoint_file: str | None = None,
                 checkpoint_tag: str = "", per_image_scores: bool = True, checkpoint_classifier: dict | None = None,
                 scoremap_dir: str | None = None):
        super().__init__()
        self.net = net
        self.cam_spec = cam
        self.num_classes, self.seed_background, self.ignore_index = num_classes, seed_background, ignore_index
        self.wsol_size, self.figure_images = int(wsol_size), int(figure_images)
        self.cls_map = MultilabelAveragePrecision(num_labels=num_classes, average="macro")
        self.n_scored = SumMetric()  # images actually scored (limit_test_batches, DDP ranks summed)
        self.n_without_class = SumMetric()  # no-plane seeds (BCSS): images whose mask holds no class, not scored
        self.n_without_mask = SumMetric()  # masks all "ignore" (a folder dataset's unmasked images): nothing scored
        metrics = {}
        if "seed_mIoU" in metric_names:
            metrics["seed"] = SeedMIoU(num_classes + int(seed_background), background=seed_background,
                                       thresholds=threshold_range(seed_thresholds), ignore_index=ignore_index,
                                       per_image=per_image_scores)
        if "PxAP" in metric_names:
            metrics["pxap"] = PxAP()
        if "MaxBoxAccV2" in metric_names:
            boxes = None if box_thresholds is None else threshold_range(box_thresholds)
            metrics["boxacc"] = MaxBoxAccV2(thresholds=boxes, iou_thresholds=tuple(iou_thresholds), multi_contour=True)
        self.metrics = nn.ModuleDict(metrics)
        if scoremap_dir and not ("pxap" in metrics or "boxacc" in metrics):
            raise ValueError(f"export.scoremaps=true: this dataset is scored by {list(metric_names)}, which make no "
                             "score maps; expected a dataset scored by PxAP or MaxBoxAccV2 (openimages30k, synthetic)")
        self.scoremaps = ScoremapWriter(scoremap_dir) if scoremap_dir else None
        self.figure_samples: list[dict] = []
        self.timings = {"cam_s": 0.0, "eval_s": 0.0}
        self.cam = None
        self.checkpoint = (EvalCheckpoint(checkpoint_file, checkpoint_tag, checkpoint_every, checkpoint_classifier)
                           if checkpoint_file else None)
        self._resume = self.checkpoint.load() if self.checkpoint else None
        self.batches_done = self._resume["batches_done"] if self._resume else 0
        self._results: dict | None = None
        # A rank may have nothing to score (a split smaller than the world size): its share is empty, and
        # `results()` still reduces with the others (`reduction.py`).
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def on_test_start(self) -> None:
        self.net.eval()
        self.cam = self.cam_spec.create(self.net, normalize=False)
        self._restore()

    def _restore(self) -> None:
        """Load the checkpoint's states (once), on the metrics' current device."""
        if self._resume is not None:
            restore_metric_states(self, self._resume["metrics"])
            self.figure_samples = list(self._resume["figure_samples"])
            log.info(f"[eval] resumed after {self.batches_done} batches from {self.checkpoint.path}")
            self._resume = None

    def on_test_batch_end(self, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.batches_done += 1
        if self.checkpoint is not None and self.checkpoint.due(self.batches_done):
            self.checkpoint.save(self.batches_done, self, self.figure_samples)

    def on_test_end(self) -> None:
        if self.cam is not None:
            self.cam.remove()
            self.cam = None

    def test_step(self, batch: dict, batch_idx: int) -> None:
        images, labels = batch["image"], batch["labels"]
        targets, valid = gt_targets(labels)
        tick = time.perf_counter()
        wsol = "pxap" in self.metrics or "boxacc" in self.metrics
        with torch.enable_grad():
            maps, *feature_maps = self.cam.maps_at(images, targets, ("input", "feature") if wsol else ("input",))
            logits = self.cam.logits
        if maps.is_cuda:  # kernels run asynchronously: charge them to cam_s, not to whatever waits next
            torch.cuda.synchronize(maps.device)
        tock = time.perf_counter()
        self.timings["cam_s"] += tock - tick
        self.cls_map.update(logits, labels.long())
        self.n_scored.update(len(images))
        cams = seed_maps(maps.detach(), targets, valid, self.num_classes)
        masks = batch["mask"]
        if "seed" in self.metrics:
            # Without a background plane a pixel can only take one of its image's classes: an image without any
            # (a BCSS patch of background only) has no seed to score, so it is counted and left out.
            scored = labels.sum(1) > 0 if not self.seed_background else labels.new_ones(len(labels), dtype=torch.bool)
            self.n_without_class.update(int((~scored).sum()))
            self.n_without_mask.update(int((masks == self.ignore_index).flatten(1).all(1).sum()))
            if bool(scored.any()):
                indices = None
                if self.metrics["seed"].per_image:
                    if "index" not in batch:
                        raise KeyError("eval.per_image_scores=true: the evaluation batch has no 'index' (the images' "
                                       "dataset indices, which every dataset of src/data/ gives); expected one, or "
                                       "eval.per_image_scores=false")
                    indices = torch.as_tensor(batch["index"])[scored.cpu()]
                self.metrics["seed"].update(cams[scored], labels[scored], masks[scored], indices)
        if wsol:
            scoremaps = wsol_scoremaps(seed_maps(feature_maps[0].detach(), targets, valid, self.num_classes),
                                       self.wsol_size)
            if self.scoremaps is not None:
                self.scoremaps(scoremaps, batch["id"])
            if "pxap" in self.metrics:
                background = 0 if self.seed_background else self.ignore_index
                self.metrics["pxap"].update(scoremaps, foreground_masks(masks, self.wsol_size, background,
                                                                        self.ignore_index))
            if "boxacc" in self.metrics:
                size, wsol_size = tuple(images.shape[-2:]), (self.wsol_size, self.wsol_size)
                boxes = [resize_boxes(b.cpu(), size, wsol_size) for b in batch["boxes"]]
                self.metrics["boxacc"].update(scoremaps, boxes)
        self._keep_figure_samples(images, labels, masks, cams)
        if maps.is_cuda:
            torch.cuda.synchronize(maps.device)
        self.timings["eval_s"] += time.perf_counter() - tock

    def _keep_figure_samples(self, images, labels, masks, cams) -> None:
        for i in range(min(len(images), self.figure_images - len(self.figure_samples))):
            self.figure_samples.append({"image": images[i].cpu(), "labels": labels[i].cpu(),
                                        "mask": masks[i].cpu(), "cams": cams[i].cpu()})

    def results(self, device: torch.device | str | None = None) -> dict:
        """Final metrics: percent values under the names of the results contract, plus details. Under DDP every
        rank calls it: every metric state of every rank (metrics and counters: `reduction.py` finds them all) is
        reduced on `device`, the strategy's root device, which the collective backend needs (NCCL works on GPU
        tensors; Lightning moved the module to the CPU after `test`)."""
        if self._results is not None:
            return self._results
        tick = time.perf_counter()
        self._restore()  # a resumed evaluation with no batch left never ran `on_test_start`
        metrics = to_reduction_device(self, device) if device is not None else evaluation_metrics(self)
        share_empty_states(metrics)  # a rank that scored nothing still gathers with the others
        out = {"metrics": {"cls_mAP": float(self.cls_map.compute()) * 100}, "details": {},
               "n_scored": int(self.n_scored.compute())}
        if "seed" in self.metrics:
            seed = self.metrics["seed"].compute()
            if "per_image" in seed:
                out["per_image"] = seed["per_image"]
            out["metrics"].update(seed_mIoU=seed["mIoU"], seed_threshold=seed["threshold"])
            per_class = [None if math.isnan(iou) else iou for iou in seed["per_class_IoU"]]  # strict JSON
            out["details"].update(per_class_IoU=per_class, seed_curve=seed["curve"],
                                  seed_images_without_class=int(self.n_without_class.compute()),
                                  seed_images_without_mask=int(self.n_without_mask.compute()))
        if "pxap" in self.metrics:
            out["metrics"]["PxAP"] = float(self.metrics["pxap"].compute())
        if "boxacc" in self.metrics:
            out["metrics"].update({k: float(v) for k, v in self.metrics["boxacc"].compute().items()})
        self.timings["eval_s"] += time.perf_counter() - tick
        self._results = out
        return out
