"""CAM (Zhou et al. 2016): the weights of class c are row c of the classifier's final linear layer."""

from collections.abc import Sequence

from torch import Tensor, nn

from .engine import CamEngine, CamView
from .registry import register_cam


def _linear_head(model: nn.Module, fc: str | None) -> nn.Module:
    """The classifier's final layer: `fc` by name (a Linear or a 1×1 Conv2d), else the last nn.Linear."""
    modules = dict(model.named_modules())
    if fc is None:
        linears = [name for name, module in modules.items() if isinstance(module, nn.Linear)]
        if not linears:
            raise ValueError("CAM needs a GAP → linear head, but the model has no nn.Linear; pass fc=<module name>")
        fc = linears[-1]
    if fc not in modules:
        raise ValueError(f"unknown fc layer {fc!r}; expected a name from model.named_modules()")
    head = modules[fc]
    if not isinstance(head, (nn.Linear, nn.Conv2d)) or head.weight[0, 0].numel() != 1:
        raise ValueError(f"fc layer {fc!r} must be an nn.Linear or a 1×1 nn.Conv2d, got {type(head).__name__}")
    return head


@register_cam("cam")
class CAM(CamEngine):
    """No backward: `w^c` = the head's weights, read at call time (so later training is seen).

    Extra option: `fc`, the name of the head (default: the last nn.Linear of the model).
    """

    needs_gradients = False

    def __init__(self, model: nn.Module, target_layers: str | Sequence[str], *, fc: str | None = None, **options):
        self.head = _linear_head(model, fc)
        super().__init__(model, target_layers, **options)

    def channel_weights(self, view: CamView, layer: int) -> Tensor:
        weight = self.head.weight.detach().flatten(1)  # [N, C]
        channels = view.activations[layer].shape[1]
        if weight.shape[1] != channels:
            raise ValueError(
                f"CAM: target layer {self.target_layers[layer]!r} has {channels} channels but the head takes "
                f"{weight.shape[1]}; hook the layer that feeds the global pooling"
            )
        return weight[view.targets]
