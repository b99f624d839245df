"""The exported seeds and score maps read the way the downstream projects' own scripts read them, on tiny jobs.

Each reader below was written from reading those scripts (not copied): IRN (jiwoon-ahn/irn) `step/eval_cam.py`
with chainercv's `calc_semantic_segmentation_confusion`, `step/cam_to_ir_label.py` and
`step/make_sem_seg_labels.py`; PuzzleCAM (OFRIN/PuzzleCAM) `evaluate.py`; wsolevaluation (clovaai)
`evaluation.py` (`CamDataset`, `check_scoremap_validity`, `get_mask_paths`, `get_mask`, `MaskEvaluator`).
Each project's rule, applied to the files, must give the figures the job reported in results.json.
"""
from __future__ import annotations

import math
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from src.evaluation.export import SeedExport
from src.jobs.artifacts import load_job
from src.reporting.results import read_results
from src.run import run_job
from tests.data.layouts import make_openimages, make_voc
from tests.helpers import compose_config

JOB = ["backbone.weights=null", "debug=fast", "data.image_size=64", "data.num_workers=0", "logger=csv"]


def tiny_job(tmp_path, cache_dir, overrides: list[str]) -> dict:
    out = tmp_path / "job"
    run_job(compose_config(JOB + overrides + [f"paths.cache_dir={cache_dir}", f"paths.output_dir={out}"]))
    return read_results(out)


# ----- IRN and PuzzleCAM ------------------------------------------------------------------------------------
def irn_confusion(preds: list[np.ndarray], labels: list[np.ndarray]) -> np.ndarray:
    """chainercv's calc_semantic_segmentation_confusion: labels < 0 ignored, the matrix grown to the largest
    label seen (rows ground truth, columns prediction)."""
    confusion = np.zeros((0, 0), dtype=np.int64)
    for pred, gt in zip(preds, labels):
        size = max(int(pred.max()), int(gt.max())) + 1
        if size > len(confusion):
            grown = np.zeros((size, size), dtype=np.int64)
            grown[:len(confusion), :len(confusion)] = confusion
            confusion = grown
        keep = gt >= 0
        confusion += np.bincount(len(confusion) * gt[keep].astype(int) + pred[keep], minlength=len(confusion) ** 2
                                 ).reshape(len(confusion), len(confusion))
    return confusion


def voc_labels(root, ids: list[str]) -> list[np.ndarray]:
    """chainercv's VOC labels: the palette PNG's indices as int32, 255 → -1."""
    labels = []
    for image_id in ids:
        label = np.asarray(Image.open(root / "SegmentationClass" / f"{image_id}.png"), dtype=np.int32).copy()
        label[label == 255] = -1
        labels.append(label)
    return labels


@pytest.fixture(scope="module")
def voc_job(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("voc_job")
    layout = make_voc(tmp / "data", varied_sizes=True)
    results = tiny_job(tmp, cache_dir, ["data=voc2012", f"data.root={layout.root}", "data.cache_dir=null",
                                        "export.seeds=true", "export.split=eval"])
    return layout, results, tmp


@pytest.mark.slow
def test_irn_scripts_read_the_default_export_and_give_the_reported_seed_miou(voc_job):
    layout, results, _ = voc_job
    cam_out_dir = os.path.join(results["export"]["dir"], "npy")
    threshold = results["metrics"]["seed_threshold"]
    ids = layout.splits["train"]  # chainercv's VOC `train` split: the evaluation split of the job
    labels = voc_labels(layout.root, ids)
    preds = []
    for image_id, label in zip(ids, labels):
        cam_dict = np.load(os.path.join(cam_out_dir, image_id + ".npy"), allow_pickle=True).item()
        # eval_cam.py / cam_to_ir_label.py: high_res with a constant background plane in front, keys shifted
        cams = np.pad(cam_dict["high_res"], ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=threshold)
        keys = np.pad(cam_dict["keys"] + 1, (1, 0), mode="constant")
        preds.append(keys[np.argmax(cams, axis=0)])
        assert cam_dict["high_res"].dtype == np.float32 and cam_dict["high_res"].shape[1:] == label.shape
        # make_sem_seg_labels.py: `cam` is a tensor it moves with .cuda(), at IRN's stride-4 size
        strided = cam_dict["cam"]
        height, width = label.shape
        assert isinstance(strided, torch.Tensor) and strided.dtype == torch.float32
        assert strided.shape == (len(cam_dict["keys"]), math.ceil(height / 4), math.ceil(width / 4))
        assert strided.to("cpu").max() < 1 and strided.amax(dim=(1, 2)).min() > 0.99  # each ÷ (max + 1e-5)
    confusion = irn_confusion(preds, labels)
    gtj, resj, gtjresj = confusion.sum(axis=1), confusion.sum(axis=0), np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = gtjresj / (gtj + resj - gtjresj)
    assert np.nanmean(iou) * 100 == pytest.approx(results["metrics"]["seed_mIoU"], abs=1e-9)


@pytest.mark.slow
def test_puzzlecam_evaluate_reads_its_format_and_gives_the_reported_ious(voc_job):
    layout, results, tmp = voc_job
    job = load_job(tmp / "job", with_data=True)
    threshold = results["metrics"]["seed_threshold"]
    export = SeedExport(seeds=True, split="eval", dir=str(tmp / "puzzlecam"), format="puzzlecam")
    assert export(job.net, job.cam, job.datamodule, threshold)["written"] == len(layout.splits["train"])
    num_cls = 21
    tp, p, t = np.zeros(num_cls), np.zeros(num_cls), np.zeros(num_cls)
    for image_id in layout.splits["train"]:
        predict_dict = np.load(os.path.join(tmp / "puzzlecam" / "npy", image_id + ".npy"), allow_pickle=True).item()
        cams = np.pad(predict_dict["hr_cam"], ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=threshold)
        keys = predict_dict["keys"]
        predict = keys[np.argmax(cams, axis=0)]
        assert keys[0] == 0 and isinstance(predict_dict["cam"], torch.Tensor)
        gt = np.array(Image.open(layout.root / "SegmentationClass" / f"{image_id}.png"))
        cal = gt < 255
        mask = (predict == gt) * cal
        for i in range(num_cls):
            p[i] += np.sum((predict == i) * cal)
            t[i] += np.sum((gt == i) * cal)
            tp[i] += np.sum((gt == i) * mask)
    iou = tp / (t + p - tp + 1e-10) * 100
    reported = results["details"]["per_class_IoU"]
    # PuzzleCAM counts a class absent from both ground truth and seeds as IoU 0; the project leaves it out (None)
    np.testing.assert_allclose(iou, [0.0 if r is None else r for r in reported], atol=1e-6)
    defined = [i for i, r in enumerate(reported) if r is not None]
    assert np.mean(iou[defined]) == pytest.approx(results["metrics"]["seed_mIoU"], abs=1e-6)


# ----- wsolevaluation --------------------------------------------------------------------------------------
def wsol_mask(mask_root, mask_paths: list[str], ignore_path: str) -> np.ndarray:
    """get_mask: the union of the instance masks (grayscale, nearest to 224, > 0.5) + 255 × (ignore − it)."""
    def load(path):
        image = np.float32(cv2.imread(os.path.join(mask_root, path), cv2.IMREAD_GRAYSCALE))
        return cv2.resize(image, (224, 224), interpolation=cv2.INTER_NEAREST) > 0.5

    instances = np.stack([load(path) for path in mask_paths]).any(axis=0)
    ignore = np.logical_and(load(ignore_path), np.logical_not(instances))
    return instances.astype(np.uint8) + 255 * ignore.astype(np.uint8)


@pytest.mark.slow
def test_wsolevaluation_reads_the_scoremap_root_and_gives_the_reported_pxap(tmp_path, cache_dir):
    layout = make_openimages(tmp_path / "data")
    results = tiny_job(tmp_path, cache_dir, ["data=openimages30k", f"data.root={layout.root}", "data.num_classes=3",
                                             "export.scoremaps=true"])
    scoremap_root = results["scoremap_root"]
    metadata = layout.root / "metadata" / "OpenImages" / results["config"]["data"]["eval_split"]
    image_ids = [line.strip("\n") for line in open(metadata / "image_ids.txt")]
    mask_paths, ignore_paths = {}, {}
    for line in open(metadata / "localization.txt"):
        image_id, mask_path, ignore_path = line.strip("\n").split(",")
        mask_paths.setdefault(image_id, []).append(mask_path)
        ignore_paths.setdefault(image_id, ignore_path)
    thresholds = np.arange(0, 1, 0.001)  # --cam_curve_interval 0.001: the project's 1,000 bins
    edges = np.append(thresholds, [1.0, 2.0, 3.0])
    true_hist, false_hist = np.zeros(len(thresholds) + 2), np.zeros(len(thresholds) + 2)
    for image_id in image_ids:
        scoremap = np.load(os.path.join(scoremap_root, image_id + ".npy"))  # CamDataset._load_cam
        # check_scoremap_validity (np.float is float64)
        assert isinstance(scoremap, np.ndarray) and scoremap.dtype == np.float64 and scoremap.shape == (224, 224)
        assert not np.isnan(scoremap).any() and scoremap.min() >= 0 and scoremap.max() <= 1
        gt_mask = wsol_mask(layout.root / "dataset" / "OpenImages", mask_paths[image_id], ignore_paths[image_id])
        true_hist += np.histogram(scoremap[gt_mask == 1], bins=edges)[0]
        false_hist += np.histogram(scoremap[gt_mask == 0], bins=edges)[0]
    tp, fp = true_hist[::-1].cumsum(), false_hist[::-1].cumsum()
    fn = true_hist.sum() - tp
    non_zero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision, recall = tp / (tp + fp), tp / (tp + fn)
    auc = (precision[1:] * np.diff(recall))[non_zero[1:]].sum() * 100
    assert auc == pytest.approx(results["metrics"]["PxAP"], abs=1e-9)
