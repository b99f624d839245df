"""`data=folder` on the example layout and small hand-made ones: classes, labels, splits, formats, partial masks,
boxes, the two seed protocols, proportions, and the config group."""
from __future__ import annotations

import logging

import hydra
import numpy as np
import pytest
import torch
from PIL import Image

from src.data import proportion_subset
from src.data.folder import FolderDataModule
from src.data.folder_splits import stratified_split
from src.data.image_io import read_rgb
from src.data.synthetic_shapes import SHAPE_NAMES
from tests.data.folder_example import EXAMPLE_IMAGES, EXAMPLE_SIZE, copy_of, write_example
from tests.helpers import compose_config


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder") / "example"
    return root, write_example(root)


def datamodule(root, **kwargs) -> FolderDataModule:
    return FolderDataModule(str(root), image_size=EXAMPLE_SIZE, num_workers=0, **kwargs)


def csv_labels(root) -> dict[str, tuple[set[str], str]]:
    rows = [line.split(",") for line in (root / "labels.csv").read_text().splitlines()[1:]]
    return {image.rsplit(".", 1)[0]: (set(filter(None, names.split(";"))), split) for image, names, split in rows}


def test_example_classes_labels_and_splits_are_those_written(example):
    root, counts = example
    dm = datamodule(root)
    assert dm.class_names == SHAPE_NAMES and "classes.txt" in dm.layout.classes_from
    truth = csv_labels(root)
    for split in ("train", "val", "test"):
        files = dm.split_files(split)
        assert len(files.ids) == counts[split]
        for image_id, labels in zip(files.ids, files.labels):
            names, written_split = truth[image_id]
            assert written_split == split and {SHAPE_NAMES[c] for c in np.flatnonzero(labels)} == names
    assert counts["masks"] == sum(dm.masked(split) for split in ("train", "val", "test"))
    assert dm.metrics == ("seed_mIoU", "PxAP", "MaxBoxAccV2")
    assert (dm.seed_background, dm.ignore_index, dm.eval_sizes_vary) == (True, 255, False)


def test_sixteen_bit_and_grayscale_images_read_by_the_high_byte_rule(tmp_path):
    values = np.array([[0, 255, 256, 511], [32768, 65280, 65534, 65535]], dtype=np.uint16)
    for suffix in (".png", ".tif"):
        Image.fromarray(values).save(tmp_path / f"g16{suffix}")
        pixels = read_rgb(tmp_path / f"g16{suffix}")
        assert pixels.dtype == torch.uint8 and pixels.shape == (3, 2, 4)
        assert pixels[0].tolist() == [[0, 0, 1, 1], [128, 255, 255, 255]] and (pixels == pixels[:1]).all()
    Image.fromarray(np.array([[7, 200]], dtype=np.uint8), mode="L").save(tmp_path / "g8.bmp")
    assert read_rgb(tmp_path / "g8.bmp").flatten().tolist() == [7, 200] * 3


def test_example_formats_give_the_drawn_gray_values(example):
    """The 16-bit TIFF of the example holds gray · 257: read back, it equals the 8-bit gray PNG's rule."""
    root, _ = example
    tif = next((root / "images").glob("*.tif"))
    stored = np.array(Image.open(tif))
    assert stored.dtype == np.uint16 and stored.max() > 255
    np.testing.assert_array_equal(read_rgb(tif)[0].numpy(), (stored // 256).astype(np.uint8))


def test_unmasked_images_are_all_ignore_and_masked_ones_as_written(example):
    root, _ = example
    dm = datamodule(root)
    dm.setup()
    seen = {"masked": 0, "unmasked": 0}
    for sample in (dm.eval_set[i] for i in range(len(dm.eval_set))):
        path = root / "masks" / f"{sample['id']}.png"
        if path.is_file():
            np.testing.assert_array_equal(sample["mask"].numpy(), np.array(Image.open(path)))
            seen["masked"] += 1
        else:
            assert (sample["mask"] == 255).all()
            seen["unmasked"] += 1
    assert seen["masked"] == dm.masked("val") and seen["masked"] and seen["unmasked"]


def test_without_background_class_k_is_k_minus_1_and_background_is_ignored(example):
    root, _ = example
    dm = datamodule(root, background=False)
    assert dm.seed_background is False and dm.metrics == ("seed_mIoU", "MaxBoxAccV2")
    dm.setup()
    sample = next(dm.eval_set[i] for i in range(len(dm.eval_set))
                  if (root / "masks" / f"{dm.eval_set.ids[i]}.png").is_file())
    written = np.array(Image.open(root / "masks" / f"{sample['id']}.png")).astype(np.int64)
    expected = np.where((written == 0) | (written == 255), 255, written - 1)
    np.testing.assert_array_equal(sample["mask"].numpy(), expected)
    assert len(dm.palette()) == 768 and dm.palette()[:3] == datamodule(root).palette()[3:6]


def test_boxes_only_on_the_images_boxes_csv_names(example):
    root, _ = example
    dm = datamodule(root, eval_split="test")
    boxed = {line.split(",")[0].rsplit(".", 1)[0] for line in (root / "boxes.csv").read_text().splitlines()[1:]}
    files = dm.split_files("test")
    for image_id, annotation in zip(files.ids, files.annotations):
        assert (len(annotation.boxes) > 0) == (image_id in boxed)
    rows = [line.split(",") for line in (root / "boxes.csv").read_text().splitlines()[1:]]
    in_test = [row for row in rows if row[0].rsplit(".", 1)[0] in files.ids]
    assert in_test and sum(len(a.boxes) for a in files.annotations) == len(in_test)
    for row in in_test:
        boxes = files.annotations[files.ids.index(row[0].rsplit(".", 1)[0])].boxes
        assert [float(v) for v in row[2:]] in boxes.tolist()


def test_no_masks_no_boxes_evaluates_cls_map_only(example, tmp_path):
    root = copy_of(example[0], tmp_path / "bare")
    for path in (root / "masks").iterdir():
        path.unlink()
    (root / "boxes.csv").unlink()
    dm = datamodule(root)
    assert dm.metrics == () and dm.masked("val") == 0
    dm.setup()
    assert (dm.eval_set[0]["mask"] == 255).all() and dm.eval_set[0]["boxes"].shape == (0, 4)


def test_class_subfolders_give_single_labels_and_sorted_names_are_logged(tmp_path, caplog):
    for n, (folder, kind) in enumerate([("zebra", "png"), ("apple", "jpg"), ("apple", "png"), ("moon", "bmp"),
                                        ("zebra", "tif"), ("moon", "png"), ("apple", "bmp")]):
        (tmp_path / "images" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 10, 3), n * 30, np.uint8)).save(tmp_path / "images" / folder / f"i{n}.{kind}")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text("zebra/i0.png\napple/i1\nmoon/i3.bmp\n")
    (tmp_path / "splits" / "val.txt").write_text("zebra/i4.tif\napple/i2\nmoon/i5\napple/i6.bmp\n")
    with caplog.at_level(logging.INFO, logger="src.data.folder_layout"):
        dm = datamodule(tmp_path)
    assert dm.class_names == ("apple", "moon", "zebra")
    assert "sorted names" in caplog.text and "['apple', 'moon', 'zebra']" in caplog.text
    files = dm.split_files("val")
    assert files.ids == ["apple/i2", "apple/i6", "moon/i5", "zebra/i4"]
    np.testing.assert_array_equal(files.labels.argmax(1), [0, 0, 1, 2])
    assert (files.labels.sum(1) == 1).all() and dm.metrics == ()


def test_seeded_split_without_column_or_lists_is_stratified_and_fixed(example, tmp_path):
    root = copy_of(example[0], tmp_path / "unsplit")
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    first, again = datamodule(root), datamodule(root)
    assert first.folder_splits.members == again.folder_splits.members
    members = first.folder_splits.members
    assert sorted(sum(members.values(), [])) == list(range(EXAMPLE_IMAGES))
    assert [len(members[s]) for s in ("train", "val", "test")] == [14, 3, 3]  # 0.7 / 0.15 / 0.15 of 20
    assert "data.split_seed=0" in first.folder_splits.sources["val"]
    other = datamodule(root, split_seed=1).folder_splits.members
    assert other != members


def test_stratified_split_puts_each_class_in_every_split_it_can():
    labels = np.zeros((30, 4), dtype=np.float32)
    labels[np.arange(30), np.arange(30) % 3] = 1  # classes 0..2: 10 images each
    labels[[0, 7], 3] = 1  # class 3: two images only → train and val
    members = stratified_split(labels, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)
    assert [len(members[s]) for s in ("train", "val", "test")] == [18, 6, 6]
    for split in ("train", "val", "test"):
        present = labels[members[split]].sum(0) > 0
        assert present[:3].all()
        assert present[3] == (split != "test")


def test_proportions_are_nested_and_keep_every_class(example):
    dm = datamodule(example[0])
    labels = dm.split_files("train").labels
    subsets = [set(proportion_subset(labels, p, seed=0).tolist()) for p in (1, 10, 50, 100)]
    assert all(a <= b for a, b in zip(subsets, subsets[1:])) and len(subsets[-1]) == len(labels)
    assert all((labels[sorted(s)].sum(0) > 0).all() for s in subsets)


def test_config_group_builds_the_datamodule(example):
    cfg = compose_config(["data=folder", f"data.root={example[0]}", "data.background=false", "data.num_workers=0"])
    dm = hydra.utils.instantiate(cfg.data)
    assert isinstance(dm, FolderDataModule) and dm.name == "folder" and dm.seed_background is False
    dm.setup()
    assert len(dm.eval_set) == example[1]["val"]


def test_what_other_tools_write_is_read(example, tmp_path):
    """An extra column, image names with 'images/', masks saved as 16-bit or equal-channel RGB PNGs, a box whose
    end is exclusive (x1 = W), and no val split (the evaluation falls back to test)."""
    root = copy_of(example[0], tmp_path / "other_tools")
    lines = (root / "labels.csv").read_text().splitlines()
    rows = [f"images/{line}".replace(",val", ",test") + ",note" for line in lines[1:]]
    (root / "labels.csv").write_text("\n".join([lines[0] + ",notes", *rows]) + "\n")
    masked = sorted((root / "masks").glob("*.png"))
    written = {path.stem: np.array(Image.open(path)) for path in masked[:2]}
    Image.fromarray(written[masked[0].stem].astype(np.uint16)).save(masked[0])
    Image.fromarray(np.repeat(written[masked[1].stem][..., None], 3, axis=2)).save(masked[1])
    assert Image.open(masked[0]).mode == "I;16" and Image.open(masked[1]).mode == "RGB"
    box = (root / "boxes.csv").read_text().splitlines()[1].split(",")
    rewrite = ",".join(box[:4] + [str(EXAMPLE_SIZE), box[5]])
    (root / "boxes.csv").write_text("\n".join(["image,class,x0,y0,x1,y1", rewrite]) + "\n")
    dm = datamodule(root)
    assert dm.eval_split == "test" and dm.folder_splits.members["val"] == []
    for split in ("train", "test"):
        files = dm.split_files(split)
        for image_id, annotation in zip(files.ids, files.annotations):
            if image_id in written:
                dataset = dm.dataset_class(files, None)
                mask, _ = dataset.read_annotation(files.ids.index(image_id), (EXAMPLE_SIZE, EXAMPLE_SIZE))
                np.testing.assert_array_equal(mask, written[image_id])
    boxes = dm.boxes[box[0].rsplit(".", 1)[0]]
    assert boxes.tolist() == [[float(box[2]), float(box[3]), EXAMPLE_SIZE - 1, float(box[5])]]
