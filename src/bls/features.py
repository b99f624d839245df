"""GAP features of named network stages over a dataloader, the BLS's input (METHOD.md §3 "Fit data")."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def tf32_off() -> Iterator[None]:
    """Full float32 for cuDNN convolutions and CUDA matmuls inside the block; the caller's settings after it.

    Why: cuDNN convolutions use TF32 by default on Ampere and later, which rounds the features to ~1e-3 relative;
    the BLS's ridge solve amplifies that (CUDA fit vs CPU fit: 1.0e-2 relative on an H200 with TF32, 1.0e-5
    without). The rest of the job keeps the caller's (faster) setting."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def extract_gap_features(
    net: nn.Module, dataloader: Iterable[dict], stages: Sequence[str], device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run `net` once over `dataloader` and global-average-pool the outputs of the `stages` modules.

    Args:
        net: the classifier; `stages` are names from `net.named_modules()` (e.g. `["layer3", "layer4"]`)
            whose outputs are `[B, K_s, h, w]`.
        dataloader: batches `{"image": [B, 3, H, W] float, "labels": [B, C] 0/1, "index": [B] long}`.
        stages: stage names, concatenated in this order (BroadCAM must use the same order).
        device: where the forward pass runs; the outputs stay there.

    Returns:
        features `[n, Σ K_s]` float32, labels `[n, C]` float32, indices `[n]` long (dataset indices).
    The forward runs with autocast and TF32 off (`tf32_off`; half-precision images are cast to float32), so AMP
    or TF32 around the call change nothing: the fit does not depend on the device.
    The network's train/eval mode is restored afterwards.
    """
    modules = _stage_modules(net, stages)
    pooled: dict[str, torch.Tensor] = {}

    def keep_gap(name: str):
        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                shape = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise ValueError(f"stage {name!r} must output [B, K, h, w], got {shape}")
            pooled[name] = output.float().mean(dim=(2, 3))
        return hook

    handles = [module.register_forward_hook(keep_gap(name)) for name, module in modules.items()]
    was_training = net.training
    features, labels, indices = [], [], []
    try:
        net.eval()
        # float32 features whatever autocast is active around us (the BLS then fits in float64)
        with torch.no_grad(), torch.autocast(device_type=torch.device(device).type, enabled=False), tf32_off():
            for batch in dataloader:
                images = batch["image"].to(device, non_blocking=True)
                half = images.is_floating_point() and images.dtype.itemsize < 4
                net(images.float() if half else images)
                features.append(torch.cat([pooled[name] for name in stages], dim=1))
                labels.append(batch["labels"].to(device, dtype=torch.float32))
                indices.append(batch["index"].to(device, dtype=torch.long))
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    if not features:
        raise ValueError("the dataloader yielded no batches: no features to fit the BLS on")
    return torch.cat(features), torch.cat(labels), torch.cat(indices)


def _stage_modules(net: nn.Module, stages: Sequence[str]) -> dict[str, nn.Module]:
    if isinstance(stages, str) or len(stages) == 0:
        raise ValueError(f"stages must be a non-empty list of module names, got {stages!r}")
    if len(set(stages)) != len(stages):
        raise ValueError(f"stages must not repeat, got {list(stages)}")
    named = dict(net.named_modules())
    missing = [name for name in stages if name not in named]
    if missing:
        top_level = [name for name in named if name and "." not in name]
        raise KeyError(f"stages {missing} are not modules of {type(net).__name__}; top-level modules: {top_level}")
    return {name: named[name] for name in stages}
