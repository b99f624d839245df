"""LayerCAM (Jiang et al. 2021): pixel-wise weights, the positive gradients."""

from torch import Tensor

from .engine import CamEngine, CamView
from .registry import register_cam


@register_cam("layercam")
class LayerCAM(CamEngine):
    """`map = Σ_c ReLU(g_c) ⊙ A_c`; for several layers use `fusion="tanh-max"` to follow the paper."""

    def layer_map(self, view: CamView, layer: int) -> Tensor:
        return (view.gradients[layer].relu() * view.activations[layer][:, None]).sum(dim=2)
