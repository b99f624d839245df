"""The job's CAM figure (`cams.png`, written by `src.run`): for a few images, the image, its mask and the
overlay of the CAM of its classes."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from src.reporting.overlay import denormalize, overlay  # noqa: E402
from src.store.atomic import atomic_path  # noqa: E402


def save_cam_grid(samples: list[dict], class_names: list[str], path: str | Path, ignore_index: int = 255) -> Path:
    """One row per sample (`image` [3,H,W], `labels` [C], `mask` [H,W], `cams` [C,H,W] in [0,1]):
    image, mask, overlay of the max over its classes' CAMs; titled with the class names."""
    path = Path(path)
    rows = max(len(samples), 1)
    fig, axes = plt.subplots(rows, 3, figsize=(6, 2 * rows), squeeze=False)
    for row, sample in zip(axes, samples):
        names = [class_names[i] for i in torch.nonzero(sample["labels"] > 0).flatten().tolist()]
        mask = sample["mask"].float().masked_fill(sample["mask"] == ignore_index, float("nan"))
        row[0].imshow(denormalize(sample["image"]))
        row[0].set_title(", ".join(names) or "(no class)", fontsize=7)
        row[1].imshow(mask, cmap="tab20", interpolation="nearest")
        row[1].set_title("mask", fontsize=7)
        row[2].imshow(overlay(sample["image"], sample["cams"].amax(0)))
        row[2].set_title("CAM", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
