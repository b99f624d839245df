"""Seed mIoU of class activation maps (VOC/IRN convention with a background plane, or BCSS without one).

With a background plane (VOC), the prediction of a pixel at threshold ``t`` is
``argmax([t, cam_1, ..., cam_C])`` over the ground-truth classes of its image, exactly as IRN's
``np.argmax(np.pad(cams, constant_values=t))``: the plane comes first, so a tie ``max cam == t`` goes to
background. Every threshold's confusion matrix comes from ONE histogram: a pixel whose best class ``a`` has
score ``s`` is foreground ``a`` for exactly the thresholds below ``s``, so we count pixels by
``(#thresholds < s, gt, a)`` and a suffix sum over the first axis gives all thresholds at once.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from src.metrics.seed_rule import best_class

DEFAULT_THRESHOLDS = tuple(i / 100 for i in range(60))  # 0.00, 0.01, ..., 0.59 (IRN/PuzzleCAM sweep)


def count_indices(index: torch.Tensor, size: int) -> torch.Tensor:
    """[size] int64 counts of the values of ``index`` below ``size``; values equal to ``size`` are dropped.

    ``index_add_`` rather than ``torch.bincount``: an order of magnitude faster on CPU, exact on any device."""
    index = index.reshape(-1)
    counts = torch.zeros(size + 1, dtype=torch.long, device=index.device)
    counts.index_add_(0, index, torch.ones(1, dtype=torch.long, device=index.device).expand_as(index))
    return counts[:size]


class SeedMIoU(Metric):
    """Accumulates per-threshold confusion matrices of CAM seeds; computes the best mIoU of the sweep.

    Args:
        num_classes: K, classes scored in the mIoU. With ``background=True`` K = C + 1 (index 0 is the
            background, classes 1..C); with ``background=False`` K = C (classes 0..C-1).
        background: add a constant background plane swept over ``thresholds`` (VOC); otherwise seeds are the
            plain argmax of the label-masked maps (BCSS) and ``thresholds`` is unused.
        thresholds: background scores t to sweep, distinct, any order (default 0.00..0.59 by 0.01). They are
            compared to the maps in the maps' dtype, as ``np.pad(cams, constant_values=t)`` would.
        ignore_index: mask value excluded from the counts (255 for VOC, 4 = background for BCSS).
        per_image: also keep each image's per-class intersection and union at every threshold (for paired
            statistics over images: `compute()["per_image"]`); ``update`` then needs the images' ``indices``.

    State ``hist`` [T+1, K, K] int64 (sum-reduced, so DDP-safe): ``hist[b, g, p]`` counts valid pixels of
    ground truth g whose best label-allowed class is p and whose score exceeds exactly b of the sorted
    thresholds (T = 0 without a background plane, so it is the confusion matrix itself). With ``per_image``,
    the lists ``image_index`` [N], ``image_inter`` and ``image_union`` [N, T, K] int32 (concatenated across
    DDP ranks) hold the same counts image by image.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        background: bool = True,
        thresholds: Sequence[float] | None = None,
        ignore_index: int = 255,
        per_image: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < (2 if background else 1):
            raise ValueError(f"num_classes={num_classes}: expected >= 2 with background (K = C + 1), >= 1 without")
        self.num_classes = num_classes
        self.background = background
        self.ignore_index = ignore_index
        if background:
            values = sorted(float(t) for t in (DEFAULT_THRESHOLDS if thresholds is None else thresholds))
            if not values or len(set(values)) != len(values):
                raise ValueError(f"thresholds={list(thresholds or [])}: expected a non-empty list of distinct values")
            self.thresholds = values
        else:
            self.thresholds = []
        bins = len(self.thresholds) + 1
        self.add_state(
            "hist", default=torch.zeros(bins, num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum"
        )
        self.per_image = bool(per_image)
        if self.per_image:
            for name in ("image_index", "image_inter", "image_union"):
                self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, cams: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
               indices: torch.Tensor | None = None) -> None:
        """Add a batch.

        Args:
            cams: [B, C, H, W] in [0, 1], one map per foreground class (for VOC already divided by its max).
            labels: [B, C] 0/1 image-level labels; a class absent from the image is never predicted (its map is
                set to -inf, like IRN keeping only the ground-truth classes' maps).
            masks: [B, H, W] integer ground truth in 0..K-1, or ``ignore_index``.
            indices: [B] the images' dataset indices (required with ``per_image``).
        """
        if self.per_image and (indices is None or len(indices) != len(cams)):
            raise ValueError(f"indices: expected the {len(cams)} images' dataset indices (per_image=True)")
        num_fg = self.num_classes - 1 if self.background else self.num_classes
        if cams.ndim != 4 or cams.shape[1] != num_fg:
            raise ValueError(f"cams shape {tuple(cams.shape)}: expected [B, {num_fg}, H, W]")
        if labels.shape != cams.shape[:2]:
            raise ValueError(f"labels shape {tuple(labels.shape)}: expected {tuple(cams.shape[:2])}")
        if masks.shape != (cams.shape[0], *cams.shape[2:]):
            raise ValueError(f"masks shape {tuple(masks.shape)}: expected {(cams.shape[0], *cams.shape[2:])}")
        if torch.isnan(cams).any():
            raise ValueError("cams contain NaN")
        present = labels.bool()
        if not self.background and not present.any(dim=1).all():
            raise ValueError("labels: every image needs at least one positive class when background=False")
        if cams.dtype in (torch.float16, torch.bfloat16):
            cams = cams.float()  # bucketize has no half kernels everywhere; float32 holds half values exactly

        # the seed rule (src/metrics/seed_rule.py) at every threshold at once: `best` wins where score > t
        score, best = best_class(cams, present)
        pred = best + 1 if self.background else best

        masks = masks.long()
        valid = masks != self.ignore_index
        gt = masks.where(valid, 0)
        low, high = gt.aminmax()
        if low < 0 or high >= self.num_classes:
            raise ValueError(
                f"masks values {low.item()}..{high.item()}: expected 0..{self.num_classes - 1}"
                f" or ignore_index={self.ignore_index}"
            )
        k = self.num_classes
        flat = gt * k + pred
        if self.background:
            bounds = torch.tensor(self.thresholds, dtype=score.dtype, device=score.device)
            # right=False: index = number of thresholds strictly below the score, so a tie s == t stays background
            flat += torch.bucketize(score, bounds) * (k * k)
        size = self.hist.numel()
        if not self.per_image:
            self.hist += count_indices(flat.where(valid, size), size).view_as(self.hist)
            return
        # one histogram per image (the image's offset in front), summed into `hist`: still one pass over pixels
        flat += torch.arange(len(flat), device=flat.device).view(-1, *[1] * (flat.ndim - 1)) * size
        per_image = count_indices(flat.where(valid, len(flat) * size), len(flat) * size)
        per_image = per_image.view(len(flat), *self.hist.shape)
        self.hist += per_image.sum(0)
        conf = self._confusion(per_image)  # [B, T, K, K]
        tp = conf.diagonal(dim1=-2, dim2=-1)
        self.image_index.append(torch.as_tensor(indices, device=tp.device).long().reshape(-1))
        self.image_inter.append(tp.int())
        self.image_union.append((conf.sum(-1) + conf.sum(-2) - tp).int())

    def _confusion(self, hist: torch.Tensor) -> torch.Tensor:
        """[..., T+1, K, K] histograms → [..., T, K, K] confusion matrices, one per sorted threshold."""
        if not self.background:
            return hist.clone()
        above = hist.flip(-3).cumsum(-3).flip(-3)[..., 1:, :, :]  # above[j] = pixels whose score exceeds threshold j
        conf = above.clone()
        conf[..., 0] = hist.sum(dim=(-3, -1)).unsqueeze(-2) - above.sum(dim=-1)  # everything else is background
        return conf

    def confusion_matrices(self) -> torch.Tensor:
        """[T, K, K] int64 confusion matrices (rows ground truth, columns prediction), one per sorted
        threshold ([1, K, K] without background)."""
        return self._confusion(self.hist)

    def compute(self) -> dict:
        """Returns ``{"mIoU": best mIoU (%), "threshold": its t (None without background),
        "per_class_IoU": K IoUs (%) at that t, NaN for a class neither in the ground truth nor predicted,
        "curve": [[t, mIoU (%)], ...] in ascending t ([] without background)}``. mIoU is the mean over the
        classes whose IoU is defined. With ``per_image``, also ``"per_image": {"index": [N], "thresholds":
        [T], "intersection": [N, T, K], "union": [N, T, K]}`` (int64 tensors at EVERY threshold of the sweep,
        ascending; T = 1 and ``thresholds`` empty without background; images in dataset order): summed over the
        images they give back ``curve``, whose best point is this mIoU, so a bootstrap over images can
        re-choose the threshold on each resample."""
        conf = self.confusion_matrices().double()
        if conf[0].sum() == 0:
            raise ValueError("SeedMIoU.compute: no valid pixel accumulated")
        tp = conf.diagonal(dim1=1, dim2=2)
        denom = conf.sum(dim=2) + conf.sum(dim=1) - tp
        iou = torch.where(denom > 0, tp / denom.clamp(min=1), torch.full_like(tp, float("nan"))) * 100
        miou = iou.nanmean(dim=1)
        best = int(miou.argmax())
        out = {
            "mIoU": float(miou[best]),
            "threshold": self.thresholds[best] if self.background else None,
            "per_class_IoU": iou[best].tolist(),
            "curve": [[t, float(m)] for t, m in zip(self.thresholds, miou)],
        }
        if self.per_image:
            index = dim_zero_cat(self.image_index).cpu()
            order = index.argsort()
            out["per_image"] = {"index": index[order],
                                "thresholds": torch.tensor(self.thresholds, dtype=torch.float64),
                                "intersection": dim_zero_cat(self.image_inter).cpu()[order].long(),
                                "union": dim_zero_cat(self.image_union).cpu()[order].long()}
        return out
