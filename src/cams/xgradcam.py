"""XGrad-CAM (Fu et al. 2020): gradients weighted by the normalised activations."""

from torch import Tensor

from .engine import CamEngine, CamView
from .registry import register_cam


@register_cam("xgradcam")
class XGradCAM(CamEngine):
    """`w_c = Σ_{x,y} g_c A_c / (Σ_{x,y} A_c + ε)`."""

    eps = 1e-7  # pytorch-grad-cam's value

    def channel_weights(self, view: CamView, layer: int) -> Tensor:
        activations = view.activations[layer][:, None]  # [B, 1, C, h, w]
        weighted = (view.gradients[layer] * activations).sum(dim=(-2, -1))
        return weighted / (activations.sum(dim=(-2, -1)) + self.eps)
