"""What every benchmark of `scripts/bench.py` shares: timing a call (CUDA synchronised), the machine it ran on
(a shared machine's load inflates wall times, so the JSON records it), the printed table and the JSON file."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from src.store.atomic import write_json_atomic


def synchronize(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device | str | None = None) -> tuple[object, float]:
    """(fn(), wall seconds), with CUDA work finished before the clock starts and stops."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


def machine(device: torch.device | str | None = None) -> dict:
    """The device, torch's CPU threads, the CPUs and the 1-minute load average (how many cores were busy)."""
    device = torch.device(device or "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": name, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "load_average": round(os.getloadavg()[0], 2)}


def print_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> None:
    """`columns` = (key, header, format spec); None cells print empty."""
    widths = [max(len(header), 8) for _, header, _ in columns]
    print(" ".join(f"{header:>{w}}" for (_, header, _), w in zip(columns, widths)))
    for row in rows:
        cells = ["" if row.get(key) is None else format(row[key], spec) for key, _, spec in columns]
        print(" ".join(f"{cell:>{w}}" for cell, w in zip(cells, widths)), flush=True)


def write_report(path: Path, payload: dict) -> None:
    write_json_atomic(path, payload)
    print(f"wrote {path}")
