"""The evaluation's metric states reduced across DDP ranks by one mechanism: every torchmetrics `Metric` under the
evaluation module (the metrics and the counters alike, found by walking the module, never listed by hand) is moved
to the collective's device, and list ("cat") states that a rank never filled are given the other ranks' shape.

Why the second step: torchmetrics stands in for an empty list state with a 1-D float tensor, which gathers with
neither the others' `[n, ...]` shape nor their dtype; a rank with nothing to score (a split smaller than the world
size, a share of BCSS patches without tissue) would then break the reduction.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torchmetrics import Metric


def evaluation_metrics(module: nn.Module) -> dict[str, Metric]:
    """Every metric under `module`, by its module name (a metric inside another metric counts once, as its parent)."""
    metrics = {}
    for name, child in module.named_modules():
        if isinstance(child, Metric) and not any(name.startswith(f"{outer}.") for outer in metrics):
            metrics[name] = child
    return metrics


def to_reduction_device(module: nn.Module, device: torch.device | str) -> dict[str, Metric]:
    """Move every metric state under `module` to `device` (NCCL reduces only GPU tensors); returns the metrics."""
    metrics = evaluation_metrics(module)
    for metric in metrics.values():
        metric.to(device)
    return metrics


def share_empty_states(metrics: dict[str, Metric]) -> None:
    """Give each empty list state of this rank an empty `[0, ...]` tensor of the shape and dtype the other ranks
    hold for it (every rank calls this: one `all_gather_object`). A state empty on every rank is left as it is."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    local = {}
    for name, metric in metrics.items():
        for state in metric._defaults:
            value = getattr(metric, state)
            if isinstance(value, list) and value:
                local[f"{name}/{state}"] = (tuple(value[0].shape[1:]), str(value[0].dtype).removeprefix("torch."))
    shapes = [None] * dist.get_world_size()
    dist.all_gather_object(shapes, local)
    for name, metric in metrics.items():
        for state in metric._defaults:
            found = [s[f"{name}/{state}"] for s in shapes if f"{name}/{state}" in s]
            if isinstance(getattr(metric, state), list) and not getattr(metric, state) and found:
                shape, dtype = found[0]
                setattr(metric, state, [torch.empty((0, *shape), dtype=getattr(torch, dtype), device=metric.device)])
