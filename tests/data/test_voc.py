"""VOC 2012 on a tiny copy of the real layout: labels from masks (or XML), splits, samples, subsets, errors."""
from __future__ import annotations

import re
import shutil

import hydra
import numpy as np
import pytest
import torch
from PIL import Image

from src.data import voc as voc_module
from src.data.image_io import DatasetError
from src.data.voc import VOC_CLASSES, VOCSegmentationDataModule
from tests.conftest import REPO
from tests.data.layouts import HEIGHT, VOC_IMAGES, VOC_NAMES, WIDTH, class_mask, make_voc
from tests.helpers import load_script, compose_config, run_cli

SIZE = 48


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return make_voc(tmp_path_factory.mktemp("voc"))


@pytest.fixture
def voc_copy(voc, tmp_path):
    """A copy of the layout a test may damage."""
    root = tmp_path / "VOC2012"
    shutil.copytree(voc.root, root)
    return root


def datamodule(root, **kwargs) -> VOCSegmentationDataModule:
    return VOCSegmentationDataModule(str(root), image_size=SIZE, **kwargs)


def expected_labels(ids) -> np.ndarray:
    labels = np.zeros((len(ids), 20), dtype=np.float32)
    for row, image_id in enumerate(ids):
        labels[row, VOC_IMAGES[image_id]] = 1
    return labels


def test_class_names_are_voc_and_protocol_attributes():
    assert VOC_CLASSES == VOC_NAMES
    assert (VOCSegmentationDataModule.seed_background, VOCSegmentationDataModule.ignore_index) == (True, 255)
    assert VOCSegmentationDataModule.metrics == ("seed_mIoU",)


@pytest.mark.parametrize("split", ["train_aug", "train", "val"])
def test_split_sizes_ids_and_labels_from_masks(voc, split):
    files = datamodule(voc.root).split_files(split)
    assert files.ids == voc.splits[split]
    np.testing.assert_array_equal(files.labels, expected_labels(files.ids))
    assert files.annotations is not None and files.skipped == []


@pytest.mark.parametrize("name, deeplab", [("trainaug.txt", False), ("train_aug.txt", True)])
def test_train_aug_list_names_and_deeplab_lines(tmp_path, name, deeplab):
    layout = make_voc(tmp_path, train_aug_name=name, deeplab_lines=deeplab)
    assert datamodule(layout.root).split_files("train_aug").ids == layout.splits["train_aug"]


def test_labels_from_xml_where_masks_are_absent(voc_copy, voc):
    shutil.rmtree(voc_copy / "SegmentationClassAug")
    dm = datamodule(voc_copy)
    files = dm.split_files("train_aug")
    np.testing.assert_array_equal(files.labels, expected_labels(voc.splits["train_aug"]))
    assert files.annotations is None and len(files.missing_masks) == len(files.ids)
    features = dm.build_dataset("train_aug", train=False, features=True)  # BLS features need no mask
    assert set(features[0]) == {"image", "labels", "index", "id"}
    dm.eval_split = "train_aug"
    with pytest.raises(DatasetError, match="cannot be evaluated: 13 of 13 masks not found under .*ClassAug"):
        dm.build_dataset("train_aug", train=False)


def test_eval_samples_are_at_the_original_size_and_features_at_the_training_size(voc):
    dm = datamodule(voc.root)
    dm.setup()
    assert len(dm.eval_set) == 5 and dm.test_dataloader().batch_size == 1  # sizes vary in VOC: one per batch
    for index, image_id in enumerate(voc.splits["train"]):
        sample = dm.eval_set[index]
        assert sample["id"] == image_id and sample["index"] == index
        assert sample["image"].shape == (3, HEIGHT, WIDTH) and sample["image"].dtype == torch.float32
        assert sample["mask"].dtype == torch.long
        np.testing.assert_array_equal(sample["mask"].numpy(), voc.masks[image_id])  # untouched, 255 band kept
        _, boxes = class_mask(VOC_IMAGES[image_id], lambda c: c + 1, background=0)
        np.testing.assert_allclose(sample["boxes"].numpy(), np.array(boxes, dtype=np.float32))  # unresized
        np.testing.assert_array_equal(sample["labels"].numpy(), expected_labels([image_id])[0])
    features = dm.train_eval_set[0]
    assert features["image"].shape == (3, SIZE, SIZE)


def test_training_samples_never_read_masks(voc, monkeypatch):
    dm = datamodule(voc.root)
    dm.setup()

    def no_masks(*args, **kwargs):
        raise AssertionError("a training sample read a mask")

    monkeypatch.setattr(voc_module, "read_class_mask", no_masks)
    torch.manual_seed(0)
    sample = dm.train_set[0]
    assert set(sample) == {"image", "labels", "index", "id"}
    assert sample["image"].shape == (3, SIZE, SIZE) and sample["image"].dtype == torch.float32
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape[1:] == (3, SIZE, SIZE) and batch["labels"].shape[1] == 20


def test_proportion_subsets_nested_and_cover_every_present_class(voc):
    subsets = {}
    for proportion in (10, 50, 100):
        dm = datamodule(voc.root, proportion=proportion, seed=3)
        dm.setup()
        subsets[proportion] = set(dm.subset_ids)
        present = dm.train_full.labels.sum(0) > 0
        assert (dm.train_full.labels[dm.subset_indices].sum(0) > 0)[present].all()
    assert subsets[10] <= subsets[50] <= subsets[100] == set(voc.splits["train_aug"])


def test_label_cache_is_written_and_reused(voc, tmp_path, monkeypatch):
    first = datamodule(voc.root, cache_dir=tmp_path / "cache").split_files("train_aug")
    assert len(list((tmp_path / "cache").glob("voc_labels_train_aug_*.npy"))) == 1
    monkeypatch.setattr(voc_module, "mask_labels", lambda path: pytest.fail("labels re-read despite the cache"))
    second = datamodule(voc.root, cache_dir=tmp_path / "cache").split_files("train_aug")
    np.testing.assert_array_equal(first.labels, second.labels)


def test_config_instantiates_the_datamodule(voc):
    cfg = compose_config(["data=voc2012", f"data.root={voc.root}", "data.cache_dir=null"])
    dm = hydra.utils.instantiate(cfg.data)
    assert isinstance(dm, VOCSegmentationDataModule)
    assert (dm.image_size, dm.train_split, dm.eval_split, dm.on_corrupt) == (448, "train_aug", "train", "error")


# ----------------------------------------------------------------------------------------------- bad input
def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "nowhere"))):
        datamodule(tmp_path / "nowhere")


def test_missing_split_file(voc_copy):
    (voc_copy / "ImageSets" / "Segmentation" / "train_aug.txt").unlink()
    listing = voc_copy / "ImageSets" / "Segmentation" / "train_aug.txt"
    expected = re.escape(f"{listing}: missing list of VOC split 'train_aug'") + ".*trainaug.txt"
    with pytest.raises(DatasetError, match=expected):
        datamodule(voc_copy).split_files("train_aug")


def test_listed_image_absent(voc_copy):
    image = voc_copy / "JPEGImages" / "2007_000039.jpg"
    image.unlink()
    with pytest.raises(DatasetError, match=re.escape(f"{image}: image listed in") + ".*not found"):
        datamodule(voc_copy).split_files("train")


def test_corrupt_image_errors_or_is_skipped(voc_copy):
    bad = voc_copy / "JPEGImages" / "2007_000063.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG: header fine, pixels missing
    dm = datamodule(voc_copy)
    dm.setup()
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        dm.eval_set[2]
    skipping = datamodule(voc_copy, on_corrupt="skip")
    skipping.setup()
    assert "2007_000063" not in skipping.eval_set.ids and len(skipping.eval_set) == 4
    assert skipping.eval_set.skipped == 1 and skipping.skipped == 2  # train_aug and train both list it
    assert [skipping.eval_set[i]["id"] for i in range(4)] == skipping.eval_set.ids


def test_mask_size_differing_from_its_image(voc_copy):
    mask_path = voc_copy / "SegmentationClass" / "2007_000032.png"
    with Image.open(mask_path) as mask:
        mask.resize((WIDTH + 4, HEIGHT), Image.NEAREST).save(mask_path)
    dm = datamodule(voc_copy)
    dm.setup()
    with pytest.raises(DatasetError, match=re.escape(f"{mask_path}: mask is 32x44") + ".* image is 32x40"):
        dm.eval_set[0]


def test_rgb_mask_and_unknown_xml_class(voc_copy):
    mask_path = voc_copy / "SegmentationClass" / "2007_000032.png"
    with Image.open(mask_path) as mask:
        mask.convert("RGB").save(mask_path)
    with pytest.raises(DatasetError, match=re.escape(f"{mask_path}: mask is mode 'RGB'")):
        datamodule(voc_copy).split_files("train")
    xml = voc_copy / "Annotations" / "2007_000039.xml"
    xml.write_text(xml.read_text().replace("tvmonitor", "television"))
    with pytest.raises(DatasetError, match=re.escape(f"{xml}: object name 'television'")):
        voc_module.read_voc_xml(xml)


# ----------------------------------------------------------------------------------------------- tools


def test_check_dataset_reports_counts_and_exit_codes(voc_copy, capsys):
    check = load_script("check_dataset")
    assert check.main(["data=voc2012", f"data.root={voc_copy}", "data.cache_dir=null"]) == 0
    out = capsys.readouterr().out
    assert "train_aug" in out and "13 images, published 10,582" in out and "usable" in out
    val_mask = voc_copy / "SegmentationClass" / "2007_000123.png"
    with Image.open(val_mask) as mask:
        mask.resize((WIDTH, HEIGHT + 2), Image.NEAREST).save(val_mask)
    assert check.main(["data=voc2012", f"data.root={voc_copy}", "data.cache_dir=null"]) == 0  # val: no role
    assert f"1 mask/image size mismatches, e.g. {val_mask}: (34, 40)" in capsys.readouterr().out
    (voc_copy / "SegmentationClass" / "2007_000032.png").unlink()
    assert check.main(["data=voc2012", f"data.root={voc_copy}", "data.cache_dir=null"]) == 1
    assert "UNUSABLE: evaluation split 'train' has no masks" in capsys.readouterr().out
    assert check.main(["data=voc2012", f"data.root={voc_copy / 'nowhere'}"]) == 1


@pytest.mark.slow
def test_end_to_end_job_on_tiny_voc(voc, tmp_path):
    run = run_cli(["data=voc2012", f"data.root={voc.root}", "backbone.weights=null", "debug=fast",
                   "data.image_size=64", "data.num_workers=0", "data.cache_dir=null", f"hydra.run.dir={tmp_path}"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "results.json").exists()
