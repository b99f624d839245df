"""Boxes from a score map and box IoU, in wsolevaluation's conventions (x0, y0, x1, y1; +1-pixel areas)."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch


def check_scoremap(scoremap: torch.Tensor) -> None:
    """Raise ValueError unless every value of ``scoremap`` is a number in [0, 1] (wsolevaluation's check)."""
    if torch.isnan(scoremap).any():
        raise ValueError("scoremap contains NaN: expected values in [0, 1]")
    if scoremap.numel() and (scoremap.min() < 0 or scoremap.max() > 1):
        raise ValueError(
            f"scoremap values {scoremap.min().item():.4g}..{scoremap.max().item():.4g}: expected [0, 1]"
        )


def boxes_from_scoremap(
    scoremap: torch.Tensor, thresholds: Sequence[float], multi_contour: bool = False
) -> list[torch.Tensor]:
    """Bounding boxes of the thresholded score map, one set per threshold.

    At threshold τ the map is quantised to ``u = uint8(s · 255)`` and binarised as ``u > int(τ · max(u))``
    (OpenCV's binary threshold); the boxes are OpenCV's bounding rectangles of the contours (``RETR_TREE``:
    outer and inner ones), ``x1 = min(x + w, W - 1)``, ``y1 = min(y + h, H - 1)``. No contour gives the box
    [0, 0, 0, 0]. Without ``multi_contour`` only the contour of largest ``cv2.contourArea`` is kept.

    Args:
        scoremap: [H, W] in [0, 1] (tensor or array), indexed [y][x].
        thresholds: τ values in [0, 1].
        multi_contour: keep every contour's box instead of the largest one.
    Returns:
        one int64 tensor [N_τ, 4] (x0, y0, x1, y1) per threshold, on the score map's device.
    """
    scores = torch.as_tensor(scoremap)
    if scores.ndim != 2:
        raise ValueError(f"scoremap shape {tuple(scores.shape)}: expected [H, W]")
    check_scoremap(scores)
    height, width = scores.shape
    # float64 like the reference, so the uint8 truncation happens at the same values
    quantised = (scores.detach().cpu().double().numpy() * 255).astype(np.uint8)
    peak = quantised.max()
    boxes = []
    for tau in thresholds:
        _, binary = cv2.threshold(quantised, int(tau * peak), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
        if not contours:
            boxes.append(torch.zeros(1, 4, dtype=torch.long, device=scores.device))
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        rects = [cv2.boundingRect(c) for c in contours]
        found = [[x, y, min(x + w, width - 1), min(y + h, height - 1)] for x, y, w, h in rects]
        boxes.append(torch.tensor(found, dtype=torch.long, device=scores.device))
    return boxes


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """IoU of every pair, with inclusive pixel coordinates (a box spans x1 - x0 + 1 columns).

    Args:
        boxes_a: [N, 4] (x0, y0, x1, y1); boxes_b: [M, 4]. Tensors or arrays.
    Returns:
        [N, M] float64 IoU on boxes_a's device; 0 where the union is empty.
    Raises:
        ValueError: a box with x1 < x0 or y1 < y0, or a shape other than [N, 4].
    """
    a = torch.as_tensor(boxes_a).double()
    b = torch.as_tensor(boxes_b).double().to(a.device)
    for name, boxes in (("boxes_a", a), ("boxes_b", b)):
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{name} shape {tuple(boxes.shape)}: expected [N, 4] (x0, y0, x1, y1)")
        if ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
            raise ValueError(f"{name}: a box has x1 < x0 or y1 < y0; expected (x0, y0, x1, y1)")
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = (bottom_right - top_left + 1).clamp(min=0).prod(dim=2)
    area_a = (a[:, 2:] - a[:, :2] + 1).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2] + 1).prod(dim=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.zeros_like(union))
