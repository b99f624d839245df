"""BroadCAM (Lin et al. 2023): channel weights from a Broad Learning System fitted on GAP features.

`cam_c = Σ_k w_k^c · ReLU(M_k)` over the target layers' activations concatenated along channels (each
layer's ReLU'd maps resized bilinearly to the largest layer's size), a bias-free 1×1 convolution with the
BLS's collapsed weights (METHOD.md §2.5, §3); the engine then upsamples, applies the ReLU (after the
upsampling, as the original), sums test-time views and normalises.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.bls import BroadLearningSystem

from .engine import CamEngine, CamView
from .registry import register_cam


@register_cam("broadcam")
class BroadCAM(CamEngine):
    """No backward; the weights come from `bls` (a fitted `BroadLearningSystem`, or its `cam_weights` [d, C]).

    `target_layers` must be the stages the BLS was fitted on, in the same order (None or [] takes
    `bls.stages`); their channels must add up to d.
    """

    needs_gradients = False
    relu_before_upsample = False

    def __init__(self, model: nn.Module, target_layers: str | Sequence[str] | None = None, *,
                 bls: BroadLearningSystem | Tensor, **options):
        fitted_stages = getattr(bls, "stages", None)
        if not target_layers:
            if fitted_stages is None:
                raise ValueError("BroadCAM: pass target_layers, or a BLS that records its stages (fit_bls sets them)")
            target_layers = fitted_stages
        layers = [target_layers] if isinstance(target_layers, str) else [str(name) for name in target_layers]
        if fitted_stages is not None and list(fitted_stages) != layers:
            raise ValueError(f"BroadCAM: target_layers {layers} differ from the BLS's fitted stages "
                             f"{list(fitted_stages)}; the concatenation order must be the fitting order")
        self.weights = bls.cam_weights if isinstance(bls, BroadLearningSystem) else torch.as_tensor(bls)
        if self.weights.ndim != 2:
            raise ValueError(f"BroadCAM: bls weights must be [d, C], got {list(self.weights.shape)}")
        super().__init__(model, layers, **options)

    def class_maps(self, view: CamView) -> list[Tensor]:
        """One map `[B, K, h, w]` at the largest target layer's size."""
        size = (max(a.shape[-2] for a in view.activations), max(a.shape[-1] for a in view.activations))
        features = torch.cat([_resized(a.relu(), size) for a in view.activations], dim=1)  # [B, d, h, w]
        channels = [a.shape[1] for a in view.activations]
        d, num_classes = self.weights.shape
        if sum(channels) != d:
            raise ValueError(f"BroadCAM: the BLS was fitted on d={d} features but target layers "
                             f"{self.target_layers} give {'+'.join(map(str, channels))}={sum(channels)} channels")
        if int(view.targets.max()) >= num_classes:
            raise ValueError(f"BroadCAM: targets must lie in [0, {num_classes}) (the BLS's classes), "
                             f"got max {int(view.targets.max())}")
        # The BLS keeps float64; the 1×1 convolution runs in float32 or better, never in a half type (the
        # engine switches autocast off, and this also covers a model whose own parameters are half).
        dtype = torch.promote_types(features.dtype, torch.float32)
        weights = self.weights.to(device=features.device, dtype=dtype).T[view.targets]  # [B, K, d]
        return [torch.einsum("bkd,bdhw->bkhw", weights, features.to(dtype))]


def _resized(maps: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
