"""MaxBoxAccV2: box localisation accuracy at the best score-map threshold (wsolevaluation's BoxEvaluator)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from src.metrics.boxes import box_iou, boxes_from_scoremap

DEFAULT_THRESHOLDS = tuple((torch.arange(100, dtype=torch.float64) * 0.01).tolist())  # np.arange(0, 1, 0.01)


class MaxBoxAccV2(Metric):
    """For every score-map threshold τ and IoU threshold δ, counts images where some predicted box
    reaches IoU ≥ δ/100 with some ground-truth box; MaxBoxAcc@δ is the best accuracy over τ and
    MaxBoxAccV2 the mean over δ.

    Args:
        thresholds: score-map thresholds τ in [0, 1] (default 0.00, 0.01, ..., 0.99).
        iou_thresholds: δ in percent (default 30, 50, 70).
        multi_contour: boxes of all contours (V2, default) instead of only the largest one.

    States ``num_correct`` [len(iou_thresholds), len(thresholds)] and ``num_images`` int64, sum-reduced.
    Box extraction is OpenCV on the CPU; the states stay on the metric's device.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        thresholds: Sequence[float] | None = None,
        iou_thresholds: Sequence[float] = (30, 50, 70),
        multi_contour: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.thresholds = list(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
        self.iou_thresholds = list(iou_thresholds)
        if not self.thresholds or not self.iou_thresholds:
            raise ValueError(f"thresholds={self.thresholds}, iou_thresholds={self.iou_thresholds}: expected non-empty")
        self.multi_contour = multi_contour
        shape = (len(self.iou_thresholds), len(self.thresholds))
        self.add_state("num_correct", default=torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scoremaps: torch.Tensor, gt_boxes: Sequence[torch.Tensor]) -> None:
        """Add a batch.

        Args:
            scoremaps: [B, H, W] in [0, 1] (normalised by the caller).
            gt_boxes: B tensors [N_i, 4] (x0, y0, x1, y1) in the score maps' pixel coordinates; an image with
                N_i = 0 is left out (neither correct nor counted in `num_images`).
        """
        if scoremaps.ndim != 3 or len(gt_boxes) != scoremaps.shape[0]:
            raise ValueError(
                f"scoremaps {tuple(scoremaps.shape)} with {len(gt_boxes)} box lists: expected [B, H, W] and B lists"
            )
        limits = torch.tensor(self.iou_thresholds, dtype=torch.float64)[:, None] / 100
        for scoremap, truth in zip(scoremaps, gt_boxes):
            if len(truth) == 0:  # an image without ground-truth boxes (a folder dataset's) is not scored
                continue
            boxes = boxes_from_scoremap(scoremap.cpu(), self.thresholds, self.multi_contour)
            counts = [len(b) for b in boxes]
            ious = box_iou(torch.cat(boxes), torch.as_tensor(truth).cpu()).amax(dim=1)
            best = torch.stack([part.max() for part in ious.split(counts)])  # [len(thresholds)]
            self.num_correct += (best[None, :] >= limits).long().to(self.num_correct.device)
            self.num_images += 1

    def compute(self) -> dict:
        """``{"MaxBoxAccV2": mean over δ, "MaxBoxAcc@δ": best accuracy over τ, ...}``, all in percent."""
        if self.num_images == 0:
            raise ValueError("MaxBoxAccV2: no image accumulated")
        accuracy = self.num_correct.double() * 100 / self.num_images.double()
        best = accuracy.amax(dim=1)
        result = {"MaxBoxAccV2": float(best.mean())}
        result.update({f"MaxBoxAcc@{delta:g}": float(acc) for delta, acc in zip(self.iou_thresholds, best)})
        return result
