"""`scripts/check_dataset.py data=folder`: the counts of the example, and every problem of a damaged copy in one run."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from tests.data.folder_example import EXAMPLE_SIZE, copy_of, rewrite_rows, write_example
from tests.helpers import load_script


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder") / "example"
    return root, write_example(root)


def check(root, capsys, *extra) -> tuple[int, str]:
    code = load_script("check_dataset").main(["data=folder", f"data.root={root}", *extra])
    return code, capsys.readouterr().out


def split_row(out: str, split: str) -> list[int]:
    """images, no class, masks, missing, wrong size, bad ids, boxed of a split's row."""
    return [int(v) for v in re.search(rf"^  {split}\s+([\d ]+?)(?:\s+\[.*)?$", out, re.M).group(1).split()]


def test_the_example_is_usable_and_its_counts_are_printed(example, capsys):
    root, counts = example
    code, out = check(root, capsys)
    assert code == 0 and out.rstrip().endswith("usable")
    rows = {split: split_row(out, split) for split in ("train", "val", "test")}
    assert [rows[s][0] for s in rows] == [counts["train"], counts["val"], counts["test"]]
    assert sum(rows[s][2] for s in rows) == counts["masks"]
    assert all(rows[s][2] + rows[s][3] == rows[s][0] for s in rows)
    assert rows["val"][6] + rows["test"][6] == counts["boxed_images"] and rows["train"][6] == 0
    labels = [line.split(",")[1].split(";") for line in (root / "labels.csv").read_text().splitlines()[1:]]
    disk = re.search(r"^\s+disk\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M).groups()
    assert sum(map(int, disk)) == sum("disk" in names for names in labels)
    assert "classes with no training image: none" in out and "unreadable files: 0" in out


def test_a_damaged_copy_lists_every_problem_and_exits_1(example, tmp_path, capsys):
    root = copy_of(example[0], tmp_path / "damaged")
    lines = (root / "labels.csv").read_text().splitlines()
    stems = [line.split(",")[0].rsplit(".", 1)[0] for line in lines[1:]]
    masked = [s for s in stems if (root / "masks" / f"{s}.png").is_file()]
    wrong = np.zeros((EXAMPLE_SIZE, EXAMPLE_SIZE + 3), np.uint8)
    Image.fromarray(wrong, mode="L").save(root / "masks" / f"{masked[0]}.png")
    jpeg = next(p for p in (root / "images").glob("*.jpg"))
    jpeg.write_bytes(jpeg.read_bytes()[:200])  # truncated
    def move_ell_and_drop_the_last(rows):  # every 'ell' image leaves train; the last image loses its row
        return [row.replace(",train", ",test") if "ell" in row.split(",")[1] else row for row in rows[:-1]]
    rewrite_rows(root / "labels.csv", move_ell_and_drop_the_last)
    Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(root / "masks" / "nobody.png")
    code, out = check(root, capsys)
    assert code == 1
    assert re.search(r"classes with no training image: .*\bell\b", out)
    assert re.search(r"images without labels: 1 with no row in labels.csv \(not used\), e.g. .*" + stems[-1], out)
    assert re.search(rf"unreadable files: 1, e.g. .*{jpeg.name}", out)
    assert "masks without an image: 1" in out
    problems = [line for line in out.splitlines() if line.startswith("UNUSABLE: ")]
    assert any(re.search(r"class\(es\) \[.*'ell'\] have no image in the training split 'train'", p) for p in problems)
    assert any(f"masks of the wrong size, e.g. {root}/masks/{masked[0]}.png: mask is 32x35" in p for p in problems)
    assert any("1 unreadable files (data.on_corrupt=error)" in p for p in problems)
    code, out = check(root, capsys, "--no-verify")
    assert "unreadable files: 0" in out


def test_an_unreadable_layout_is_one_unusable_line(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels.csv").write_text("image,labels\na.png,cat\nb.png,dog\n")
    code, out = check(tmp_path, capsys)
    assert code == 1 and re.search(r"^UNUSABLE: .*labels\.csv:3: image 'b\.png' not found", out, re.M)
