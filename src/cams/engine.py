"""The CAM engine: everything a CAM method shares, so that a method only says how its weights are computed.

The engine owns the forward hooks on named target layers, the forward, the per-image targets, the gradients
(to the target layers only), the upsampling to the input size, the ReLU, the fusion of several layers, the
multi-scale + flip test-time augmentation and the min-max normalisation. Maps are tensors on the images'
device: `[B, H, W]` for targets `[B]`, `[B, K, H, W]` for targets `[B, K]`, in [0, 1] when `normalize=True`.
After a call, `engine.logits` `[B, N]` holds the classifier's scores from that call's own forward of the unflipped
scale-1.0 view (no second forward is needed to score the classifier).
`maps_at(images, targets, ("input", "feature"))` also gives them at the feature resolution (before the
upsampling to the image), from the same forwards, for protocols that resize the CAM themselves (wsolevaluation).

How to write a method (one short file): subclass `CamEngine`, decorate it with `@register_cam("key")`, and
override what differs:

- `channel_weights(view, layer) -> [B, K, C_l]`: the channel weights of one target layer (most methods).
- `layer_map(view, layer) -> [B, K, h_l, w_l]`: one layer's raw class maps; default `Σ_c w_c A_c`
  (LayerCAM overrides it for pixel-wise weights).
- `class_maps(view) -> list of [B, K, h, w]`: how the list of per-layer activations becomes class maps.
  Default: one map per target layer, which the engine then upsamples and fuses with `fusion`. A method that
  combines the layers itself (BroadCAM: concatenate the layers' activations along channels at the largest
  spatial size and take `Σ_k w_k^c ReLU(M_k)` with fitted weights) returns a one-element list, so no fusion.
- `needs_gradients = False` (class attribute): no graph is recorded and `view.gradients` is None.
- `relu_before_upsample = False` (class attribute): upsample a layer's raw map, then ReLU (BroadCAM's
  original order). Default True: ReLU at feature resolution first, as pytorch-grad-cam and TorchCAM do.
- extra constructor kwargs: `def __init__(self, model, target_layers, *, bls, **options)` and pass
  `**options` on to `CamEngine.__init__` (they are the engine options below).
- `predict_logits(images)`: a forward without hooks nor graph, for methods that score modified inputs.

The engine never writes `.grad` of parameters nor changes their `requires_grad`; it runs the model in eval mode
and restores every module's train/eval flag afterwards. It computes in float32 whatever autocast (AMP) is active
around it: autocast is switched off for the images' device type and half-precision images are cast to float32,
so activations, gradients, Score-CAM's masked forwards and maps are those of the fp32 model (a model whose
parameters are themselves half precision, e.g. Lightning's "16-true", is run as it is). Hooks stay on the model
until `remove()` / `close()` or the end of a `with` block.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FUSIONS = ("mean", "max", "tanh-max")
RESOLUTIONS = ("input", "feature")  # what `CamEngine.maps_at` returns: maps at the image size, at the feature size

# A map whose range is below this fraction of its magnitude is float noise around a constant (e.g. a constant
# upsampled bilinearly), so normalising it would only amplify rounding errors.
_CONSTANT_RTOL = 1e-5


def constant_maps(maps: Tensor) -> Tensor:
    """Which maps `[..., h, w]` are constant (up to float noise) → bool `[...]`."""
    low, high = maps.amin(dim=(-2, -1)), maps.amax(dim=(-2, -1))
    return (high - low) <= _CONSTANT_RTOL * torch.maximum(high.abs(), low.abs())


def normalize_maps(maps: Tensor) -> Tensor:
    """Min-max normalise each map `[..., h, w]` to [0, 1]; a constant map becomes zeros."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    span = torch.where(constant_maps(maps)[..., None, None], torch.inf, span)
    return (maps - low) / span


def scale_for_fusion(maps: Tensor, rule: str) -> Tensor:
    """Bring one layer's maps `[B, K, h, w]` (≥ 0) to the common scale that `rule` fuses: min-max normalised
    (both peers do it at the layer's own resolution), then tanh(2·x) for "tanh-max" (TorchCAM / LayerCAM paper)."""
    maps = normalize_maps(maps)
    return torch.tanh(2 * maps) if rule == "tanh-max" else maps


@dataclass
class CamView:
    """One forward of the engine on one test-time view (scale, flip) of a batch, and what the hooks saw."""

    images: Tensor  # [B, 3, h, w] the view's input
    targets: Tensor  # [B, K] int64 class indices
    logits: Tensor  # [B, N] model output, detached
    activations: list[Tensor]  # per target layer: [B, C_l, h_l, w_l], detached
    gradients: list[Tensor] | None  # per target layer: [B, K, C_l, h_l, w_l] = ∂logit[b, targets[b, k]] / ∂A_l


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode, then restore each module's own flag (a model may mix train and eval submodules)."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _without_autocast(device: torch.device):
    """Autocast off for `device`'s type (Lightning's "16-mixed" / "bf16-mixed" wrap the test loop in it)."""
    return torch.autocast(device_type=device.type, enabled=False)


def _at_least_float32(images: Tensor) -> Tensor:
    """Half-precision images (e.g. from an AMP data pipeline) → float32; float32 / float64 stay as they are."""
    return images.float() if images.is_floating_point() and images.dtype.itemsize < 4 else images


def _target_matrix(targets: Tensor, batch: int, device: torch.device) -> tuple[Tensor, bool]:
    """Targets `[B]` or `[B, K]` → int64 `[B, K]` on `device`, and whether they came as `[B]`."""
    targets = torch.as_tensor(targets)
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise TypeError(f"targets must hold integer class indices, got dtype {targets.dtype}")
    if targets.ndim not in (1, 2) or targets.shape[0] != batch or targets.numel() == 0:
        raise ValueError(f"targets must be [B] or [B, K] with B = {batch} images and K ≥ 1, got {tuple(targets.shape)}")
    # A fresh tensor: targets made under inference_mode cannot be saved for the backward.
    matrix = targets.reshape(batch, -1).to(device=device, dtype=torch.long).clone()
    return matrix, targets.ndim == 1


class CamEngine:
    """Base of every CAM method; see the module docstring for what a method overrides.

    Args:
        model: classifier returning logits `[B, N]`.
        target_layers: a name or names from `model.named_modules()`.
        batch_size: the most images per forward (None: the whole batch); Score-CAM's masked forwards too.
        fusion: how several target layers' maps are fused, one of `FUSIONS`: each layer's map is min-max
            normalised at its own resolution ("tanh-max": then tanh(2·x)), upsampled, and averaged ("mean",
            pytorch-grad-cam) or maxed element-wise ("max", "tanh-max" as TorchCAM / the LayerCAM paper). The
            fusion happens at the input size (TorchCAM fuses at the largest layer's size), so "tanh-max"
            differs from TorchCAM where the layers' sizes differ.
        scales: test-time scales; each scale's map is computed on the resized image and resized back.
        flip: also use the horizontally flipped image of every scale (its map is flipped back).
        normalize: min-max normalise each final map to [0, 1]; False returns the raw sum over views of the
            upsampled, ReLU'd (and, for several layers, fused) maps.
    """

    needs_gradients: bool = True
    relu_before_upsample: bool = True

    def __init__(
        self,
        model: nn.Module,
        target_layers: str | Sequence[str],
        *,
        batch_size: int | None = None,
        fusion: str = "mean",
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        normalize: bool = True,
    ) -> None:
        names = [target_layers] if isinstance(target_layers, str) else list(target_layers or [])
        if not names:
            raise ValueError(f"target_layers must name modules of model.named_modules(), got {target_layers!r}")
        modules = dict(model.named_modules())
        for name in names:
            if name not in modules:
                close = difflib.get_close_matches(name, list(modules), n=5)
                raise ValueError(f"unknown target layer {name!r}; close matches in model.named_modules(): {close}")
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; expected one of {FUSIONS}")
        scales = [float(s) for s in scales]
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be a non-empty list of positive floats, got {scales}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1 or None, got {batch_size}")
        self.model, self.target_layers = model, names
        self.batch_size, self.fusion, self.scales, self.flip, self.normalize = batch_size, fusion, scales, flip, normalize
        self._capturing = False
        # Logits [B, N] of the last call's reference view: the unflipped view at scale 1.0 (the first scale when
        # 1.0 is not among `scales`), i.e. the plain forward of the images, so callers score the classifier
        # from the CAM pass's own forward instead of running another one.
        self.logits: Tensor | None = None
        self._activations: list[Tensor | None] = [None] * len(names)
        self._handles = [modules[name].register_forward_hook(partial(self._capture, i)) for i, name in enumerate(names)]

    # ----- what methods override -------------------------------------------------------------------------
    def channel_weights(self, view: CamView, layer: int) -> Tensor:
        """Channel weights `[B, K, C_l]` of target layer `layer` for each image's K target classes."""
        raise NotImplementedError(f"{type(self).__name__} must override channel_weights or layer_map")

    def layer_map(self, view: CamView, layer: int) -> Tensor:
        """Raw class maps `[B, K, h_l, w_l]` of one target layer: `Σ_c w_c A_c`."""
        return torch.einsum("bkc,bchw->bkhw", self.channel_weights(view, layer), view.activations[layer])

    def class_maps(self, view: CamView) -> list[Tensor]:
        """Raw class maps at feature resolution, one `[B, K, h_l, w_l]` per map to fuse."""
        return [self.layer_map(view, layer) for layer in range(len(self.target_layers))]

    def predict_logits(self, images: Tensor) -> Tensor:
        """Logits `[n, N]` of `images` `[n, 3, h, w]`, without capturing activations nor recording a graph."""
        with torch.no_grad(), _without_autocast(images.device):
            return self._check_logits(self.model(_at_least_float32(images)))

    # ----- the engine --------------------------------------------------------------------------------------
    def __call__(self, images: Tensor, targets: Tensor) -> Tensor:
        """Maps `[B, H, W]` for targets `[B]`, `[B, K, H, W]` for targets `[B, K]`, float, on images' device."""
        return self.maps_at(images, targets, ("input",))[0]

    def maps_at(
        self, images: Tensor, targets: Tensor, resolutions: Sequence[str] = RESOLUTIONS
    ) -> tuple[Tensor, ...]:
        """The maps at each of `resolutions` (from `RESOLUTIONS`), all from the same forwards.

        "input": `__call__`'s maps, `[B, (K,) H, W]`. "feature": the same maps before the upsampling to the image,
        `[B, (K,) h, w]`, where h×w is the largest target layer's size in the unscaled view (scale 1.0; the first
        scale when 1.0 is not among `scales`). Each view's layer maps are resized (bilinearly, as for "input") to
        h×w, which is a no-op for a single layer at scale 1.0; ReLU, fusion, the sum over views and `normalize` are
        those of "input". WSOL protocols resize the feature-resolution CAM to their evaluation size themselves.
        """
        unknown = [r for r in resolutions if r not in RESOLUTIONS]
        if unknown or not resolutions:
            raise ValueError(f"resolutions must be a non-empty list of {RESOLUTIONS}, got {list(resolutions)}")
        if not self._handles:
            raise RuntimeError(f"{type(self).__name__} was removed (remove()/close()); create a new one")
        if not isinstance(images, Tensor) or images.ndim != 4:
            raise ValueError(f"images must be a tensor [B, 3, H, W], got {getattr(images, 'shape', type(images))}")
        # Lightning's test loop runs under inference_mode, whose tensors cannot take part in autograd; under
        # AMP it also runs under autocast, whose fp16 gradients at layer 4 underflow (and bf16 has 8 bits).
        with torch.inference_mode(False), _eval_mode(self.model), _without_autocast(images.device):
            target_matrix, single = _target_matrix(targets, images.shape[0], images.device)
            images = images.clone() if images.is_inference() else images
            images = _at_least_float32(images)
            step = self.batch_size or images.shape[0]
            chunks = [self._maps(x, t, resolutions) for x, t in zip(images.split(step), target_matrix.split(step))]
            maps = [torch.cat([chunk_maps[i] for chunk_maps, _ in chunks]) for i in range(len(resolutions))]
            self.logits = torch.cat([chunk_logits for _, chunk_logits in chunks])
        return tuple(m[:, 0] if single else m for m in maps)

    def _maps(self, images: Tensor, targets: Tensor, resolutions: Sequence[str]) -> tuple[list[Tensor], Tensor]:
        """Maps `[B, K, ., .]` per resolution, summed over the test-time views (normalised if asked), and the
        logits `[B, N]` of the reference view (unflipped, scale 1.0 or else the first scale)."""
        height, width = images.shape[-2:]
        reference_scale = 1.0 if 1.0 in self.scales else self.scales[0]
        total = logits = None
        views = []  # (raw layer maps, flipped, scale) of each view, for the feature resolution
        for scale in self.scales:
            scaled = images
            if scale != 1.0:
                size = (max(1, round(height * scale)), max(1, round(width * scale)))
                scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            for flipped in (False, True) if self.flip else (False,):
                view = self._forward(scaled.flip(-1) if flipped else scaled, targets)
                if scale == reference_scale and not flipped:
                    logits = view.logits
                layer_maps = self.class_maps(view)
                if "feature" in resolutions:
                    views.append((layer_maps, flipped, scale))
                if "input" in resolutions:
                    maps = self._upsample_and_fuse(layer_maps, (height, width))
                    maps = maps.flip(-1) if flipped else maps
                    total = maps if total is None else total + maps
        out = {"input": total}
        if views:
            reference = next(maps for maps, flipped, scale in views if scale == reference_scale and not flipped)
            size = (max(m.shape[-2] for m in reference), max(m.shape[-1] for m in reference))
            for layer_maps, flipped, _ in views:
                maps = self._upsample_and_fuse(layer_maps, size)
                maps = maps.flip(-1) if flipped else maps
                out["feature"] = maps if out.get("feature") is None else out["feature"] + maps
        return [normalize_maps(out[r]) if self.normalize else out[r] for r in resolutions], logits

    def _forward(self, images: Tensor, targets: Tensor) -> CamView:
        self._activations = [None] * len(self.target_layers)
        self._capturing = True
        try:
            # No graph before the first target layer: its hook turns recording on (see _capture).
            with torch.no_grad():
                logits = self._check_logits(self.model(images))
        finally:
            self._capturing = False
        activations, self._activations = self._activations, [None] * len(self.target_layers)
        missing = [name for name, a in zip(self.target_layers, activations) if a is None]
        if missing:
            raise RuntimeError(f"target layers {missing} were not called during the model's forward")
        if targets.min() < 0 or targets.max() >= logits.shape[1]:
            raise ValueError(
                f"targets must lie in [0, {logits.shape[1]}) (the model's logits), "
                f"got min {int(targets.min())}, max {int(targets.max())}"
            )
        gradients = self._gradients(logits, activations, targets) if self.needs_gradients else None
        return CamView(images, targets, logits.detach(), [a.detach() for a in activations], gradients)

    def _capture(self, index: int, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
        """Forward hook: keep the layer's output; hand the rest of the model a copy, so that in-place ops after
        the layer (e.g. `ReLU(inplace=True)`) cannot alter what we kept."""
        if not self._capturing:
            return None
        if not isinstance(output, Tensor) or output.ndim != 4:
            raise TypeError(f"target layer {self.target_layers[index]!r} must output [B, C, h, w], got {type(output)}")
        if self.needs_gradients:
            # Gradients are only needed from here to the logits; the forward so far ran without a graph.
            torch.set_grad_enabled(True)
            if not output.requires_grad:
                output = output.detach().requires_grad_()
        self._activations[index] = output
        return output.clone()

    @staticmethod
    def _gradients(logits: Tensor, activations: list[Tensor], targets: Tensor) -> list[Tensor]:
        """∂logit[b, targets[b, k]] / ∂A_l → per layer `[B, K, C_l, h_l, w_l]`; parameters get no gradient."""
        columns = targets.shape[1]
        per_class = []
        for k in range(columns):
            # In eval mode images do not interact, so the gradient of the batch sum is each image's own.
            score = logits.gather(1, targets[:, k : k + 1]).sum()
            per_class.append(torch.autograd.grad(score, activations, retain_graph=k + 1 < columns))
        return [torch.stack([grads[layer] for grads in per_class], dim=1) for layer in range(len(activations))]

    def _upsample_and_fuse(self, layer_maps: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Per-layer raw maps `[B, K, h_l, w_l]` → one map `[B, K, H, W]` ≥ 0."""
        fusing = len(layer_maps) > 1
        upsampled = []
        for maps in layer_maps:
            maps = maps.float().relu() if self.relu_before_upsample else maps.float()
            if fusing:
                maps = scale_for_fusion(maps.relu(), self.fusion)
            if tuple(maps.shape[-2:]) != tuple(size):
                maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
            upsampled.append(maps.relu())
        if not fusing:
            return upsampled[0]
        stacked = torch.stack(upsampled)
        return stacked.mean(dim=0) if self.fusion == "mean" else stacked.amax(dim=0)

    @staticmethod
    def _check_logits(logits: Tensor) -> Tensor:
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            raise TypeError(f"the model must return logits [B, N], got {getattr(logits, 'shape', type(logits))}")
        return logits

    # ----- lifetime --------------------------------------------------------------------------------------
    def remove(self) -> None:
        """Remove the hooks from the model; the object cannot be called afterwards."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    close = remove

    def __enter__(self) -> CamEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target_layers={self.target_layers}, fusion={self.fusion!r}, scales={self.scales})"
