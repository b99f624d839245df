"""Image (and mask) transforms on uint8 tensors: training augmentation and evaluation resizing."""
from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as F
from torchvision.transforms import InterpolationMode, RandomResizedCrop

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 [3, H, W] → float [3, H, W], ImageNet-normalised."""
    return F.normalize(image.float().div_(255.0), IMAGENET_MEAN, IMAGENET_STD)


class TrainTransform:
    """Random resized crop (scale jitter) and horizontal flip; mask-free, as training uses image labels only.

    `dihedral=True` adds a random quarter turn and vertical flip (the 8 symmetries of the square): only for
    data whose labels do not depend on orientation (the synthetic shapes are drawn at any angle already).
    """

    def __init__(self, size: int, scale: tuple[float, float] = (0.5, 1.0), hflip: bool = True,
                 dihedral: bool = False):
        self.size = int(size)
        self.scale = tuple(scale)
        self.hflip = hflip
        self.dihedral = dihedral

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        top, left, h, w = RandomResizedCrop.get_params(image, self.scale, (3 / 4, 4 / 3))
        image = F.resized_crop(image, top, left, h, w, [self.size, self.size], antialias=True)
        if self.hflip and torch.rand(()) < 0.5:
            image = F.horizontal_flip(image)
        if self.dihedral:
            image = torch.rot90(image, int(torch.randint(4, ())), dims=(-2, -1))
            if torch.rand(()) < 0.5:
                image = F.vertical_flip(image)
        return normalize_image(image)


class EvalTransform:
    """Resize to size×size; masks with nearest neighbour so class indices survive. `size=None` keeps the size."""

    def __init__(self, size: int | None):
        self.size = None if size is None else int(size)

    def image(self, image: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(image.shape[-2:]) != (self.size, self.size):
            image = F.resize(image, [self.size, self.size], antialias=True)
        return normalize_image(image)

    def mask(self, mask: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(mask.shape[-2:]) != (self.size, self.size):
            mask = F.resize(mask[None], [self.size, self.size], interpolation=InterpolationMode.NEAREST)[0]
        return mask.long()

    def boxes(self, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """x0y0x1y1 inclusive pixel boxes of an image of height×width → at the evaluation size (`resize_boxes`)."""
        if self.size is None:
            return boxes.float()
        return resize_boxes(boxes, (height, width), (self.size, self.size))


def resize_boxes(boxes: torch.Tensor, size: tuple[int, int], new_size: tuple[int, int]) -> torch.Tensor:
    """wsolevaluation's rule (`evaluation.resize_bbox`) for x0y0x1y1 inclusive pixel boxes `[N, 4]` of an image of
    `size` (H, W) resized to `new_size` (H', W') → float32 `[N, 4]` of integers: each coordinate becomes
    `int(x · W' / W)` (y with H), the product first, then the quotient, in float64, truncated, as its Python
    code does. Both corners move alike (no `(x1 + 1) · s − 1` for the inclusive end), so a box may shrink by up
    to a pixel; that is the reference's convention for the ground truth its MaxBoxAcc is computed on."""
    (height, width), (new_height, new_width) = size, new_size
    numerator = torch.tensor([new_width, new_height] * 2, dtype=torch.float64)
    denominator = torch.tensor([width, height] * 2, dtype=torch.float64)
    return (boxes.to(torch.float64) * numerator / denominator).trunc().float()
