"""scripts/report.py and src.reporting.report: csv, tables (mean ± std over seeds), plots, the seed grid, and
src.jobs.artifacts.load_job bringing a finished job's classifier back."""
from __future__ import annotations

import csv
import json
import re
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.evaluation.export import export_seeds, seed_file_stem
from src.reporting.report import GridInputs, build_report, grid_pixel_size, markdown_table, seed_grid
from src.reporting.results import find_jobs, write_json_atomic
from src.jobs.artifacts import grid_inputs, load_job
from tests.conftest import REPO, SWEEP_CAMS, SWEEP_PROPORTIONS
from tests.helpers import load_script

METHODS, PROPORTIONS, SEEDS = ("cam", "gradcam"), (10.0, 1.0), (0, 1)


def fabricated_value(method: str, proportion: float, seed: int, metric: str) -> float:
    """Distinct known numbers per job: gradcam wins at 1 %, cam at 10 %."""
    base = {"seed_mIoU": 40.0, "cls_mAP": 70.0}[metric]
    advantage = 5.0 if (method == "gradcam") == (proportion == 1.0) else 0.0
    return base + advantage + proportion / 10 + 1.7 * seed + (0.3 if method == "cam" else 0.0)


def fabricated_config(method: str, proportion: float, seed: int, root: Path, image_size: int = 64,
                      alpha: float | None = None) -> dict:
    """A resolved job config as results.json holds it: grid keys, paths that differ per job, a setting."""
    cam = {"name": method, "options": {"scales": [1.0], "flip": False}, **({"alpha": alpha} if alpha else {})}
    return {"proportion": proportion, "seed": seed, "sweep_name": root.name, "paths": {"output_dir": str(root)},
            "data": {"image_size": image_size, "proportion": proportion, "seed": seed, "root": "/data"},
            "trainer": {"max_steps": 3, "default_root_dir": str(root / method)}, "cam": cam,
            "logger": {"csv": {"save_dir": str(root)}}}


def write_fabricated_sweep(root: Path, **setting) -> None:
    for i, (method, proportion, seed) in enumerate(
            (m, p, s) for m in METHODS for p in PROPORTIONS for s in SEEDS):
        metrics = {name: fabricated_value(method, proportion, seed, name) for name in ("seed_mIoU", "cls_mAP")}
        results = {"dataset": "synthetic", "backbone": "resnet18", "cam": method, "proportion": proportion,
                   "seed": seed, "n_train": 10, "n_eval": 5, "metrics": {**metrics, "seed_threshold": 0.25},
                   "timings": {"total_s": 1.0}, "config": fabricated_config(method, proportion, seed, root, **setting)}
        write_json_atomic(root / f"{i}_cam={method},proportion={proportion:g},seed={seed}" / "results.json", results)


def parse_table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """Markdown table → (column headers, {method: cell texts})."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")][1:]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return header, rows




def test_tables_csv_and_plots_match_the_results(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_fabricated_sweep(sweep)
    out = tmp_path / "report"
    assert load_script("report").main([str(sweep), "--out", str(out), "--grid-images", "0"]) == 0
    printed = capsys.readouterr().out
    for name in ("results.csv", "report.md", "synthetic_resnet18_seed_mIoU.md", "synthetic_resnet18_cls_mAP.png"):
        assert name in printed

    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(METHODS) * len(PROPORTIONS) * len(SEEDS)
    for row in rows:
        expected = fabricated_value(row["cam"], float(row["proportion"]), int(row["seed"]), "seed_mIoU")
        assert float(row["seed_mIoU"]) == pytest.approx(expected)
        assert float(row["seed_threshold"]) == 0.25

    for metric in ("seed_mIoU", "cls_mAP"):
        header, table = parse_table((out / "tables" / f"synthetic_resnet18_{metric}.md").read_text())
        assert header == ["1%", "10%"]  # proportions ascending
        assert sorted(table) == sorted(METHODS)
        for column, proportion in enumerate(sorted(PROPORTIONS)):
            means = {}
            for method in METHODS:
                cell = table[method][column]
                mean, std = (float(x) for x in re.fullmatch(r"\**([\d.]+) ± ([\d.]+)\**", cell).groups())
                values = [fabricated_value(method, proportion, s, metric) for s in SEEDS]
                assert mean == pytest.approx(np.mean(values), abs=0.005)
                assert std == pytest.approx(np.std(values, ddof=0), abs=0.005)
                means[method] = mean
            best = max(means, key=means.get)
            assert [m for m in METHODS if table[m][column].startswith("**")] == [best]
        assert Image.open(out / "plots" / f"synthetic_resnet18_{metric}.png").size == (600, 400)
    assert not (out / "tables" / "synthetic_resnet18_seed_threshold.md").exists()  # a parameter, not a score
    assert "seed_mIoU" in (out / "report.md").read_text()
    assert not list(out.rglob("*.tmp*"))
    # The report names no machine's folders: job dirs relative to the report's folder, found from there.
    assert all(not Path(row["job_dir"]).is_absolute() and (out / row["job_dir"] / "results.json").is_file()
               for row in rows)
    assert str(tmp_path) not in (out / "results.csv").read_text() + (out / "report.md").read_text()


def test_one_seed_shows_the_mean_alone_and_ties_are_all_bold():
    summary = {"a": {1.0: (50.0, 0.0, 1), 5.0: (60.0, 0.0, 1)}, "b": {1.0: (50.0, 0.0, 1)}}
    _, table = parse_table(markdown_table(summary, "seed_mIoU", "x / y"))
    assert table == {"a": ["**50.00**", "**60.00**"], "b": ["**50.00**", "–"]}


def test_the_same_experiment_found_twice_counts_once_and_the_report_says_so(tmp_path, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    write_fabricated_sweep(old)
    time.sleep(0.05)
    write_fabricated_sweep(new)  # same setting, other folders: the same experiments run twice
    first = next(new.glob("*/results.json"))
    changed = json.loads(first.read_text())
    changed["metrics"]["seed_mIoU"] = 99.0
    write_json_atomic(first, changed)
    build_report([old, new, new / first.parent.name], tmp_path / "report")
    with open(tmp_path / "report" / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and all(row["job_dir"].startswith("../new/") for row in rows)  # relative to the report
    assert sum(float(row["seed_mIoU"]) == 99.0 for row in rows) == 1
    printed = capsys.readouterr().out
    assert printed.count("counted once, the newer one") == 8 and printed.count("metrics DIFFER") == 1
    assert "metrics DIFFER" in (tmp_path / "report" / "report.md").read_text()


def test_sweeps_that_differ_in_more_than_the_grid_are_never_pooled(tmp_path, capsys):
    write_fabricated_sweep(tmp_path / "small", image_size=64)
    write_fabricated_sweep(tmp_path / "large", image_size=96)
    large = next((tmp_path / "large").glob("*/results.json"))
    shifted = json.loads(large.read_text())
    shifted["metrics"]["seed_mIoU"] += 10  # the 96 px sweep scores differently
    write_json_atomic(large, shifted)
    out = tmp_path / "report"
    build_report([tmp_path / "small", tmp_path / "large"], out)
    printed = capsys.readouterr().out
    assert "differ in more than the grid keys (cam, proportion, seed): data.image_size" in printed
    tables = sorted(p.name for p in (out / "tables").glob("*seed_mIoU.md"))
    assert len(tables) == 2  # one per setting, each with every job of its sweep and none of the other
    for table in tables:
        text = (out / "tables" / table).read_text()
        assert "data.image_size=64" in text or "data.image_size=96" in text
        _, cells = parse_table(text)
        assert sorted(cells) == sorted(METHODS) and all("±" in c for row in cells.values() for c in row)
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 and len({row["setting"] for row in rows}) == 2
    assert "data.image_size" in (out / "report.md").read_text()


def test_two_configurations_of_one_method_get_one_row_each(tmp_path, capsys):
    write_fabricated_sweep(tmp_path / "a", alpha=50.0)
    write_fabricated_sweep(tmp_path / "b", alpha=10.0)  # the method's own setting, not the table's
    build_report([tmp_path / "a", tmp_path / "b"], tmp_path / "report")
    assert "ran with different settings of its own (cam.alpha)" in capsys.readouterr().out
    _, cells = parse_table((tmp_path / "report" / "tables" / "synthetic_resnet18_seed_mIoU.md").read_text())
    assert sorted(cells) == ["cam (cam.alpha=10.0)", "cam (cam.alpha=50.0)", "gradcam (cam.alpha=10.0)",
                             "gradcam (cam.alpha=50.0)"]


def test_no_results_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert load_script("report").main([str(tmp_path / "empty"), "--grid-images", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: no results.json below")
    with pytest.raises(FileNotFoundError, match="missing"):
        find_jobs([tmp_path / "missing"])


@pytest.mark.slow
def test_seed_grid_and_load_job_on_a_real_tiny_sweep(tiny_sweep, tmp_path):
    sweep, _ = tiny_sweep  # the session's sweep: CAM and Grad-CAM at two proportions
    found = find_jobs([sweep])
    assert sorted((r["cam"], r["proportion"]) for _, r in found) == [
        (cam, float(p)) for cam in sorted(SWEEP_CAMS) for p in sorted(SWEEP_PROPORTIONS)]

    # The loaded classifier is the job's own: it reproduces the job's classification mAP on the same split.
    job = load_job(found[0][0])
    loader = job.datamodule.test_dataloader()
    with torch.no_grad():
        logits = torch.cat([job.net(batch["image"]) for batch in loader])
    labels = torch.cat([batch["labels"] for batch in loader]).long()
    from torchmetrics.functional.classification import multilabel_average_precision

    mean_ap = float(multilabel_average_precision(logits, labels, num_labels=labels.shape[1])) * 100
    assert mean_ap == pytest.approx(job.results["metrics"]["cls_mAP"], abs=1e-3)
    batch = next(iter(loader))
    maps = job.seed_maps(batch["image"][:2], batch["labels"][:2])
    assert maps.shape == (2, labels.shape[1], 64, 64) and 0 <= maps.min() and maps.max() <= 1 + 1e-6
    assert torch.all(maps.flatten(2).amax(2)[batch["labels"][:2] == 0] == 0)  # only GT classes have a map

    written = build_report([sweep], tmp_path / "report", partial(grid_inputs, images=2), cell_px=64)
    grid = tmp_path / "report" / "seed_grid_synthetic_resnet18_small.png"  # the default backbone
    assert grid in written
    assert Image.open(grid).size == grid_pixel_size(2, 2, 2, 64) == (3 * 64, 4 * 64)

    # The grid's seeds are the export's: its palette PNGs at the job's own threshold, for the same images.
    rows = [{"cam": r["cam"], "proportion": float(r["proportion"]), "seed": r["seed"], "job_dir": str(p.parent),
             "seed_threshold": r["metrics"]["seed_threshold"]} for p, r in found]
    inputs = grid_inputs(rows, images=2)
    assert inputs.style == "seeds" and inputs.palette == job.datamodule.palette()
    for path, results in found:
        exported, job_key = load_job(path), (results["cam"], float(results["proportion"]))
        out = tmp_path / f"{results['cam']}_{results['proportion']}"
        export_seeds(exported.net, exported.cam, exported.datamodule, "eval", out,
                     threshold=results["metrics"]["seed_threshold"], progress=False)
        for n, image_id in enumerate(exported.datamodule.eval_set.ids[:2]):
            png = np.array(Image.open(out / "png" / f"{seed_file_stem(image_id)}.png"))
            assert np.array_equal(inputs.maps[job_key][n].numpy(), png)


def test_the_seed_grid_draws_seeds_and_masks_in_the_palette_with_no_empty_cell(tmp_path):
    """Two images × one method × two proportions (one job missing): every cell a picture; a seed cell's colour is
    the palette's colour of its label blended over the image, the same colour as the mask's for that class."""
    size, palette = 32, [0, 0, 0, 255, 0, 0, 0, 255, 0] + [255, 255, 255] * 253
    images = torch.zeros(2, 3, size, size)  # normalised zeros: the ImageNet mean colour
    masks = torch.zeros(2, size, size, dtype=torch.long)
    masks[:, :, size // 2:] = 1
    seeds = torch.full((2, size, size), 2, dtype=torch.long)  # the method says class 2 everywhere
    grid = GridInputs(images, masks, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), {("cam", 1.0): seeds},
                      ["red", "green"], 255, palette)
    grid.maps[("gradcam", 5.0)] = seeds  # cam has no 5 % job: that cell shows the image, labelled
    path = seed_grid(grid, tmp_path / "grid.png", cell_px=64)
    picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert picture.shape == (2 * 2 * 64, 3 * 64, 3) and grid_pixel_size(2, 2, 2, 64) == (3 * 64, 4 * 64)
    for row in range(4):
        for column in range(3):
            cell = picture[row * 64 + 20:row * 64 + 60, column * 64 + 8:column * 64 + 56]
            assert (cell != 255).any(axis=-1).mean() > 0.9, (row, column)  # no blank cell
    seed_pixel = picture[40, 64 + 40]  # row 0 (image 0, cam), column 1 (1 %): class 2 = green over the image
    assert seed_pixel[1] > 150 and seed_pixel[0] < 100
    mask_pixel = picture[40, 60]  # the mask cell's right half: class 1 = red
    assert mask_pixel[0] > 150 and mask_pixel[1] < 100
    with pytest.raises(ValueError, match="grid style"):
        seed_grid(GridInputs(images, masks, grid.labels, grid.maps, ["red", "green"], 255, palette, "jet"),
                  tmp_path / "bad.png")
