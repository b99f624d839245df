"""The seed-grid demo: jobs picked from a sweep (or a one-line error), the grid's exact layout, and the CLI on a
tiny real sweep."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from src.data import BCSSDataModule, SyntheticDataModule, VOCSegmentationDataModule
from src.demo import (HEADER_HEIGHT, LABEL_WIDTH, TITLE_HEIGHT, DemoError, compose_grid, find_mask, grid_size,
                      run_demo, select_jobs)
from tests.conftest import REPO, SWEEP_NUM_VAL
from tests.helpers import run_cli, synthetic_datamodule

COLOURS = {"lead": (0, 0, 0), 0: (255, 0, 0), 1: (0, 255, 0), 2: (0, 0, 255)}


def fake_job(sweep, name: str, cam: str, proportion: float, seed: int = 0) -> None:
    results = {"dataset": "synthetic", "backbone": "resnet18", "cam": cam, "proportion": proportion, "seed": seed,
               "n_train": 1, "metrics": {}, "timings": {}}
    (sweep / name).mkdir(parents=True)
    (sweep / name / "results.json").write_text(json.dumps(results))


def test_jobs_are_picked_by_method_and_proportion(tmp_path):
    for n, (cam, p) in enumerate([("cam", 1), ("cam", 5), ("broadcam", 1), ("broadcam", 5)]):
        fake_job(tmp_path, f"{n}", cam, float(p))
    jobs = select_jobs(tmp_path, ["broadcam", "cam"], [5.0, 1.0], None)
    assert list(jobs) == [("broadcam", 5.0), ("broadcam", 1.0), ("cam", 5.0), ("cam", 1.0)]
    assert jobs[("cam", 5.0)] == (tmp_path / "1" / "results.json").resolve()
    with pytest.raises(DemoError, match=r"no job for cam=cam proportion=2, cam=gradcam proportion=1, cam=gradcam "
                                        r"proportion=2; it has cams \['broadcam', 'cam'\] and proportions \[1, 5\]$"):
        select_jobs(tmp_path, ["cam", "gradcam"], [1.0, 2.0], None)
    with pytest.raises(DemoError, match="not a directory"):
        select_jobs(tmp_path / "nope", ["cam"], [1.0], None)


def test_a_sweep_of_several_seeds_needs_one_picked(tmp_path):
    fake_job(tmp_path, "a", "cam", 1.0, seed=0)
    fake_job(tmp_path, "b", "cam", 1.0, seed=1)
    with pytest.raises(DemoError, match=r"seeds \[0, 1\].*seed=<n>"):
        select_jobs(tmp_path, ["cam"], [1.0], None)
    assert select_jobs(tmp_path, ["cam"], [1.0], 1)[("cam", 1.0)] == (tmp_path / "b" / "results.json").resolve()


def test_grid_places_tiles_in_rows_and_columns():
    tile = 20
    solid = lambda key: Image.new("RGB", (tile, tile), COLOURS[key])
    rows = [[solid(r), solid((r + 1) % 3)] for r in range(3)]  # 3 methods × 2 proportions
    grid = compose_grid([solid("lead"), solid("lead")], rows, ["a", "b", "c"], ["image", "mask", "1 %", "2 %"],
                        "title", tile)
    assert grid.size == grid_size(3, 4, tile) == (LABEL_WIDTH + 4 * tile, TITLE_HEIGHT + HEADER_HEIGHT + 3 * tile)
    pixels = np.array(grid)
    centre = lambda row, column: tuple(pixels[TITLE_HEIGHT + HEADER_HEIGHT + row * tile + tile // 2,
                                              LABEL_WIDTH + column * tile + tile // 2])
    assert centre(0, 0) == centre(0, 1) == COLOURS["lead"]
    assert centre(1, 0) == centre(2, 1) == (255, 255, 255)  # the image and mask sit on the first row only
    for r in range(3):
        assert centre(r, 2) == COLOURS[r] and centre(r, 3) == COLOURS[(r + 1) % 3]


def test_masks_are_found_in_dataset_layouts(tmp_path):
    for images, masks, data in (("img", "mask", BCSSDataModule), ("JPEGImages", "SegmentationClass",
                                                                  VOCSegmentationDataModule)):
        image = tmp_path / images / "x.jpg"
        image.parent.mkdir()
        image.touch()
        assert find_mask(image, data.mask_dirs) is None
        (tmp_path / masks).mkdir()
        (tmp_path / masks / "x.png").touch()
        assert find_mask(image, data.mask_dirs) == tmp_path / masks / "x.png"
        assert find_mask(image, SyntheticDataModule.mask_dirs) is None  # a dataset without mask folders
        for path in (image, tmp_path / masks / "x.png"):
            path.unlink()
            path.parent.rmdir()


@pytest.mark.slow
def test_demo_writes_one_grid_per_image_and_class(tiny_sweep, tmp_path):
    sweep, cache = tiny_sweep
    tile = 48
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("demo", overrides=[f"sweep={sweep}", "cams=[cam]", "proportions=[5,10]", "num_images=2",
                                         f"tile={tile}", f"out={tmp_path}", "device=cpu"])
    written = run_demo(cfg)
    data = synthetic_datamodule(cache / "synthetic", num_val=SWEEP_NUM_VAL)  # the sweep's evaluation split
    expected = [f"val_{i:06d}__{data.class_names[c]}.png" for i in range(2)
                for c in torch.nonzero(data.eval_set[i]["labels"]).flatten().tolist()]
    assert [p.name for p in written] == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
    top, left = TITLE_HEIGHT + HEADER_HEIGHT, LABEL_WIDTH + 2 * tile
    differ = []
    for path in written:
        pixels = np.array(Image.open(path))
        # 1 method row × (image, mask, 5 %, 10 %) columns
        assert pixels.shape == (TITLE_HEIGHT + HEADER_HEIGHT + tile, LABEL_WIDTH + 4 * tile, 3)
        five, ten = pixels[top:, left:left + tile], pixels[top:, left + tile:left + 2 * tile]
        differ.append(not np.array_equal(five, ten))
    assert any(differ)  # two classifiers, two maps (a 3-step classifier may give a class an all-zero map)


@pytest.mark.slow
def test_cli_names_a_missing_proportion_in_one_line(tiny_sweep):
    sweep, _ = tiny_sweep
    result = run_cli([f"sweep={sweep}", "cams=[cam]", "proportions=[5,20]"], module="src.demo")
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "cam=cam proportion=20" in lines[0] and "Traceback" not in result.stderr, lines
    assert not (sweep / "demo").exists()
