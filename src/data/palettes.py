"""PASCAL VOC's 256-colour palette: the seed-mask palette of every dataset that does not bring its own
(`ProportionDataModule.palette`; BCSS-WSSS overrides it with its released mask colours)."""
from __future__ import annotations


def voc_palette() -> list[int]:
    """PASCAL VOC's palette (768 ints): the bits of the index spread over R, G, B from the top bit down;
    0 black, 1 (128, 0, 0), …, 255 (224, 224, 192)."""
    palette = []
    for index in range(256):
        rgb, value = [0, 0, 0], index
        for bit in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << bit
            value >>= 3
        palette.extend(rgb)
    return palette
