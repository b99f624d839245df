"""wsolevaluation's `scoremap_root`, written by the evaluation itself when `export.scoremaps=true`: for each scored
image, `<root>/<image_id>.npy` holding the very map PxAP / MaxBoxAccV2 scored, as wsolevaluation's `evaluation.py`
loads it (`np.load(os.path.join(scoremap_root, image_id + '.npy'))`, then `check_scoremap_validity`): a 2-D
float64 array of `wsol_size`² (224×224) in [0, 1]. An OpenImages image id is a path (`val/<class>/<id>.jpg`),
so its map lies in subfolders and keeps the image's extension before `.npy`: `<root>/val/<class>/<id>.jpg.npy`.

The maps are written from inside the CAM pass, so they are exactly the float32 maps the metrics accumulated,
widened to float64 (which wsolevaluation requires; the widening is exact). Under DDP each rank writes its own
share; each file is written atomically, and a resumed evaluation keeps the files of the batches it skips.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from src.store.atomic import atomic_path


def scoremap_path(root: str | Path, image_id: str) -> Path:
    """`<root>/<image_id>.npy`; ValueError for an id that would leave `root` (absolute, or with `..`)."""
    parts = PurePosixPath(image_id).parts
    if not parts or PurePosixPath(image_id).is_absolute() or ".." in parts:
        raise ValueError(f"image id {image_id!r}: expected a relative path inside the scoremap root {root}")
    return Path(root).joinpath(*parts[:-1], f"{parts[-1]}.npy")


class ScoremapWriter:
    """Writes batches of score maps under `root` (module docstring); `written` counts this process's files."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.written = 0

    def __call__(self, scoremaps: torch.Tensor, image_ids: Sequence[str]) -> None:
        """scoremaps [B, S, S] in [0, 1] (the maps scored), image_ids [B] the dataset's ids."""
        if scoremaps.ndim != 3 or len(scoremaps) != len(image_ids):
            raise ValueError(f"scoremaps of shape {tuple(scoremaps.shape)} for {len(image_ids)} image ids: "
                             "expected [B, S, S], one map per id")
        maps = scoremaps.detach().cpu().double().numpy()
        for image_id, scoremap in zip(image_ids, maps):
            with atomic_path(scoremap_path(self.root, str(image_id))) as tmp, open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(scoremap))  # a handle: np.save would append ".npy"
            self.written += 1
