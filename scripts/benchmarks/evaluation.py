"""Benchmark of the evaluation metrics, side by side in one process.

SeedMIoU with a 60-threshold sweep against a single threshold on the same maps (the sweep's one-pass
histogram should cost little more than one threshold), then PxAP and MaxBoxAccV2 throughput.
Prints a table and writes JSON ``{"rows": [{"metric", "thresholds", "seconds", "x_single", "maps_per_s"}]}``.

    python scripts/bench.py eval [--quick] [--device cuda] [--out outputs/bench/eval.json]
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.timing import print_table, timed
from src.metrics import MaxBoxAccV2, PxAP, SeedMIoU

QUICK = "fewer maps (a smoke run)"


def voc_chunk(gen: torch.Generator, n: int, size: int, device: torch.device):
    """n images of 20 foreground classes: cams [n, 20, size, size], labels [n, 20], masks [n, size, size]."""
    cams = torch.rand(n, 20, size, size, generator=gen).to(device)
    labels = (torch.rand(n, 20, generator=gen) < 0.15).long()
    labels[:, 0] = 1
    masks = torch.randint(0, 21, (n, size, size), generator=gen)
    masks[torch.rand(n, size, size, generator=gen) < 0.05] = 255
    return cams, labels.to(device), masks.to(device)


def bench_seed_miou(num_maps: int, chunk: int, device: torch.device) -> list[dict]:
    sweeps = {60: [i / 100 for i in range(60)], 1: [0.15]}
    metrics = {t: SeedMIoU(num_classes=21, thresholds=values).to(device) for t, values in sweeps.items()}
    seconds = dict.fromkeys(sweeps, 0.0)
    gen = torch.Generator().manual_seed(0)
    for metric in metrics.values():  # warm-up (allocator, kernels), not timed
        metric.update(*voc_chunk(torch.Generator().manual_seed(9), 1, 256, device))
        metric.reset()
    for index, start in enumerate(range(0, num_maps, chunk)):
        batch = voc_chunk(gen, min(chunk, num_maps - start), 256, device)
        order = list(metrics.items())
        for t, metric in order if index % 2 else order[::-1]:  # same chunk for both, taking turns to go first
            seconds[t] += timed(lambda: metric.update(*batch), device)[1]
    for t, metric in metrics.items():
        seconds[t] += timed(metric.compute, device)[1]
    return [
        {"metric": "SeedMIoU", "thresholds": t, "seconds": seconds[t], "x_single": seconds[t] / seconds[1],
         "maps_per_s": num_maps / seconds[t]}
        for t in sweeps
    ]


def bench_throughput(name: str, metric, num_maps: int, chunk: int, device: torch.device, with_boxes: bool) -> dict:
    gen = torch.Generator().manual_seed(1)
    seconds = 0.0
    for start in range(0, num_maps, chunk):
        n = min(chunk, num_maps - start)
        # smooth blobs, so box extraction sees realistic contours rather than noise
        maps = torch.nn.functional.interpolate(torch.rand(n, 1, 14, 14, generator=gen), size=224, mode="bilinear")[:, 0]
        maps = maps.clamp(0, 1).to(device)
        if with_boxes:
            target = [torch.tensor([[40, 50, 150, 180]]) for _ in range(n)]
        else:
            target = (torch.rand(n, 224, 224, generator=gen) < 0.3).to(torch.uint8).to(device)
        seconds += timed(lambda: metric.update(maps, target), device)[1]
    seconds += timed(metric.compute, device)[1]
    thresholds = metric.num_thresholds if isinstance(metric, PxAP) else len(metric.thresholds)
    return {"metric": name, "thresholds": thresholds, "seconds": seconds, "x_single": None,
            "maps_per_s": num_maps / seconds}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    seed_maps, pxap_maps, box_maps = (20, 50, 10) if args.quick else (200, 1000, 100)
    rows = bench_seed_miou(seed_maps, 10, device)
    rows.append(bench_throughput("PxAP", PxAP(1000).to(device), pxap_maps, 50, device, with_boxes=False))
    rows.append(bench_throughput("MaxBoxAccV2", MaxBoxAccV2().to(device), box_maps, 10, device, with_boxes=True))
    print_table(rows, [("metric", "metric", "<12"), ("thresholds", "thresholds", "d"), ("seconds", "seconds", ".3f"),
                       ("x_single", "x_single", ".2f"), ("maps_per_s", "maps/s", ".1f")])
    return {"rows": rows}
