"""Grad-CAM++ (Chattopadhay et al. 2018): positive gradients weighted by second/third-order terms."""

import torch
from torch import Tensor

from .engine import CamEngine, CamView
from .registry import register_cam


@register_cam("gradcampp")
class GradCAMPlusPlus(CamEngine):
    """`α = g² / (2g² + (Σ_{x,y} A_c) g³ + ε)` (0 where g = 0), `w_c = Σ_{x,y} α ReLU(g)`."""

    eps = 1e-6  # pytorch-grad-cam's value

    def channel_weights(self, view: CamView, layer: int) -> Tensor:
        grads = view.gradients[layer]  # [B, K, C, h, w]
        activation_sums = view.activations[layer].sum(dim=(-2, -1))[:, None, :, None, None]  # [B, 1, C, 1, 1]
        squared = grads.square()
        alpha = squared / (2 * squared + activation_sums * squared * grads + self.eps)
        alpha = torch.where(grads != 0, alpha, 0.0)
        return (alpha * grads.relu()).sum(dim=(-2, -1))
