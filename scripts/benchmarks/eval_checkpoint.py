"""Benchmark: the cost of checkpointing the CAM evaluation's metric states (issue 12: ≤ 5 % of the CAM pass).

A synthetic job's evaluation (Grad-CAM, the dataset's metrics) runs as `src.run` runs it (`trainer.test` over the
evaluation loader) with `eval.checkpoint_every` = 0, 5 and 1 (the worst case; the default is 20). The overhead is the time
spent inside the checkpoint writes over the rest of the pass (measured directly, so the shared machine's noise
between two runs does not enter it); the wall time of each pass is recorded beside it.

    python scripts/bench.py eval-checkpoint [--quick] [--device cuda] [--out outputs/bench/eval-checkpoint.json]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from pytorch_lightning import Trainer

from benchmarks.job_parts import job_parts
from benchmarks.timing import print_table, timed
from src.jobs.cam_job import build_evaluation, evaluation_loader

QUICK = "fewer evaluation images (a smoke run)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=4)


def one_pass(overrides: list[str], every: int, device: torch.device) -> dict:
    job = job_parts([*overrides, f"eval.checkpoint_every={every}"])  # a new job dir: no checkpoint to resume
    evaluation = build_evaluation(job, job.cam)
    saves = []
    if evaluation.checkpoint is not None:
        save = evaluation.checkpoint.save
        evaluation.checkpoint.save = lambda *a: saves.append(timed(lambda: save(*a))[1])
    trainer = Trainer(accelerator=device.type, devices=1, inference_mode=False, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)
    tick = time.perf_counter()
    trainer.test(evaluation, dataloaders=evaluation_loader(job, evaluation), verbose=False)
    wall = time.perf_counter() - tick
    size = Path(evaluation.checkpoint.path).stat().st_size if saves else 0
    return {"every": every, "batches": evaluation.batches_done, "checkpoints": len(saves), "pass_s": wall,
            "checkpoint_s": sum(saves), "checkpoint_kib": size / 1024,
            "overhead_pct": 100 * sum(saves) / (wall - sum(saves))}


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    images = 40 if args.quick else 200
    overrides = ["cam=gradcam", "data.num_train=64", f"data.num_val={images}", f"data.image_size={args.image_size}",
                 f"data.eval_batch_size={args.batch_size}", f"trainer.accelerator={device.type}"]
    rows = [one_pass(overrides, every, device) for every in (0, 5, 1)]
    print_table(rows, [("every", "every", "d"), ("batches", "batches", "d"), ("checkpoints", "saves", "d"),
                       ("pass_s", "pass s", ".2f"), ("checkpoint_s", "saves s", ".3f"),
                       ("checkpoint_kib", "file KiB", ".1f"), ("overhead_pct", "overhead %", ".2f")])
    return {"device": str(device), "images": images, "image_size": args.image_size, "rows": rows}
