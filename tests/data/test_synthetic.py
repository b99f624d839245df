"""The built-in synthetic dataset: deterministic, valid masks/labels/boxes, cached, loadable in batches."""
from __future__ import annotations

import numpy as np

from src.data import SyntheticDataModule
from src.data.synthetic_shapes import IGNORE_INDEX, SHAPE_NAMES, render_image


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
    dm = SyntheticDataModule(root=str(cache_dir / "synthetic"), image_size=64, num_train=120, num_val=16,
                             num_test=16, proportion=10, seed=0, batch_size=8)
    dm.prepare_data()
    dm.setup()
    assert len(dm.train_set) == 12 and len(dm.eval_set) == 16 and dm.num_classes == 8
    assert (dm.train_full.labels[dm.subset_indices].sum(0) >= 1).all()
    files = sorted((cache_dir / "synthetic").glob("*.npz"))
    assert len(files) == 2
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["mask"].shape == (8, 64, 64)
    assert len(batch["boxes"]) == 8 and batch["labels"].shape == (8, 8)
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (8, 3, 64, 64) and "mask" not in train
    mtimes = [f.stat().st_mtime for f in files]
    dm2 = SyntheticDataModule(root=str(cache_dir / "synthetic"), image_size=64, num_train=120, num_val=16,
                              num_test=16, proportion=10, seed=0)
    dm2.prepare_data()
    assert [f.stat().st_mtime for f in files] == mtimes  # the cache is reused, not re-rendered
