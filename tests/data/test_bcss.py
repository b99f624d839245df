"""BCSS-WSSS on a tiny copy of the real layout: labels from file names and masks, samples, subsets, errors."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from PIL import Image

from src.data.bcss import BCSS_CLASSES, BCSSDataModule, name_labels
from src.data.image_io import DatasetError
from tests.data.layouts import BCSS_SIZE, make_bcss
from tests.helpers import compose_config, run_cli


@pytest.fixture(scope="module")
def bcss(tmp_path_factory):
    return make_bcss(tmp_path_factory.mktemp("bcss"))


@pytest.fixture
def bcss_copy(bcss, tmp_path):
    root = tmp_path / "BCSS-WSSS"
    shutil.copytree(bcss.root, root)
    return root


def expected_labels(layout, ids) -> np.ndarray:
    labels = np.zeros((len(ids), 4), dtype=np.float32)
    for row, image_id in enumerate(ids):
        labels[row, sorted(layout.labels[image_id])] = 1
    return labels


def test_protocol_attributes():
    assert BCSS_CLASSES == ("TUM", "STR", "LYM", "NEC")
    assert (BCSSDataModule.seed_background, BCSSDataModule.ignore_index, BCSSDataModule.metrics) == (
        False, 4, ("seed_mIoU",))


def test_labels_in_file_names():
    path = Path("TCGA-A1-A0SK-DX1_xmin45749_ymin25055_MPP-0.2500+0[1101].png")
    np.testing.assert_array_equal(name_labels(path), [1, 1, 0, 1])


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_split_sizes_ids_and_labels(bcss, split):
    files = BCSSDataModule(str(bcss.root)).split_files(split)
    assert files.ids == bcss.splits[split]
    np.testing.assert_array_equal(files.labels, expected_labels(bcss, files.ids))
    assert (files.annotations is None) == (split == "train")


def test_training_and_valid_folder_names(tmp_path):
    layout = make_bcss(tmp_path, train_dir="training", val_dir="valid")
    dm = BCSSDataModule(str(layout.root))
    assert dm.split_files("train").ids == layout.splits["train"]
    assert dm.split_files("val").ids == layout.splits["val"]


def test_samples_keep_mask_values_and_background(bcss):
    dm = BCSSDataModule(str(bcss.root), image_size=BCSS_SIZE, eval_split="val")
    dm.setup()
    for index, stem in enumerate(bcss.splits["val"]):
        sample = dm.eval_set[index]
        assert sample["image"].shape == (3, BCSS_SIZE, BCSS_SIZE) and sample["image"].dtype == torch.float32
        assert sample["mask"].dtype == torch.long
        np.testing.assert_array_equal(sample["mask"].numpy(), bcss.masks[stem])  # 4 = background kept
        assert sample["boxes"].shape == (0, 4)
    torch.manual_seed(0)
    train = dm.train_set[0]
    assert set(train) == {"image", "labels", "index", "id"} and train["image"].shape == (3, BCSS_SIZE, BCSS_SIZE)


@pytest.mark.parametrize("image_size", [224, 48])
def test_evaluation_uses_the_native_patches_whatever_the_training_size(bcss, image_size):
    dm = BCSSDataModule(str(bcss.root), image_size=image_size)
    dm.setup()
    assert dm.eval_split == "test" and dm.eval_size is None
    for index, stem in enumerate(bcss.splits["test"]):  # never resized: the stored patch and its mask
        assert dm.eval_set[index]["image"].shape == (3, BCSS_SIZE, BCSS_SIZE)
        np.testing.assert_array_equal(dm.eval_set[index]["mask"].numpy(), bcss.masks[stem])
    assert dm.train_eval_set[0]["image"].shape == (3, image_size, image_size)  # BLS features: training size


def test_proportion_subsets_nested_and_cover_every_class(bcss):
    subsets = []
    for proportion in (10, 50, 100):
        dm = BCSSDataModule(str(bcss.root), proportion=proportion, seed=1)
        dm.setup()
        assert (dm.train_full.labels[dm.subset_indices].sum(0) > 0).all()
        subsets.append(set(dm.subset_ids))
    assert subsets[0] <= subsets[1] <= subsets[2] == set(bcss.splits["train"])


def test_config_instantiates_the_datamodule(bcss):
    dm = hydra.utils.instantiate(compose_config(["data=bcss_wsss", f"data.root={bcss.root}"]).data)
    assert isinstance(dm, BCSSDataModule) and dm.image_size == 224 and dm.eval_split == "test"


# ----------------------------------------------------------------------------------------------- bad input
def test_missing_root_and_split_folder(tmp_path, bcss_copy):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "nowhere"))):
        BCSSDataModule(str(tmp_path / "nowhere"))
    shutil.rmtree(bcss_copy / "test")
    with pytest.raises(DatasetError, match=re.escape(f"{bcss_copy / 'test'}: missing folder of split 'test'")):
        BCSSDataModule(str(bcss_copy)).split_files("test")


def test_file_name_without_label(bcss_copy):
    bad = bcss_copy / "train" / "TCGA-A1-A0SK-DX1_xmin1_ymin2_MPP-0.2500+7[12].png"
    shutil.copy(next((bcss_copy / "train").glob("*.png")), bad)
    with pytest.raises(DatasetError, match=re.escape(f"{bad}: file name has no [abcd] label")):
        BCSSDataModule(str(bcss_copy)).split_files("train")


def test_missing_mask_and_wrong_mask(bcss_copy, bcss):
    stem = bcss.splits["val"][0]
    mask = bcss_copy / "val" / "mask" / f"{stem}.png"
    mask.unlink()
    with pytest.raises(DatasetError, match=re.escape(str(mask)) + ": mask of an image in .* not found"):
        BCSSDataModule(str(bcss_copy)).split_files("val")
    Image.fromarray(np.full((BCSS_SIZE, BCSS_SIZE + 1), 4, np.uint8)).save(mask)
    dm = BCSSDataModule(str(bcss_copy), eval_split="val")
    dm.setup()
    with pytest.raises(DatasetError, match=re.escape(f"{mask}: mask is 32x33")):
        dm.eval_set[dm.eval_set.ids.index(stem)]
    Image.fromarray(np.full((BCSS_SIZE, BCSS_SIZE), 7, np.uint8)).save(mask)
    with pytest.raises(DatasetError, match=re.escape(f"{mask}: mask holds values [7]")):
        BCSSDataModule(str(bcss_copy)).split_files("val")


def test_corrupt_patch_skipped(bcss_copy):
    bad = sorted((bcss_copy / "train").glob("*.png"))[2]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    dm = BCSSDataModule(str(bcss_copy), on_corrupt="skip")
    files = dm.split_files("train")
    assert bad.stem not in files.ids and len(files.ids) == 5 and files.skipped == [str(bad)]
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        BCSSDataModule(str(bcss_copy)).build_dataset("train", train=True)[2]


@pytest.mark.slow
def test_end_to_end_job_on_tiny_bcss(bcss, tmp_path):
    run = run_cli(["data=bcss_wsss", f"data.root={bcss.root}", "backbone.weights=null", "debug=fast",
                   "data.image_size=64", "data.num_workers=0", f"hydra.run.dir={tmp_path}"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "results.json").exists()
