"""BLS feature extraction vs a bare forward over the same loader, on the trainer's device (issue 12: ratio ≥ 0.9).

The extraction (`src.bls.extract_gap_features`: forward hooks that global-average-pool the BLS stages, labels
and indices kept on the device) should cost no more than the forward it rides on. Both loops iterate the same
`train_subset_eval_dataloader()` of a synthetic job; they alternate, best of `--repeats` each.
"""
from __future__ import annotations

import torch

from benchmarks.job_parts import job_parts
from benchmarks.timing import timed
from src.bls import extract_gap_features


def bare_forward(net, loader, device) -> None:
    with torch.no_grad():
        for batch in loader:
            net(batch["image"].to(device, non_blocking=True))


def measure(device: torch.device, images: int, image_size: int, batch_size: int, repeats: int) -> dict:
    job = job_parts([f"data.num_train={images}", f"data.image_size={image_size}", "data.num_val=8",
                        f"data.eval_batch_size={batch_size}"])
    net = job.model.net.to(device).eval()
    loader = job.datamodule.train_subset_eval_dataloader()
    stages = list(job.cam.target_layers)
    runs = {"bare": lambda: bare_forward(net, loader, device),
            "extract": lambda: extract_gap_features(net, loader, stages, device)}
    for fn in runs.values():  # warm-up: the loader's first pass, allocator, cuDNN autotune
        fn()
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            best[name] = min(best[name], timed(fn, device)[1])
    n = len(loader.dataset)
    return {"part": "features", "device": str(device), "images": n, "image_size": image_size, "stages": stages,
            "bare_images_per_s": n / best["bare"], "extract_images_per_s": n / best["extract"],
            "ratio": best["bare"] / best["extract"]}
