"""The built-in synthetic dataset: deterministic, valid masks/labels/boxes, cached, loadable in batches."""
from __future__ import annotations

import numpy as np

from src.data.synthetic_shapes import IGNORE_INDEX, SHAPE_NAMES, render_image, shape_mask
from tests.helpers import synthetic_datamodule


def test_rendering_is_deterministic_and_consistent():
    for seed in range(20):
        image, mask, labels, boxes = render_image(seed, 64)
        again = render_image(seed, 64)
        assert np.array_equal(image, again[0]) and np.array_equal(mask, again[1])
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        classes = set(np.unique(mask).tolist()) - {0, IGNORE_INDEX}
        assert classes == {c + 1 for c in np.nonzero(labels)[0]}
        assert 1 <= labels.sum() <= 3 and len(boxes) == labels.sum()
        assert ((boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])).all()
        assert (boxes >= 0).all() and (boxes < 64).all()


def test_colour_does_not_give_the_class():
    """Each class appears in many colours: mean object colour varies widely within a class."""
    colours = {c: [] for c in range(len(SHAPE_NAMES))}
    for seed in range(150):
        image, mask, _, _ = render_image(seed, 64)
        for c in range(len(SHAPE_NAMES)):
            if (mask == c + 1).sum() > 30:
                colours[c].append(image[mask == c + 1].mean(0))
    for c, values in colours.items():
        assert len(values) >= 5 and np.std(values, axis=0).mean() > 25, SHAPE_NAMES[c]


def test_datamodule_splits_batches_and_cache(cache_dir):
    dm = synthetic_datamodule(cache_dir / "synthetic", proportion=10, seed=0, batch_size=8)
    assert len(dm.train_set) == 12 and len(dm.eval_set) == 16 and dm.num_classes == 8
    assert (dm.train_full.labels[dm.subset_indices].sum(0) >= 1).all()
    # Its two splits' files (the cache dir is the session's: other tests' splits may be there too).
    files = sorted(path for path in (cache_dir / "synthetic").glob("*.npz")
                   if path.name.startswith(("shapes_train_120x64_", "shapes_val_16x64_")))
    assert len(files) == 2
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["mask"].shape == (8, 64, 64)
    assert len(batch["boxes"]) == 8 and batch["labels"].shape == (8, 8)
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (8, 3, 64, 64) and "mask" not in train
    mtimes = [f.stat().st_mtime for f in files]
    synthetic_datamodule(cache_dir / "synthetic", setup=False, proportion=10, seed=0).prepare_data()
    assert [f.stat().st_mtime for f in files] == mtimes  # the cache is reused, not re-rendered


def _poses(name: str, radius: float = 16.0, size: int = 61) -> np.ndarray:
    """Masks [P, size, size] of shape `name` under every rotation (15° steps) and every radius ratio the
    renderer can draw against another object (radii 0.14–0.24 of the image: ratios 0.58–1.71)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) - size // 2
    masks = []
    for ratio in np.geomspace(0.14 / 0.24, 0.24 / 0.14, 9):
        for angle in np.deg2rad(np.arange(0, 360, 15)):
            u = xx * np.cos(angle) + yy * np.sin(angle)
            v = -xx * np.sin(angle) + yy * np.cos(angle)
            masks.append(shape_mask(name, u, v, radius * ratio))
    return np.stack(masks)


def _best_overlap(reference: np.ndarray, poses: np.ndarray) -> float:
    """The highest IoU of one mask [S, S] with any of the masks [P, S, S]."""
    return float(((reference & poses).sum((1, 2)) / (reference | poses).sum((1, 2))).max())


def test_no_class_is_a_rotated_or_scaled_copy_of_another():
    """A diamond was a square turned by 45°: such a pair overlaps almost fully (the check finds the square
    in its own 45° turn at another size, as it found the old diamond), while the classes stay well apart."""
    poses = {name: _poses(name) for name in SHAPE_NAMES}
    upright = {name: masks[4 * 24] for name, masks in poses.items()}  # ratio 1, angle 0
    square_turned = np.flip(poses["square"][5 * 24 + 3], 0)  # ratio 1.14, angle 45°, mirrored
    assert _best_overlap(square_turned, poses["square"]) > 0.97
    for i, a in enumerate(SHAPE_NAMES):
        for b in SHAPE_NAMES[i + 1:]:
            assert _best_overlap(upright[a], poses[b]) < 0.9, (a, b)
