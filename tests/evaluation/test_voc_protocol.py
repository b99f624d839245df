"""VOC2012 scored at each image's original size (issue 11 items 2-3), on a tiny VOC layout of non-square images of
several sizes: the evaluation's CAMs have each image's size, IRN's `eval_cam.py` rule on the exported `high_res`
maps and the original masks gives the job's seed_mIoU, and the PNG seeds are that rule's argmax."""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from src.cams import CamSpec
from src.data.voc import VOCSegmentationDataModule
from src.evaluation import CamEvaluation
from src.run import run_job
from tests.data.layouts import VOC_VARIED_SIZES, make_voc
from tests.helpers import assert_timings_add_up, compose_config, small_resnet

NUM_CLASSES = 21  # VOC: background + 20


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return make_voc(tmp_path_factory.mktemp("voc_sizes"), varied_sizes=True)


def irn_seed_miou(npy_dir, masks: dict[str, np.ndarray], threshold: float) -> float:
    """IRN's step/eval_cam.py, written from its description: pad a background plane at `threshold` before the
    image's class maps, argmax, map back to labels (keys + 1, 0 = background); one confusion matrix over the
    split (255 ignored); IoU = TP / (TP + FP + FN) per class; mIoU = the nanmean over the 21 classes."""
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for image_id, gt in masks.items():
        data = np.load(npy_dir / f"{image_id}.npy", allow_pickle=True).item()
        cams = np.pad(data["high_res"], ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=threshold)
        keys = np.pad(data["keys"] + 1, (1, 0), mode="constant")
        prediction = keys[np.argmax(cams, axis=0)]
        valid = gt != 255
        confusion += np.bincount(NUM_CLASSES * gt[valid].astype(np.int64) + prediction[valid],
                                 minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
    true_positive = np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = true_positive / (confusion.sum(0) + confusion.sum(1) - true_positive)
    return float(np.nanmean(iou))


def test_evaluation_cams_have_each_images_original_size(voc):
    dm = VOCSegmentationDataModule(str(voc.root), image_size=48, eval_batch_size=4, cache_dir=None)
    dm.setup()
    sizes = {tuple(sample["image"].shape[-2:]) for sample in dm.train_eval_set}
    assert sizes == {(48, 48)}  # BLS features keep the training resolution
    net = small_resnet(dm.num_classes)
    evaluation = CamEvaluation(net, CamSpec("cam", ["layer4"], {"scales": [1.0, 0.5]}), dm.num_classes, True, 255,
                               ["seed_mIoU"], [0.1, 0.2], figure_images=len(dm.eval_set))
    pl.Trainer(accelerator="cpu", logger=False, inference_mode=False, enable_progress_bar=False,
               enable_model_summary=False).test(evaluation, datamodule=dm, verbose=False)
    assert len(evaluation.figure_samples) == len(voc.splits["train"]) == evaluation.results()["n_scored"]
    shapes = [tuple(sample["cams"].shape[-2:]) for sample in evaluation.figure_samples]
    assert shapes == [voc.masks[image_id].shape for image_id in voc.splits["train"]]
    assert len(set(shapes)) > 2 and any(h != w for h, w in shapes)  # the layout really has several sizes
    for sample, image_id in zip(evaluation.figure_samples, voc.splits["train"]):
        np.testing.assert_array_equal(sample["mask"].numpy(), voc.masks[image_id])  # 255 band untouched


@pytest.mark.slow
def test_irn_rule_on_exported_seeds_gives_the_jobs_seed_miou(voc, cache_dir, tmp_path):
    job = tmp_path / "job"
    results = run_job(compose_config([
        "data=voc2012", f"data.root={voc.root}", "data.cache_dir=null", "data.image_size=48", "data.num_workers=0",
        "backbone.weights=null", "debug=fast", "cam=cam", "cam.options.scales=[1.0,0.5]", "cam.options.flip=true",
        "export.seeds=true", "export.split=eval", f"paths.cache_dir={cache_dir}", f"paths.output_dir={job}",
        "logger=none"]))
    assert_timings_add_up(results)
    masks = {image_id: voc.masks[image_id] for image_id in voc.splits["train"]}  # VOC's evaluation split
    assert results["n_eval"] == len(masks) and results["export"]["written"] == len(masks)
    threshold = results["metrics"]["seed_threshold"]
    npy, png = job / "seeds" / "npy", job / "seeds" / "png"
    assert irn_seed_miou(npy, masks, threshold) == pytest.approx(results["metrics"]["seed_mIoU"] / 100, abs=1e-6)
    for image_id, gt in masks.items():
        data = np.load(npy / f"{image_id}.npy", allow_pickle=True).item()
        assert data["high_res"].shape == (len(data["keys"]), *gt.shape) and data["high_res"].dtype == np.float32
        seed = np.array(Image.open(png / f"{image_id}.png"))
        assert seed.shape == gt.shape  # the original H×W, no stretch
        cams = np.pad(data["high_res"], ((1, 0), (0, 0), (0, 0)), constant_values=threshold)
        np.testing.assert_array_equal(seed, np.pad(data["keys"] + 1, (1, 0))[cams.argmax(0)])
    assert {gt.shape for gt in masks.values()} <= set(VOC_VARIED_SIZES)
