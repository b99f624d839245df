"""Benchmark: the demo grid with classifier reuse vs with `force_retrain=true`.

Runs `python -m src.run -m experiment=synthetic_demo backbone.weights=null <grid>` twice in subprocesses, each
with a fresh classifier cache and a fresh sweep dir: once as is (each proportion's classifier is trained by its first job and loaded
by the other CAM methods) and once with `force_retrain=true` (every job trains). The synthetic data is
rendered once beforehand, so neither run pays for it.

    python scripts/bench.py sweep [--quick] [--grid proportion=1,2,5 cam=broadcam,gradcam seed=0] [--out FILE]

`--quick` shrinks the jobs (64 px, 400 training images, 60 steps, 16 evaluation images). Classifiers trained
are counted from the results (`classifier.cache_hit`) and cross-checked with the `[cache hit]` lines.
JSON: {"classifiers_trained", "seconds", "seconds_force_retrain", "ratio", "cpu_seconds", "cpu_ratio", ...}.
On a shared machine compare the CPU ratio: wall time follows whatever else is running.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import hydra

from benchmarks.timing import timed
from tests.helpers import compose_config

REPO = Path(__file__).resolve().parents[2]
QUICK = "tiny jobs (64 px, 60 steps, 16 eval images)"
GRID = ["proportion=1,2,5", "cam=broadcam,gradcam", "seed=0"]
QUICK_OVERRIDES = ["data.image_size=64", "data.num_train=400", "data.num_val=16", "data.eval_batch_size=16",
                   "trainer.max_steps=60", "eval.figure_images=2"]


def render_data(overrides: list[str]) -> None:
    """Render (and cache) the synthetic splits the sweep will use, in this process."""
    datamodule = hydra.utils.instantiate(compose_config(overrides).data)
    datamodule.prepare_data()
    datamodule.setup("fit")


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sweep(overrides: list[str], log: Path) -> tuple[float, float, str]:
    """Run one multirun; returns (wall seconds, CPU seconds, stdout). Raises with the log's tail if it fails.

    CPU seconds (user + system of the sweep process) barely move with other load on a shared machine, where
    wall seconds of two runs made minutes apart can differ several-fold."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    cpu = child_cpu_seconds()
    done, seconds = timed(lambda: subprocess.run([sys.executable, "-m", "src.run", "-m", *overrides], cwd=REPO,
                                                 env=env, capture_output=True, text=True))
    cpu = child_cpu_seconds() - cpu
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"sweep failed (exit {done.returncode}), see {log}:\n{done.stderr[-2000:]}")
    return seconds, cpu, done.stdout


def count_trained(sweep: Path, stdout: str, jobs: int) -> int:
    """Classifiers trained by a sweep: jobs whose results say no cache hit (checked against the log)."""
    results = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    if len(results) != jobs:
        raise RuntimeError(f"{sweep}: {len(results)} results.json, expected {jobs}")
    trained = sum(not r["classifier"]["cache_hit"] for r in results)
    hits = stdout.count("[cache hit]")
    if trained + hits != jobs:
        raise RuntimeError(f"{sweep}: {trained} trained + {hits} '[cache hit]' lines != {jobs} jobs")
    return trained


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grid", nargs="+", default=GRID, metavar="KEY=A,B",
                        help=f"the swept overrides (default: {' '.join(GRID)})")
    parser.add_argument("--work-dir", type=Path, default=REPO / "outputs" / "bench" / "sweep_work",
                        help="caches, sweeps and logs of the two runs (emptied first)")


def run(args: argparse.Namespace) -> dict:
    jobs = 1
    for override in args.grid:
        jobs *= len(override.partition("=")[2].split(","))

    shutil.rmtree(args.work_dir, ignore_errors=True)
    args.work_dir.mkdir(parents=True)
    quick = QUICK_OVERRIDES if args.quick else []
    # from scratch: the demo's pretrained backbone is not what this measures (and would pretrain on a miss)
    common = ["experiment=synthetic_demo", "backbone.weights=null", *quick, f"data.root={args.work_dir / 'data'}"]
    render_data(common)
    runs = {}
    for name, extra in (("reuse", []), ("force_retrain", ["force_retrain=true"])):
        sweep = args.work_dir / f"{name}_sweep"
        overrides = [*common, *args.grid, *extra, f"paths.cache_dir={args.work_dir / f'{name}_cache'}",
                     f"hydra.sweep.dir={sweep}"]
        seconds, cpu, stdout = run_sweep(overrides, args.work_dir / f"{name}.log")
        runs[name] = {"seconds": seconds, "cpu": cpu, "trained": count_trained(sweep, stdout, jobs)}
        print(f"{name:>14}: {jobs} jobs, {runs[name]['trained']} classifiers trained, {seconds:7.1f} s "
              f"({cpu:7.1f} CPU s)", flush=True)

    report = {
        "classifiers_trained": runs["reuse"]["trained"],
        "seconds": round(runs["reuse"]["seconds"], 2),
        "seconds_force_retrain": round(runs["force_retrain"]["seconds"], 2),
        "ratio": round(runs["reuse"]["seconds"] / runs["force_retrain"]["seconds"], 3),
        "classifiers_trained_force_retrain": runs["force_retrain"]["trained"],
        "cpu_seconds": round(runs["reuse"]["cpu"], 2),
        "cpu_seconds_force_retrain": round(runs["force_retrain"]["cpu"], 2),
        "cpu_ratio": round(runs["reuse"]["cpu"] / runs["force_retrain"]["cpu"], 3),
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "jobs": jobs, "grid": args.grid, "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    print(f"\n| run | classifiers trained | seconds | CPU seconds |\n|---|---:|---:|---:|\n"
          f"| reuse | {report['classifiers_trained']} | {report['seconds']:.1f} | {report['cpu_seconds']:.1f} |\n"
          f"| force_retrain | {report['classifiers_trained_force_retrain']} | {report['seconds_force_retrain']:.1f} "
          f"| {report['cpu_seconds_force_retrain']:.1f} |\n"
          f"\nratio = {report['ratio']:.3f} (wall; target ≤ 0.6), CPU ratio = {report['cpu_ratio']:.3f}")
    return report
