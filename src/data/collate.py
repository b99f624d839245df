"""Batching of sample dicts whose `boxes` differ in length per image."""
from __future__ import annotations

import torch
from torch.utils.data import default_collate


def collate_samples(samples: list[dict]) -> dict:
    """Stack every key but `boxes` (and `id`), which stay lists: boxes [N_i, 4] per image."""
    ragged = {key: [s[key] for s in samples] for key in ("boxes", "id") if key in samples[0]}
    batch = default_collate([{k: v for k, v in s.items() if k not in ragged} for s in samples])
    batch.update(ragged)
    return batch


def empty_boxes() -> torch.Tensor:
    return torch.zeros((0, 4), dtype=torch.float32)
