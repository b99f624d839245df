"""THE seed rule (IRN's): each pixel takes the best of its image's classes, against a constant background plane.

Used by `SeedMIoU` (which sweeps the plane over thresholds), the seed export and the W&B seed masks; it lives
in `metrics/` because the metric, the lowest of its users, may not import the evaluation stage above it.
"""
from __future__ import annotations

import torch


def best_class(cams: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cams [..., C, H, W], present [..., C] bool → (score, best), each [..., H, W]: the max over the present
    classes (absent ones never win, as IRN keeps only the ground-truth maps) and its class index, the first
    on ties like numpy's argmax. A pixel of an image without a present class has score -inf and class 0."""
    allowed = cams.masked_fill(~present.bool()[..., None, None], float("-inf"))
    return allowed.max(dim=-3)


def seed_labels(cams: torch.Tensor, present: torch.Tensor, threshold: float | None,
                empty_value: int = 0) -> torch.Tensor:
    """cams [..., C, H, W] in [0, 1], present [..., C] bool → seed labels [..., H, W] long.

    With a background plane (`threshold` a number): `argmax([threshold, cams of the present classes])` —
    0 = background (a tie `max == threshold` goes to background, the plane comes first), class c → c + 1.
    Without (`threshold` None): the best present class c → c, and `empty_value` where the image has none.
    The threshold is compared in the maps' dtype, as IRN's `np.pad(cams, constant_values=t)` does."""
    score, best = best_class(cams, present)
    if threshold is not None:
        plane = torch.tensor(float(threshold), dtype=score.dtype, device=score.device)
        return torch.where(score > plane, best + 1, torch.zeros_like(best))
    any_present = present.bool().any(dim=-1)[..., None, None].expand_as(best)
    return torch.where(any_present, best, torch.full_like(best, empty_value))
