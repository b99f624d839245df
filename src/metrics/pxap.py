"""PxAP: pixel-wise average precision of score maps against foreground masks (wsolevaluation's MaskEvaluator)."""
from __future__ import annotations

import torch
from torchmetrics import Metric

from src.metrics.boxes import check_scoremap
from src.metrics.seed_miou import count_indices


def right_edges(num_thresholds: int) -> torch.Tensor:
    """[num_thresholds + 3] float64 bin edges 0, 1/n, ..., (n-1)/n, 1, 2, 3 (``np.arange(0, 1, 1/n)`` + [1, 2, 3]).

    ``i * step`` is how ``np.arange`` fills its values, so the edges are bit-identical to the reference's."""
    steps = torch.arange(num_thresholds, dtype=torch.float64) * (1.0 / num_thresholds)
    return torch.cat([steps, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)])


class PxAP(Metric):
    """Histograms foreground and background pixel scores over the split; computes the area under the
    precision-recall curve, in percent.

    Bins are [e_i, e_{i+1}) over ``right_edges(num_thresholds)``, the last closed, as ``np.histogram``.
    At each edge from the top, TP/FP are the foreground/background pixels at or above it; PxAP =
    100 · Σ precision_i · (recall_i − recall_{i−1}) over the points where precision is defined.
    States ``fg_hist`` and ``bg_hist`` [num_thresholds + 2] int64, sum-reduced (DDP-safe).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_thresholds: int = 1000, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_thresholds < 1:
            raise ValueError(f"num_thresholds={num_thresholds}: expected >= 1")
        self.num_thresholds = num_thresholds
        self.register_buffer("edges", right_edges(num_thresholds), persistent=False)
        self.add_state("fg_hist", default=torch.zeros(num_thresholds + 2, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("bg_hist", default=torch.zeros(num_thresholds + 2, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scoremaps: torch.Tensor, masks: torch.Tensor) -> None:
        """Add a batch.

        Args:
            scoremaps: [B, H, W] in [0, 1] (already resized and min-max normalised by the caller).
            masks: [B, H, W] 0 background, 1 foreground, 255 ignore.
        """
        if scoremaps.ndim != 3 or masks.shape != scoremaps.shape:
            raise ValueError(
                f"scoremaps {tuple(scoremaps.shape)} / masks {tuple(masks.shape)}: expected equal [B, H, W]"
            )
        check_scoremap(scoremaps)
        foreground, background = masks == 1, masks == 0
        if not (foreground | background | (masks == 255)).all():
            raise ValueError("masks: expected values 0 (background), 1 (foreground) or 255 (ignore)")
        bins = self.bin_index(scoremaps.double())
        size = self.fg_hist.numel()
        # one count over [bin, is_foreground]; ignored pixels go to the dropped index 2 * size
        flat = torch.where(foreground | background, bins * 2 + foreground, 2 * size)
        counts = count_indices(flat, 2 * size).view(size, 2)
        self.bg_hist += counts[:, 0]
        self.fg_hist += counts[:, 1]

    def bin_index(self, scores: torch.Tensor) -> torch.Tensor:
        """Bin of each float64 score in [0, 1]: i with e_i <= s < e_{i+1}, so 1.0 falls in [1, 2).

        ``floor(s · n)`` is within one of the answer; one comparison each way against the exact edges makes
        it equal to ``np.histogram``'s (binary search in float64) at a fraction of ``bucketize``'s cost."""
        edges = self.edges.to(scores.device)
        guess = (scores * self.num_thresholds).floor().long().clamp(0, self.num_thresholds)
        guess -= (scores < edges[guess]).long()
        guess += (scores >= edges[guess + 1]).long()
        return guess

    def compute(self) -> float:
        """PxAP in percent. Raises ValueError "no positive ground truth" when no foreground pixel was seen."""
        if self.fg_hist.sum() == 0:
            raise ValueError("PxAP: no positive ground truth in the accumulated masks")
        tp = self.fg_hist.flip(0).cumsum(0).double()
        fp = self.bg_hist.flip(0).cumsum(0).double()
        precision = tp / (tp + fp)  # NaN where nothing is predicted yet (0 / 0)
        recall = tp / tp[-1]
        gains = precision[1:] * recall.diff()
        return float(gains[~precision[1:].isnan()].sum() * 100)
