"""Tables, plots and the seed grid of one or more sweeps: `python scripts/report.py <sweep dir>... [--out DIR]`.

Reads every results.json below the given dirs and writes results.csv, one markdown table and one plot per
dataset/backbone/setting/metric, the seed grid per dataset/backbone/setting and report.md (see
src/reporting/report.py). Jobs whose configs differ in more than the grid keys (cam, proportion, seed) are never
pooled: they get separate tables, and the console and report.md name the keys they differ in.
The seed grid reloads each job's cached classifier: run from where the sweep ran (cache paths are relative
to it), and pass `--data root=/new/path` if the dataset moved.
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.jobs.artifacts import grid_inputs  # noqa: E402
from src.reporting.report import build_report  # noqa: E402
from src.runtime.logs import log_to_console  # noqa: E402


def parse_assignment(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--data {text!r}: expected KEY=VALUE, e.g. root=/data/VOC2012")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    log_to_console()  # the report's notes (`[report] ...`) on stdout
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep dirs (or job dirs, or results.json files)")
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: <first dir>/report)")
    parser.add_argument("--grid-images", type=int, default=3, help="evaluation images in the seed grid (0: no grid)")
    parser.add_argument("--cell-px", type=int, default=128, help="pixel size of one seed grid cell")
    parser.add_argument("--grid-style", choices=["seeds", "heatmaps"], default="seeds",
                        help="seed grid cells: seeds in the mask palette at each job's threshold (default), or the "
                             "max over classes of the seed maps as jet heat maps")
    parser.add_argument("--device", default=None, help="device for the seed grid's CAMs (default: cuda if available)")
    parser.add_argument("--data", type=parse_assignment, action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the jobs' data config for the seed grid (repeatable)")
    args = parser.parse_args(argv)
    if args.grid_images < 0 or args.cell_px < 8:
        parser.error(f"--grid-images={args.grid_images}, --cell-px={args.cell_px}: expected ≥ 0 and ≥ 8")
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    out = args.out or args.dirs[0] / "report"
    try:
        grid = partial(grid_inputs, images=args.grid_images, device=args.device, data_overrides=dict(args.data),
                       style=args.grid_style)
        written = build_report(args.dirs, out, grid if args.grid_images > 0 else None, args.cell_px)
    except (FileNotFoundError, KeyError, ValueError) as error:
        message = error.args[0] if error.args else repr(error)
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files:")
    for path in written:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
