"""Jobs on a folder dataset (issue 22 item 2 and 7): the metrics follow what the folder holds, unmasked images are
counted and not scored, seeds are exported for every image; and, end to end, the example from check_dataset to a
2-job sweep to the report."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from src.run import run_job
from tests.data.folder_example import copy_of, write_example
from tests.helpers import classifier_key_of, compose_config, load_script, run_cli

FOLDER_JOB = ["data=folder", "data.image_size=32", "data.num_workers=0", "debug=fast", "logger=none",
              "eval.box_thresholds.step=0.1"]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder") / "example"
    return root, write_example(root)


def job(root, cache_dir, out, *extra) -> dict:
    return run_job(compose_config([*FOLDER_JOB, f"data.root={root}", f"paths.cache_dir={cache_dir}",
                                   f"paths.output_dir={out}", *extra]))


def val_stems(root) -> list[str]:
    rows = [line.split(",") for line in (root / "labels.csv").read_text().splitlines()[1:]]
    return [image.rsplit(".", 1)[0] for image, _, split in rows if split == "val"]


def test_a_job_scores_the_masked_images_and_exports_seeds_of_all(example, cache_dir, tmp_path):
    root, counts = example
    results = job(root, cache_dir, tmp_path / "job", "export.seeds=true", "export.split=eval")
    unmasked = [s for s in val_stems(root) if not (root / "masks" / f"{s}.png").is_file()]
    assert results["dataset"] == "folder" and results["n_eval"] == counts["val"]
    assert 0 < len(unmasked) < counts["val"] and results["details"]["seed_images_without_mask"] == len(unmasked)
    assert {"cls_mAP", "seed_mIoU", "PxAP", "MaxBoxAccV2"} <= set(results["metrics"])
    pngs = sorted(p.stem for p in (tmp_path / "job" / "seeds" / "png").glob("*.png"))
    assert pngs == sorted(val_stems(root)) and results["export"]["written"] == counts["val"]


def test_without_background_plane_no_pxap_and_argmax_seeds(example, cache_dir, tmp_path):
    results = job(example[0], cache_dir, tmp_path / "job", "data.background=false")
    assert {"seed_mIoU", "MaxBoxAccV2"} <= set(results["metrics"]) and "PxAP" not in results["metrics"]
    assert results["metrics"]["seed_threshold"] is None


def test_without_masks_and_boxes_the_job_gives_cls_map_figure_and_seeds(example, cache_dir, tmp_path):
    root = copy_of(example[0], tmp_path / "bare")
    for path in (root / "masks").iterdir():
        path.unlink()
    (root / "boxes.csv").unlink()
    results = job(root, cache_dir, tmp_path / "job", "export.seeds=true", "export.split=eval", "export.threshold=0.3")
    assert set(results["metrics"]) == {"cls_mAP"} and (tmp_path / "job" / "cams.png").is_file()
    seeds = sorted((tmp_path / "job" / "seeds" / "png").glob("*.png"))
    assert len(seeds) == example[1]["val"] and np.array(Image.open(seeds[0])).ndim == 2


@pytest.mark.slow
def test_example_from_check_to_sweep_to_report(tmp_path, capsys):
    root = tmp_path / "shapes_folder"
    assert load_script("make_folder_example").main([str(root), "--images", "40", "--size", "32"]) == 0
    assert load_script("check_dataset").main(["data=folder", f"data.root={root}"]) == 0
    checked = capsys.readouterr().out
    assert "usable" in checked and "images per class" in checked
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *FOLDER_JOB, f"data.root={root}", "cam=broadcam,cam", "proportion=100",
                      f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"])
    assert result.returncode == 0, result.stderr[-3000:]
    found = sorted(sweep.rglob("results.json"))
    assert len(found) == 2
    jobs = [json.loads(path.read_text()) for path in found]
    assert sorted(r["cam"] for r in jobs) == ["broadcam", "cam"] and {r["dataset"] for r in jobs} == {"folder"}
    assert jobs[0]["classifier"]["key"] == jobs[1]["classifier"]["key"]  # one classifier, trained once
    assert load_script("report").main([str(sweep), "--out", str(tmp_path / "report"), "--grid-images", "2",
                                       "--cell-px", "32"]) == 0
    with open(tmp_path / "report" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["method"] for row in rows) == ["broadcam", "cam"]
    assert {row["dataset"] for row in rows} == {"folder"}
    tables = {p.name for p in (tmp_path / "report" / "tables").glob("*.md")}
    assert "folder_resnet18_small_seed_mIoU.md" in tables
    assert (tmp_path / "report" / "seed_grid_folder_resnet18_small.png").is_file()


def test_labels_edited_in_place_train_a_new_classifier(example, tmp_path):
    """The same data.root after labels.csv changed is another training set: a new cache key, so the next job
    trains instead of scoring the classifier of the old labels (masks and boxes, which only change scores, keep
    the key)."""

    root = copy_of(example[0], tmp_path / "data")
    config = [*FOLDER_JOB, f"data.root={root}", f"paths.cache_dir={tmp_path / 'cache'}"]
    first = job(root, tmp_path / "cache", tmp_path / "a")
    assert not first["classifier"]["cache_hit"]
    key = classifier_key_of(config)
    assert key == first["classifier"]["key"]
    boxes = root / "boxes.csv"
    boxes.write_text("\n".join(boxes.read_text().splitlines()[:-1]) + "\n")  # one box fewer: the same classifier
    assert classifier_key_of(config) == key
    rows = (root / "labels.csv").read_text().splitlines()
    image, labels, split = next(r.split(",") for r in rows[1:] if r.split(",")[2] == "train" and ";" in r)
    rows[rows.index(f"{image},{labels},{split}")] = f"{image},{labels.split(';')[0]},{split}"  # a label dropped
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    assert classifier_key_of(config) != key
    again = job(root, tmp_path / "cache", tmp_path / "b")
    assert not again["classifier"]["cache_hit"] and again["classifier"]["key"] != key
