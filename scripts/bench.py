"""Benchmarks, one subcommand each: `python scripts/bench.py <name> [--quick] [--out FILE]`, names below.

cams   our CAM methods vs a bare forward, a full backward and the peers (pytorch-grad-cam, TorchCAM)
bls    the closed-form BroadLearningSystem fit vs a port of the original procedure; feature extraction vs a forward
eval-checkpoint   the CAM evaluation's checkpoint writes vs the CAM pass
eval   SeedMIoU's 60-threshold sweep vs one threshold; PxAP and MaxBoxAccV2 throughput
sweep  the demo grid with classifier reuse vs `force_retrain=true` (CPU seconds, wall seconds)
job    a whole job phase by phase (train, BLS extraction, CAM pass, evaluation) vs the bare network, VOC-shaped data

Each prints a table and writes JSON (default `outputs/bench/<name>.json`) with the machine it ran on
(`scripts/benchmarks/timing.py`). `make bench` runs them all.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `src` and the oracles under tests/

from benchmarks import bls, cams, eval_checkpoint, evaluation, job, sweep  # noqa: E402
from benchmarks.timing import machine, write_report  # noqa: E402

BENCHMARKS = {"cams": cams, "bls": bls, "eval": evaluation, "eval-checkpoint": eval_checkpoint, "sweep": sweep,
              "job": job}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, module in BENCHMARKS.items():
        command = commands.add_parser(name, help=module.__doc__.splitlines()[0])
        command.add_argument("--quick", action="store_true", help=module.QUICK)
        command.add_argument("--out", type=Path, default=REPO / "outputs" / "bench" / f"{name}.json")
        module.add_arguments(command)
    args = parser.parse_args(argv)
    module = BENCHMARKS[args.command]
    payload = module.run(args)
    payload.setdefault("machine", machine(getattr(args, "device", None)))
    payload["quick"] = args.quick
    write_report(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
