"""Acceptance of issue 22: a tiny VOC tree converted to the folder layout (background plane on) gives, through
`data=folder`, the same training subset, the same evaluation targets (images, masks, labels, GT classes) and, on
the same classifier, the same BLS and the same seed mIoU as through `data=voc2012`."""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from src.bls import BLSFitting
from src.cams import CamSpec
from src.data.folder import FolderDataModule
from src.data.voc import VOCSegmentationDataModule
from src.evaluation import CamEvaluation
from src.evaluation.protocol import gt_targets
from tests.data.folder_example import voc_as_folder
from tests.data.layouts import class_mask, make_voc, voc_palette, write_jpeg, write_palette_png
from tests.helpers import small_resnet

SIZE, PROPORTION = 48, 50
# The tiny layout's train_aug has no bicycle (1), horse (12) nor train (18): add two SBD-only images that have them, as
# a folder dataset must have every class in its training split
EXTRA = {"2009_000010": [1], "2009_000011": [12, 18]}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    base = tmp_path_factory.mktemp("voc_folder")
    layout = make_voc(base, varied_sizes=True)
    for n, (image_id, classes) in enumerate(EXTRA.items()):
        write_jpeg(layout.root / "JPEGImages" / f"{image_id}.jpg", seed=50 + n, height=36, width=44)
        mask, _ = class_mask(classes, lambda c: c + 1, background=0, height=36, width=44, ignore=255)
        write_palette_png(layout.root / "SegmentationClassAug" / f"{image_id}.png", mask, voc_palette())
    with open(layout.root / "ImageSets" / "Segmentation" / "train_aug.txt", "a") as handle:
        handle.write("".join(f"{image_id}\n" for image_id in EXTRA))
    folder = voc_as_folder(layout.root, base / "folder", "train_aug.txt", "train.txt")
    common = dict(image_size=SIZE, proportion=PROPORTION, seed=0, num_workers=0)
    voc = VOCSegmentationDataModule(str(layout.root), cache_dir=None, **common)
    own = FolderDataModule(str(folder), eval_split="val", **common)
    for dm in (voc, own):
        dm.setup()
    return voc, own


def test_same_classes_subset_and_evaluation_targets(both):
    voc, own = both
    assert own.class_names == voc.class_names
    assert (own.seed_background, own.ignore_index, own.eval_size) == (voc.seed_background, voc.ignore_index, None)
    assert own.subset_ids == voc.subset_ids and own.train_full.ids == voc.train_full.ids
    np.testing.assert_array_equal(own.train_full.labels, voc.train_full.labels)
    assert (own.eval_sizes_vary, own.cam_batch_size) == (voc.eval_sizes_vary, voc.cam_batch_size) == (True, 1)
    assert own.eval_set.ids == voc.eval_set.ids and len(own.eval_set) == 5
    for index in range(len(voc.eval_set)):
        mine, theirs = own.eval_set[index], voc.eval_set[index]
        for key in ("image", "mask", "labels"):
            assert torch.equal(mine[key], theirs[key]), (key, theirs["id"])
        assert all(torch.equal(a, b) for a, b in zip(gt_targets(mine["labels"][None]),
                                                     gt_targets(theirs["labels"][None])))
        assert own.eval_set.original_hw(index) == voc.eval_set.original_hw(index)


def evaluate(dm, net: torch.nn.Module) -> tuple[dict, torch.Tensor]:
    bls, _ = BLSFitting(["layer3", "layer4"], alpha=50.0, step=256)(net, dm, "cpu")
    thresholds = {"start": 0.0, "stop": 0.6, "step": 0.05}
    evaluation = CamEvaluation(net, CamSpec("broadcam", ["layer3", "layer4"], {"bls": bls}), dm.num_classes,
                               dm.seed_background, dm.ignore_index, dm.metrics, thresholds)
    pl.Trainer(accelerator="cpu", logger=False, inference_mode=False, enable_progress_bar=False,
               enable_model_summary=False).test(evaluation, dataloaders=dm.test_dataloader(), verbose=False)
    return evaluation.results(), bls.cam_weights


def test_same_classifier_gives_the_same_bls_and_seed_miou(both):
    voc, own = both
    net = small_resnet(voc.num_classes)
    theirs, their_weights = evaluate(voc, net)
    mine, my_weights = evaluate(own, net)
    torch.testing.assert_close(my_weights, their_weights, rtol=0, atol=0)
    assert mine["n_scored"] == theirs["n_scored"] == 5
    for key in ("seed_mIoU", "seed_threshold"):
        assert mine["metrics"][key] == theirs["metrics"][key]
    assert mine["details"]["per_class_IoU"] == theirs["details"]["per_class_IoU"]
    assert mine["details"]["seed_curve"] == theirs["details"]["seed_curve"]
    assert 0 < theirs["metrics"]["seed_mIoU"] < 100
