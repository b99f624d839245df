"""Grad-CAM (Selvaraju et al. 2017): a channel's weight is its mean gradient."""

from torch import Tensor

from .engine import CamEngine, CamView
from .registry import register_cam


@register_cam("gradcam")
class GradCAM(CamEngine):
    """`w_c = mean_{x,y} ∂y/∂A_c`."""

    def channel_weights(self, view: CamView, layer: int) -> Tensor:
        return view.gradients[layer].mean(dim=(-2, -1))
