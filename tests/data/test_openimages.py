"""OpenImages30k (wsolevaluation layout): wsolevaluation's real masks and metadata through our readers, and a
tiny copy of the layout through the DataModule (labels, masks, splits, subsets, errors)."""
from __future__ import annotations

import re
import shutil

import cv2
import hydra
import numpy as np
import pytest
import torch

from src.data.image_io import DatasetError
from src.data.openimages import (OpenImagesDataModule, instance_boxes, load_wsol_mask, read_class_labels,
                                 read_localization)
from tests.data.layouts import OI_FOLDERS, OI_IMAGES, OI_SIZE, make_openimages
from tests.fixtures import WSOL_MASK_ROOT as MASK_ROOT
from tests.fixtures import WSOL_VAL_METADATA as VAL_METADATA
from tests.helpers import compose_config, run_cli


# The fixtures README: a constant map's PxAP = 100 · fg / (fg + bg); wsolevaluation's counts (fg exact)
CONSTANT_MAP = {"val/0bt_c3/1cd9ac0169ec7df0.jpg": (43031, 7145), "val/0bt_c3/3a29f0b33894d4a6.jpg": (833, 49342),
                "val/0bt_c3/3b3b9931325d65c9.jpg": (347, 13909)}


# ----------------------------------------------------------------------------------------------- real fixtures
@pytest.mark.parametrize("image", sorted(CONSTANT_MAP))
def test_real_masks_give_wsolevaluation_foreground_fractions(image):
    instances, ignore = read_localization(VAL_METADATA / "localization.txt")[image]
    mask = load_wsol_mask(MASK_ROOT, instances, ignore)
    assert mask.shape == (224, 224) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1, 255}
    fg, bg = CONSTANT_MAP[image]
    assert (mask == 1).sum() == fg
    ours = 100 * (mask == 1).sum() / ((mask == 1).sum() + (mask == 0).sum())
    assert ours == pytest.approx(100 * fg / (fg + bg), abs=0.1)


def test_real_ignore_region_excludes_foreground():
    image = "val/0bt_c3/3b3b9931325d65c9.jpg"  # the only fixture with a non-empty ignore mask
    instances, ignore = read_localization(VAL_METADATA / "localization.txt")[image]
    mask = load_wsol_mask(MASK_ROOT, instances, ignore)
    ignore_only = load_wsol_mask(MASK_ROOT, [ignore], None)  # the ignore file read as a "foreground"
    foreground = load_wsol_mask(MASK_ROOT, instances, None) == 1
    np.testing.assert_array_equal(mask == 255, (ignore_only == 1) & ~foreground)
    assert (mask == 255).sum() > 0 and ((mask == 255) & foreground).sum() == 0


def test_real_all_zero_and_all_one_ground_truths():
    """The two 0by6g images: the fixtures README's table crosses their files, the files make one GT all-zero
    and the other all-one either way."""
    loc = read_localization(VAL_METADATA / "localization.txt")
    zero, one = "val/0by6g/490365f63135f3e0.jpg", "val/0by6g/b4d953e7105da1d8.jpg"
    assert (load_wsol_mask(MASK_ROOT, *loc[zero]) == 0).all()
    assert (load_wsol_mask(MASK_ROOT, *loc[one]) == 1).all()
    crossed = {zero: loc[one], one: loc[zero]}
    assert {int(load_wsol_mask(MASK_ROOT, *crossed[k]).max()) for k in crossed} == {0, 1}


def test_real_val_metadata_parses():
    labels = read_class_labels(VAL_METADATA / "class_labels.txt", 100)
    assert len(labels) == 2500 and np.bincount([label for label, _ in labels.values()]).tolist() == [25] * 100
    localization = read_localization(VAL_METADATA / "localization.txt")
    assert set(localization) == set(labels)
    instances, ignore = localization["val/0bt_c3/3a29f0b33894d4a6.jpg"]
    assert len(instances) == 2 and ignore == "val/0bt_c3/3a29f0b33894d4a6_ignore.png"


def test_instance_boxes_are_inclusive_pixel_extents():
    instances = np.zeros((3, 10, 12), dtype=bool)
    instances[0, 2:5, 3:9] = True
    instances[2, 7, 11] = True  # instance 1 is empty: no box
    np.testing.assert_array_equal(instance_boxes(instances), [[3, 2, 8, 4], [11, 7, 11, 7]])


# ----------------------------------------------------------------------------------------------- tiny layout
@pytest.fixture(scope="module")
def oi(tmp_path_factory):
    return make_openimages(tmp_path_factory.mktemp("oi"))


@pytest.fixture
def oi_copy(oi, tmp_path):
    root = tmp_path / "openimages"
    shutil.copytree(oi.root, root)
    return root


def datamodule(root, **kwargs) -> OpenImagesDataModule:
    return OpenImagesDataModule(str(root), num_classes=3, image_size=OI_SIZE, **kwargs)


def test_protocol_attributes_and_class_names(oi):
    dm = datamodule(oi.root)
    assert (dm.seed_background, dm.ignore_index, dm.metrics) == (True, 255, ("PxAP",))
    assert dm.class_names == OI_FOLDERS and dm.num_classes == 3


def test_class_names_file(oi, tmp_path):
    names = tmp_path / "names.csv"
    names.write_text("/m/0by6g,Hat\n/m/01226z,Ball\n/m/0bt_c3,Book\n/m/0zzz,Other\n")
    assert datamodule(oi.root, class_names_file=str(names)).class_names == ("Ball", "Book", "Hat")


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_split_sizes_and_single_labels(oi, split):
    files = datamodule(oi.root).split_files(split)
    assert files.ids == oi.splits[split] and len(files.ids) == len(OI_IMAGES[split])
    assert (files.labels.sum(1) == 1).all()
    np.testing.assert_array_equal(files.labels.argmax(1), [label for _, label, _ in OI_IMAGES[split]])
    assert (files.annotations is None) == (split == "train")


def test_eval_masks_boxes_and_shapes(oi):
    dm = datamodule(oi.root)
    dm.setup()
    assert dm.eval_split == "test" and len(dm.eval_set) == 4
    for index, image in enumerate(oi.splits["test"]):
        sample = dm.eval_set[index]  # wsolevaluation's 224×224, whatever the training size (here 48)
        assert sample["id"] == image and sample["image"].shape == (3, 224, 224)
        assert sample["mask"].dtype == torch.long and sample["mask"].shape == (224, 224)
        expected = cv2.resize(oi.masks[image], (224, 224), interpolation=cv2.INTER_NEAREST)  # nearest per pixel
        np.testing.assert_array_equal(sample["mask"].numpy(), expected)
        count = OI_IMAGES["test"][index][2]
        assert sample["boxes"].shape == (count, 4)
        for x0, y0, x1, y1 in sample["boxes"].int().tolist():
            assert (sample["mask"][y0: y1 + 1, x0: x1 + 1] == 1).any()
    features = dm.train_eval_set[0]  # the training split has no masks: features only, at the training size
    assert set(features) == {"image", "labels", "index", "id"} and features["image"].shape == (3, OI_SIZE, OI_SIZE)


def test_masks_are_read_at_the_evaluation_size(oi):
    dm = OpenImagesDataModule(str(oi.root), num_classes=3, image_size=224, eval_split="val")
    sample = dm.build_dataset("val", train=False)[0]
    assert sample["image"].shape == (3, 224, 224) and sample["mask"].shape == (224, 224)
    image = oi.splits["val"][0]
    instances, ignore = read_localization(oi.root / "metadata" / "OpenImages" / "val" / "localization.txt")[image]
    expected = load_wsol_mask(oi.root / "dataset" / "OpenImages", instances, ignore, size=224)
    np.testing.assert_array_equal(sample["mask"].numpy(), expected)


def test_proportion_subsets_nested_and_cover_every_class(oi):
    subsets = []
    for proportion in (10, 50, 100):
        dm = datamodule(oi.root, proportion=proportion, seed=2)
        dm.setup()
        assert (dm.train_full.labels[dm.subset_indices].sum(0) > 0).all()
        subsets.append(set(dm.subset_ids))
    assert len(subsets[0]) == 3 and subsets[0] <= subsets[1] <= subsets[2] == set(oi.splits["train"])


def test_config_instantiates_the_datamodule(oi):
    cfg = compose_config(["data=openimages30k", f"data.root={oi.root}", "data.num_classes=3"])
    dm = hydra.utils.instantiate(cfg.data)
    assert isinstance(dm, OpenImagesDataModule) and dm.image_size == 224 and dm.eval_split == "test"
    assert dm.mask_root == dm.image_root == oi.root / "dataset" / "OpenImages"


# ----------------------------------------------------------------------------------------------- bad input
def test_missing_root_and_metadata(tmp_path, oi_copy):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "nowhere"))):
        datamodule(tmp_path / "nowhere")
    (oi_copy / "metadata" / "OpenImages" / "test" / "image_ids.txt").unlink()
    ids = oi_copy / "metadata" / "OpenImages" / "test" / "image_ids.txt"
    with pytest.raises(DatasetError, match=re.escape(f"{ids}: metadata file of OpenImages split 'test' not found")):
        datamodule(oi_copy).split_files("test")


def test_class_label_out_of_range_names_the_line(oi_copy):
    labels = oi_copy / "metadata" / "OpenImages" / "val" / "class_labels.txt"
    lines = labels.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",7"
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=re.escape(f"{labels}:2: class label '7'") + ".*0..2"):
        datamodule(oi_copy).split_files("val")


def test_class_folder_disagreeing_with_label(oi_copy):
    labels = oi_copy / "metadata" / "OpenImages" / "test" / "class_labels.txt"
    lines = labels.read_text().splitlines()
    lines[0] = lines[0].rsplit(",", 1)[0] + ",2"  # a 01226z image labelled as 0by6g
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=re.escape(f"{labels}:1: test/01226z/c0000001.jpg is in class folder "
                                                     "'01226z' but label 2 is class '0by6g'")):
        datamodule(oi_copy).split_files("test")


def test_image_without_class_label_and_missing_image(oi_copy):
    meta = oi_copy / "metadata" / "OpenImages" / "val"
    ids = meta / "image_ids.txt"
    ids.write_text(ids.read_text() + "val/0by6g/ffff.jpg\n")
    with pytest.raises(DatasetError, match=re.escape(f"{ids}:4: val/0by6g/ffff.jpg has no line in")):
        datamodule(oi_copy).split_files("val")
    (meta / "class_labels.txt").write_text((meta / "class_labels.txt").read_text() + "val/0by6g/ffff.jpg,2\n")
    image = oi_copy / "dataset" / "OpenImages" / "val" / "0by6g" / "ffff.jpg"
    with pytest.raises(DatasetError, match=re.escape(f"{image}: image listed in")):
        datamodule(oi_copy).split_files("val")


def test_eval_split_without_masks(oi_copy):
    (oi_copy / "metadata" / "OpenImages" / "test" / "localization.txt").unlink()
    dm = datamodule(oi_copy)
    with pytest.raises(DatasetError, match="split 'test' cannot be evaluated: .*localization.txt not found"):
        dm.setup()
    missing = next((oi_copy / "dataset" / "OpenImages" / "val").glob("*/*_ignore.png"))
    missing.unlink()
    with pytest.raises(DatasetError, match=re.escape(f"1 mask files not found under {oi_copy}") + ".*" +
                       re.escape(str(missing))):
        datamodule(oi_copy, eval_split="val").setup()


def test_corrupt_mask_skipped(oi_copy, oi):
    mask = next((oi_copy / "dataset" / "OpenImages" / "test").glob("0bt_c3/*_m*.png"))
    mask.write_bytes(b"not a png")
    dm = datamodule(oi_copy, on_corrupt="skip")
    dm.setup()
    assert len(dm.eval_set) == 3 and dm.eval_set.skipped == 1
    erroring = datamodule(oi_copy)
    erroring.setup()
    with pytest.raises(DatasetError, match=re.escape(f"{mask}: unreadable mask")):
        erroring.eval_set[1]


@pytest.mark.slow
def test_end_to_end_job_on_tiny_openimages(oi, tmp_path):
    run = run_cli(["data=openimages30k", f"data.root={oi.root}", "data.num_classes=3", "backbone.weights=null",
                   "debug=fast", "data.image_size=64", "data.num_workers=0", f"hydra.run.dir={tmp_path}"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "results.json").exists()
