"""Score-CAM (Wang et al. 2020): a channel's weight is the class score of the input masked by that channel."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .engine import CamEngine, CamView, constant_maps, normalize_maps
from .registry import register_cam


@register_cam("scorecam")
class ScoreCAM(CamEngine):
    """`w^c = softmax_k y^c(X ⊙ norm(up(A_k)))` over the channels k, as pytorch-grad-cam.

    One set of masked forwards per image serves all its K classes; masked inputs go `batch_size` at a time
    (memory ∝ batch_size, never all channels at once); constant channels all give the same all-zero input, forwarded once.
    """

    needs_gradients = False

    def __init__(self, model: nn.Module, target_layers: str | Sequence[str], *, batch_size: int = 32, **options):
        if batch_size is None:
            raise ValueError("scorecam needs an integer batch_size (masked inputs per forward), got None")
        super().__init__(model, target_layers, batch_size=batch_size, **options)

    def channel_weights(self, view: CamView, layer: int) -> Tensor:
        activations, images, targets = view.activations[layer], view.images, view.targets
        scores = images.new_empty((*activations.shape[:2], targets.shape[1]))  # [B, C, K]
        constant = constant_maps(activations)  # [B, C]
        if constant.any():
            blank_logits = self.predict_logits(torch.zeros_like(images[:1]))  # [1, N]
            blank_scores = blank_logits[0, targets]  # [B, K]
            scores[constant] = blank_scores[:, None].expand_as(scores)[constant]
        for chunk in constant.logical_not().nonzero().split(self.batch_size):
            image_index, channel = chunk.unbind(1)
            # align_corners=True as pytorch-grad-cam's masks (UpsamplingBilinear2d); with 2×2 maps it matters.
            masks = F.interpolate(
                activations[image_index, channel][:, None], size=images.shape[-2:], mode="bilinear", align_corners=True
            )
            logits = self.predict_logits(images[image_index] * normalize_maps(masks))
            scores[image_index, channel] = logits.gather(1, targets[image_index])
        return scores.softmax(dim=1).transpose(1, 2)
