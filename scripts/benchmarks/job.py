"""Benchmark: one whole job phase by phase, next to the bare network over the same loaders.

On a VOC-shaped synthetic layout written by the bench itself (`outputs/bench/voc_layout_<fraction>/`, the
VOCdevkit/VOC2012 folders and files `data=voc2012` reads; 10,582 train_aug / 1,464 train / 1,449 val images
scaled by `--fraction`, image sizes drawn from VOC2012's size mix, largest side 500 px), it runs real jobs
(`python -m src.run data=voc2012 …`, ResNet-18, no pretrained weights) and reads each phase's seconds from
their results.json `timings`:

    train        images/s = max_steps × batch_size / train_s    vs a bare forward+backward over the train loader
    BLS extract  images/s = n_train / bls_extract_s (BroadCAM)  vs a bare forward over the same loader
    CAM pass     images/s = n_eval / cam_s                      vs a bare forward of every view over the
                                                                  evaluation loader (1 view, or 4 scales × flip)
    evaluation   images/s = n_eval / eval_s (metric updates)
    eval loop    wall = cam_s + eval_s + eval_loader_s (the test loop's own timings); ratio to cam_s + eval_s

Jobs: cam=cam 1 view (trains the classifier; the others load it from the bench's cache), cam=cam 4 scales ×
flip, gradcam 1 view, broadcam (the default method) 1 view. Acceptance ratios of issue 15: for cam=cam the
CAM pass per image ≤ 1.15× a bare forward (of the same views), and eval loop wall ≤ 1.1× cam_s + eval_s.

    python scripts/bench.py job [--quick] [--fraction 0.01] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.timing import print_table, synchronize
from src.data.palettes import voc_palette

REPO = Path(__file__).resolve().parents[2]
QUICK = "fraction 0.003, 224 px training, 2 steps"
VOC_COUNTS = {"train_aug": 10582, "train": 1464, "val": 1449}
# VOC2012 JPEG sizes (width, height) and their approximate shares; the rest: sides uniform in [112, 500].
VOC_SIZES = [((500, 375), 0.45), ((375, 500), 0.17), ((500, 333), 0.12), ((500, 334), 0.05), ((333, 500), 0.05),
             ((500, 500), 0.03)]
SCALES_4 = [0.5, 1.0, 1.5, 2.0]


# ----- the layout ------------------------------------------------------------------------------------------
def voc_size(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height) drawn from VOC2012's size mix."""
    pick = rng.random()
    for size, share in VOC_SIZES:
        if pick < share:
            return size
        pick -= share
    return int(rng.integers(112, 501)), int(rng.integers(112, 501))


def write_image_and_mask(root: Path, image_id: str, rng: np.random.Generator, palette: list[int]) -> None:
    """A JPEG of VOC size (smooth noise plus one box per object class) and its palette mask (0 = background,
    1..20 = class, a 255 band around each box as VOC has)."""
    width, height = voc_size(rng)
    small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR)).copy()
    mask = np.zeros((height, width), dtype=np.uint8)
    for c in rng.choice(20, size=int(rng.integers(1, 3)), replace=False):
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        x1, y1 = x0 + int(rng.integers(width // 8, width // 2)), y0 + int(rng.integers(height // 8, height // 2))
        mask[max(y0 - 2, 0):y1 + 2, max(x0 - 2, 0):x1 + 2] = 255
        mask[y0:y1, x0:x1] = c + 1
        pixels[y0:y1, x0:x1] = (np.array(palette[3 * (c + 1):3 * (c + 2)]) * 0.8 + pixels[y0:y1, x0:x1] * 0.2)
    Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
    png = Image.fromarray(mask, mode="P")
    png.putpalette(palette)
    png.save(root / "SegmentationClassAug" / f"{image_id}.png")
    png.save(root / "SegmentationClass" / f"{image_id}.png")


def make_layout(base: Path, fraction: float, seed: int = 0) -> tuple[Path, dict[str, int]]:
    """VOCdevkit/VOC2012 under `base` with round(count × fraction) images per split (train ⊂ train_aug, val
    disjoint, as in VOC); written once per fraction (a `done` file marks a complete layout)."""
    root = base / "VOCdevkit" / "VOC2012"
    counts = {split: max(2, round(n * fraction)) for split, n in VOC_COUNTS.items()}
    if (base / "done").is_file():
        return root, counts
    for folder in ("JPEGImages", "SegmentationClassAug", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng, palette = np.random.default_rng(seed), voc_palette()
    train = [f"2007_{i:06d}" for i in range(counts["train"])]
    val = [f"2008_{i:06d}" for i in range(counts["val"])]
    train_aug = train + [f"2009_{i:06d}" for i in range(counts["train_aug"] - counts["train"])]
    for image_id in dict.fromkeys(train_aug + val):
        write_image_and_mask(root, image_id, rng, palette)
    for split, ids in (("train", train), ("val", val), ("train_aug", train_aug)):
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (base / "done").write_text("")
    return root, counts


# ----- the jobs --------------------------------------------------------------------------------------------
JOBS = {  # name → overrides
    "cam_1view": ["cam=cam"],
    "cam_4x_flip": ["cam=cam", f"cam.options.scales=[{','.join(map(str, SCALES_4))}]", "cam.options.flip=true"],
    "gradcam_1view": ["cam=gradcam"],
    "broadcam_1view": ["cam=broadcam"],
}


def job_overrides(root: Path, work: Path, quick: bool) -> list[str]:
    size, steps = (224, 2) if quick else (448, 4)
    return ["data=voc2012", f"data.root={root}", "data.cache_dir=null", f"data.image_size={size}",
            "data.batch_size=8", "data.eval_batch_size=1", "backbone=resnet18", "backbone.weights=null",
            f"trainer.max_steps={steps}", "logger=none", "callbacks=none", "eval.figure_images=0",
            f"paths.cache_dir={work / 'cache'}"]


def run_job(name: str, overrides: list[str], work: Path) -> dict:
    """Run one job in a subprocess; its results.json plus the child's CPU seconds."""
    out = work / name
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tick = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "src.run", *overrides, "overwrite=true", f"paths.output_dir={out}",
                           f"hydra.run.dir={out}"], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tick
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (work / f"{name}.log").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"job {name} failed (exit {done.returncode}), see {work / f'{name}.log'}:\n"
                           f"{done.stderr[-2000:]}")
    results = json.loads((out / "results.json").read_text())
    results["process"] = {"wall_s": round(wall, 2), "cpu_s": round(after.ru_utime + after.ru_stime
                                                                      - before.ru_utime - before.ru_stime, 2)}
    return results


# ----- the bare network over the same loaders --------------------------------------------------------------
def views(images: torch.Tensor, scales: list[float], flip: bool) -> list[torch.Tensor]:
    """The engine's views of a batch: each scale (bilinear), and its horizontal flip."""
    out = []
    for scale in scales:
        view = images if scale == 1.0 else F.interpolate(images, scale_factor=scale, mode="bilinear",
                                                         align_corners=False)
        out += [view, view.flip(-1)] if flip else [view]
    return out


def bare(overrides: list[str], classifier_dir: str, device: str, train_steps: int) -> dict:
    """Images/s of the bare network over the job's own loaders: forward (BLS loader, evaluation loader with 1
    view and with 4 scales × flip) and forward+backward over the training loader (no optimiser step)."""
    from src.store.classifiers import load_cached_net
    from src.jobs.build import instantiate_datamodule
    from src.models import Classifier
    from tests.helpers import compose_config

    cfg = compose_config(overrides)
    datamodule = instantiate_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = Classifier(cfg.backbone.name, datamodule.num_classes, None, cfg.backbone.output_stride, **cfg.train)
    load_cached_net(classifier_dir, model.net)
    net = model.net.to(device)

    def forward_rate(loader, scales, flip) -> float:
        net.eval()
        count, seconds = 0, 0.0
        with torch.no_grad():
            for batch in loader:
                images = batch["image"].to(device)
                synchronize(device)
                tick = time.perf_counter()
                for view in views(images, scales, flip):
                    net(view)
                synchronize(device)
                seconds += time.perf_counter() - tick
                count += len(images)
        return count / seconds

    rates = {"forward_bls_loader": forward_rate(datamodule.train_subset_eval_dataloader(), [1.0], False),
             "forward_eval_1view": forward_rate(datamodule.test_dataloader(), [1.0], False),
             "forward_eval_4x_flip": forward_rate(datamodule.test_dataloader(), SCALES_4, True)}
    net.train()
    count, seconds, step = 0, 0.0, 0
    while step < train_steps:
        for batch in datamodule.train_dataloader():
            images, labels = batch["image"].to(device), batch["labels"].to(device)
            synchronize(device)
            tick = time.perf_counter()
            F.multilabel_soft_margin_loss(net(images), labels).backward()
            synchronize(device)
            seconds += time.perf_counter() - tick
            count, step = count + len(images), step + 1
            if step == train_steps:
                break
    datamodule.teardown("fit")
    rates["forward_backward_train"] = count / seconds
    return rates


# ----- the report ------------------------------------------------------------------------------------------
def phase_rows(jobs: dict[str, dict], rates: dict[str, float], batch_size: int, steps: int) -> list[dict]:
    """One row per (job, phase): images/s of the phase, of its bare counterpart, and the per-image cost ratio."""
    rows = []
    for name, results in jobs.items():
        t, n_eval = results["timings"], results["n_eval"]
        multi = "4x" in name
        phases = [("CAM pass", n_eval / t["cam_s"], rates["forward_eval_4x_flip" if multi else "forward_eval_1view"]),
                  ("evaluation", n_eval / t["eval_s"] if t.get("eval_s") else None, None)]
        if not results["classifier"]["cache_hit"]:
            phases.insert(0, ("train", steps * batch_size / t["train_s"], rates["forward_backward_train"]))
        if t.get("bls_extract_s"):
            phases.insert(0, ("BLS extract", results["n_train"] / t["bls_extract_s"], rates["forward_bls_loader"]))
        for phase, rate, bare_rate in phases:
            rows.append({"job": name, "phase": phase, "images_s": rate, "bare_images_s": bare_rate,
                         "cost_ratio": bare_rate / rate if rate and bare_rate else None})
    return rows


def loop_ratios(jobs: dict[str, dict]) -> dict[str, dict]:
    """Per job: the evaluation loop's wall (cam_s + eval_s + eval_loader_s, the test loop's own timings) over
    cam_s + eval_s; None where results.json has no eval_loader_s (a test loop that does not time its loader)."""
    ratios = {}
    for name, results in jobs.items():
        t = results["timings"]
        scored = t["cam_s"] + t.get("eval_s", 0.0)
        loop = scored + t["eval_loader_s"] if "eval_loader_s" in t else None
        ratios[name] = {"cam_plus_eval_s": round(scored, 3), "loop_s": None if loop is None else round(loop, 3),
                        "ratio": None if loop is None else round(loop / scored, 3)}
    return ratios


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fraction", type=float, default=None, help="of VOC's image counts (default 0.01)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--work-dir", type=Path, default=REPO / "outputs" / "bench" / "job_work")


def run(args: argparse.Namespace) -> dict:
    fraction = args.fraction or (0.003 if args.quick else 0.01)
    if not 0 < fraction <= 1:
        raise SystemExit(f"--fraction={fraction}: expected a number in (0, 1]")
    layout, counts = make_layout(REPO / "outputs" / "bench" / f"voc_layout_{fraction:g}", fraction)
    shutil.rmtree(args.work_dir / "cache", ignore_errors=True)  # the first job trains: its train_s is measured
    args.work_dir.mkdir(parents=True, exist_ok=True)
    common = job_overrides(layout, args.work_dir, args.quick)
    if args.device != "cpu":
        common += ["trainer=gpu", "trainer.precision=32-true"]
    jobs = {}
    for name, extra in JOBS.items():
        jobs[name] = run_job(name, [*common, *extra], args.work_dir)
        print(f"{name}: timings {jobs[name]['timings']}", flush=True)
    steps = int(next(o for o in common if o.startswith("trainer.max_steps=")).partition("=")[2])
    rates = bare(common, jobs["cam_1view"]["classifier"]["dir"], args.device, train_steps=steps)
    rows = phase_rows(jobs, rates, batch_size=8, steps=steps)
    print_table(rows, [("job", "job", ""), ("phase", "phase", ""), ("images_s", "images/s", ".2f"),
                       ("bare_images_s", "bare images/s", ".2f"), ("cost_ratio", "cost/bare", ".3f")])
    loops = loop_ratios(jobs)
    for name, loop in loops.items():
        print(f"{name}: eval loop {loop['loop_s']} s / (cam_s + eval_s) {loop['cam_plus_eval_s']} s = {loop['ratio']}")
    cam_rows = {row["job"]: row for row in rows if row["phase"] == "CAM pass"}
    return {
        "fraction": fraction, "counts": counts, "layout": str(layout), "overrides": common,
        "phases": rows, "bare_images_s": rates, "eval_loop": loops,
        "acceptance": {
            "cam_pass_cost_over_bare_forward_1view": cam_rows["cam_1view"]["cost_ratio"],
            "cam_pass_cost_over_bare_forward_4x_flip": cam_rows["cam_4x_flip"]["cost_ratio"],
            "cam_pass_target": 1.15,
            "eval_loop_over_cam_plus_eval": {name: loop["ratio"] for name, loop in loops.items()},
            "eval_loop_target": 1.1,
        },
        "jobs": {name: {"timings": r["timings"], "n_train": r["n_train"], "n_eval": r["n_eval"],
                        "process": r["process"]} for name, r in jobs.items()},
        "machine_load_average_at_end": round(os.getloadavg()[0], 2),
    }
