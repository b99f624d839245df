"""Any image file a person may bring → uint8 RGB pixels, by one documented rule (every dataset reads through it).

- 8-bit RGB (JPEG, PNG, BMP, TIFF): as stored.
- Grayscale ("L"), bilevel ("1"): the gray value repeated in R, G and B.
- Palette ("P") images: their colours. Alpha ("RGBA", "LA"): dropped, not composited. CMYK: Pillow's conversion.
- 16-bit (grayscale "I;16*", and 32-bit integer "I" clipped to 0..65535): the high byte, `v // 256`, so the full
  16-bit range maps onto 0..255, the same for every image (no per-image stretch: intensities stay comparable
  between images). Pillow applies this very rule to 16-bit RGB PNG/TIFF files. Data that fills only 12 bits
  of 16 comes out dark under it: rescale such files to the full range before training.
- Floating-point images ("F") are refused: they have no agreed range.
The EXIF orientation tag is not applied: pixels are used as stored, like masks and boxes drawn on them.
"""
from __future__ import annotations


import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def high_byte(values: np.ndarray) -> np.ndarray:
    """Integer pixels of up to 16 bits [H, W] → uint8 [H, W]: `clip(v, 0, 65535) // 256`."""
    return (np.clip(values.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)


def rgb_array(image: Image.Image) -> np.ndarray:
    """An opened image → uint8 [H, W, 3] by the module's rule; ValueError for a mode without a rule."""
    if image.mode in SIXTEEN_BIT_MODES:
        return np.repeat(high_byte(np.array(image))[..., None], 3, axis=2)
    if image.mode == "F":
        raise ValueError("floating-point pixels (mode 'F') have no agreed range; expected 8- or 16-bit integers")
    return np.array(image.convert("RGB"))
