"""Every bad input of a folder dataset is one line naming the file (and row) and what was expected (issue 22 item 4),
raised when the datamodule is built or its splits set up, before any training."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from src.data.folder import FolderDataModule
from src.data.image_io import DatasetError
from tests.data.folder_example import EXAMPLE_SIZE, copy_of, rewrite_rows, write_example


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder") / "example"
    write_example(root)
    return root


def row_of(lines: list[str], split: str) -> int:
    """Index (0-based, header = 0) of the first labels.csv row of `split`."""
    return next(i for i, line in enumerate(lines) if i and line.endswith(f",{split}"))


def first_masked(root, split: str = "val") -> str:
    """The stem of the first image of `split` that has a mask."""
    lines = (root / "labels.csv").read_text().splitlines()[1:]
    return next(stem for stem in (line.split(",")[0].rsplit(".", 1)[0] for line in lines if line.endswith(split))
                if (root / "masks" / f"{stem}.png").is_file())


def unknown_class(root):
    rewrite_rows(root / "labels.csv", lambda lines: [*lines[:3], lines[3].replace(",", ",dsik;", 1), *lines[4:]])
    return r"labels\.csv:4: unknown class 'dsik'; expected one of \['disk', .*classes\.txt"


def duplicate_row(root):
    rewrite_rows(root / "labels.csv", lambda lines: [*lines, lines[2]])
    return r"labels\.csv:22: duplicate image 'img_0001\.jpg', already on line 3"


def duplicate_file(root):
    Image.open(root / "images" / "img_0000.png").save(root / "images" / "img_0000.jpg")
    return r"images/img_0000\.png: duplicate image: .*img_0000\.jpg has the same name"


def row_without_image(root):
    rewrite_rows(root / "labels.csv", lambda lines: [*lines, "missing.png,disk,train"])
    return r"labels\.csv:22: image 'missing\.png' not found under .*images"


def mask_of_another_size(root):
    stem = first_masked(root)
    Image.fromarray(np.zeros((EXAMPLE_SIZE - 2, EXAMPLE_SIZE), np.uint8), mode="L").save(root / "masks" / f"{stem}.png")
    return rf"masks/{stem}\.png: mask is 30x32 \(HxW\) but its image .*{stem}\..* is 32x32; expected the same size"


def mask_class_out_of_range(root):
    stem = first_masked(root)
    mask = np.array(Image.open(root / "masks" / f"{stem}.png"))
    mask[0, 0] = 9
    Image.fromarray(mask, mode="L").save(root / "masks" / f"{stem}.png")
    return rf"masks/{stem}\.png: mask holds class id\(s\) \[9\] out of range; expected 0 \(background\), 1\.\.8"


def colour_mask(root):
    stem = first_masked(root)
    red = np.full((EXAMPLE_SIZE, EXAMPLE_SIZE, 3), (200, 0, 0), np.uint8)
    Image.fromarray(red).save(root / "masks" / f"{stem}.png")
    return rf"masks/{stem}\.png: mask is a colour image \(mode 'RGB'\); expected class indices"


def empty_eval_split(root):
    rewrite_rows(root / "labels.csv", lambda lines: [line.replace(",val", ",test") for line in lines])
    # asked for by name (data.eval_split=null would take test, the split that has images)
    return r"the split column of .*labels\.csv: split 'val' is empty; expected images in it", {"eval_split": "val"}


def empty_split_list(root):
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(line.split(",")[0] for line in lines[1:]) + "\n")
    (root / "splits" / "val.txt").write_text("\n")
    return r"splits/val\.txt: split 'val' is empty"


def class_without_training_image(root):
    def move(lines):
        return [line.replace(",train", ",test") if "ell" in line.split(",")[1].split(";") else line
                for line in lines]
    rewrite_rows(root / "labels.csv", move)
    return r"labels\.csv: class\(es\) \['ell'\] have no positive image in the training split 'train'"


def class_in_classes_txt_never_used(root):
    rewrite_rows(root / "classes.txt", lambda lines: [*lines, "unicorn"])
    return r"class\(es\) \['unicorn'\] have no positive image in the training split 'train'.*classes\.txt"


def labels_separated_by_commas(root):
    rewrite_rows(root / "labels.csv", lambda lines: [*lines[:1], lines[1].replace(";", ",", 1), *lines[2:]]
                 if ";" in lines[1] else [*lines[:1], lines[1].replace(",", ",disk,", 1), *lines[2:]])
    return r"labels\.csv:2: \d fields for the 3 columns 'image,labels\[,split\]' \(separate class names with ';'"


def wrong_header(root):
    rewrite_rows(root / "labels.csv", lambda lines: ["file,classes,split", *lines[1:]])
    return r"labels\.csv:1: header 'file,classes,split'; expected 'image,labels\[,split\]'"


def unknown_split(root):
    rewrite_rows(root / "labels.csv", lambda lines: [*lines[:2], lines[2].rsplit(",", 1)[0] + ",valid", *lines[3:]])
    return r"labels\.csv:3: split 'valid'; expected one of \['train', 'val', 'test'\]"


def duplicate_class(root):
    rewrite_rows(root / "classes.txt", lambda lines: [*lines, "disk"])
    return r"classes\.txt:9: class 'disk' is already on line 1"


def box_outside_image(root):
    rewrite_rows(root / "boxes.csv", lambda lines: [*lines[:1], ",".join(lines[1].split(",")[:4] + ["40", "5"]),
                                                    *lines[2:]])
    return r"boxes\.csv:2: box \(.*\) is not inside the 32x32 \(HxW\) image; expected 0 <= x0 <= x1 < W"


def box_of_a_class_the_image_lacks(root):
    labels = {line.split(",")[0]: line.split(",")[1].split(";")
              for line in (root / "labels.csv").read_text().splitlines()[1:]}

    def edit(lines):
        image = lines[1].split(",")[0]
        other = next(name for name in ("disk", "square", "triangle", "cross") if name not in labels[image])
        return [lines[0], ",".join([image, other] + lines[1].split(",")[2:]), *lines[2:]]
    rewrite_rows(root / "boxes.csv", edit)
    return r"boxes\.csv:2: a box of class '\w+' on 'img_\d+\.\w+', whose labels \(.*labels\.csv:\d+\) do not hold"


def box_not_numeric(root):
    rewrite_rows(root / "boxes.csv", lambda lines: [lines[0], ",".join(lines[1].split(",")[:2] + ["a", "1", "2", "3"]),
                                                    *lines[2:]])
    return r"boxes\.csv:2: box \['a', '1', '2', '3'\]; expected numbers"


def loose_image_without_labels_csv(root):
    (root / "labels.csv").unlink()
    return r"images/img_0000\.png: an image directly under images/ and no .*labels\.csv"


def no_images_folder(root):
    (root / "images").rename(root / "pictures")
    return r"images: not found; expected the folder of the images"


CASES = [unknown_class, duplicate_row, duplicate_file, row_without_image, mask_of_another_size, mask_class_out_of_range,
         colour_mask,
         empty_eval_split, empty_split_list, class_without_training_image, class_in_classes_txt_never_used,
         labels_separated_by_commas, wrong_header, unknown_split, duplicate_class, box_outside_image,
         box_of_a_class_the_image_lacks, box_not_numeric, loose_image_without_labels_csv, no_images_folder]


@pytest.mark.parametrize("damage", CASES, ids=[case.__name__ for case in CASES])
def test_bad_input_is_one_line_naming_the_file_and_row(example, tmp_path, damage):
    root = copy_of(example, tmp_path / "damaged")
    expected, options = (lambda found: found if isinstance(found, tuple) else (found, {}))(damage(root))
    with pytest.raises(DatasetError) as error:
        dm = FolderDataModule(str(root), image_size=EXAMPLE_SIZE, num_workers=0, **options)
        dm.setup()
    message = str(error.value)
    assert "\n" not in message
    assert re.search(expected, message), message


def test_the_undamaged_example_sets_up(example):
    FolderDataModule(str(example), image_size=EXAMPLE_SIZE, num_workers=0).setup()
