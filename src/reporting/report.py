"""The paper's tables, plots and seed grid from the `results.json` files of one or more sweeps.

Outputs (under `out`): `results.csv` (one row per job), `tables/<dataset>_<backbone>_<metric>.md` (rows =
CAM method, columns = proportion ascending, cells = mean ± std over seeds), `plots/<…>.png` (the metric
against the proportion, log x-axis, one line per method, ±std bands), `seed_grid_<dataset>_<backbone>.png`
(rows = methods, columns = proportions, for a few evaluation images, image and mask first) and `report.md`
gathering the tables. Every file is written atomically. Called by `scripts/report.py`, which also supplies
the seed grid's CAMs (`src.jobs.artifacts.grid_inputs`): reporting renders, it never builds a CAM.

Statistics: std is the population std over seeds (numpy's default, ddof=0), so one seed gives 0 and the
cell shows the mean alone. Two jobs with the same (dataset, backbone, cam, proportion, seed), e.g. from two
sweeps, are counted once: the newest results.json wins.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from src.data.atomic import atomic_path, write_text_atomic  # noqa: E402
from src.reporting.overlay import denormalize, overlay  # noqa: E402
from src.reporting.results import find_jobs, safe_dirname  # noqa: E402

KEY_FIELDS = ("dataset", "backbone", "cam", "proportion", "seed")
STD_DDOF = 0
# In results.csv but not tabulated nor plotted: the chosen background threshold is a parameter, not a score.
NOT_SCORES = frozenset({"seed_threshold"})
GRID_DPI = 100


# ----- rows and statistics --------------------------------------------------------------------------------
def results_rows(found: Iterable[tuple[Path, dict]]) -> tuple[list[dict], list[Path]]:
    """(path, results) pairs → one flat row per job (`KEY_FIELDS`, n_train, n_eval, every metric, job_dir),
    sorted by key, and the paths dropped as duplicates of a newer job with the same key."""
    newest: dict[tuple, tuple[float, Path, dict]] = {}
    dropped = []
    for path, results in found:
        row = {field: results[field] for field in KEY_FIELDS}
        row["proportion"], row["seed"] = float(row["proportion"]), int(row["seed"])
        row.update(n_train=results.get("n_train"), n_eval=results.get("n_eval"), **results["metrics"])
        row["job_dir"] = str(path.parent)
        key = tuple(row[field] for field in KEY_FIELDS)
        mtime = path.stat().st_mtime
        if key in newest:
            older = min(newest[key], (mtime, path, row), key=lambda entry: entry[0])
            dropped.append(older[1])
            if older[1] == path:
                continue
        newest[key] = (mtime, path, row)
    rows = [entry[2] for entry in newest.values()]
    return sorted(rows, key=lambda row: tuple(row[field] for field in KEY_FIELDS)), dropped


def metric_names(rows: list[dict]) -> list[str]:
    """Metric columns present in `rows` (numbers in at least one row), in first-seen order."""
    fixed = set(KEY_FIELDS) | {"n_train", "n_eval", "job_dir"}
    names: dict[str, None] = {}
    for row in rows:
        names.update({k: None for k, v in row.items() if k not in fixed and isinstance(v, (int, float))})
    return list(names)


def summarize(rows: list[dict], metric: str) -> dict[str, dict[float, tuple[float, float, int]]]:
    """{cam: {proportion: (mean, std (ddof=0), number of seeds)}} over the rows that have `metric`."""
    values: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if isinstance(row.get(metric), (int, float)):
            values[row["cam"]][row["proportion"]].append(float(row[metric]))
    return {cam: {p: (float(np.mean(v)), float(np.std(v, ddof=STD_DDOF)), len(v)) for p, v in sorted(cells.items())}
            for cam, cells in sorted(values.items())}


def groups(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Rows by (dataset, backbone), sorted."""
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        grouped[(row["dataset"], row["backbone"])].append(row)
    return dict(sorted(grouped.items()))


# ----- files ----------------------------------------------------------------------------------------------
def write_csv(rows: list[dict], path: Path) -> Path:
    """results.csv: the key fields, n_train, n_eval, every metric (empty where a job lacks it), job_dir."""
    columns = [*KEY_FIELDS, "n_train", "n_eval", *metric_names(rows), "job_dir"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def format_cell(mean: float, std: float, seeds: int) -> str:
    return f"{mean:.2f}" if seeds == 1 else f"{mean:.2f} ± {std:.2f}"


def markdown_table(summary: dict, metric: str, title: str) -> str:
    """Rows = methods, columns = proportions ascending; the best displayed mean of each column in bold
    (ties all bold); a missing cell is '–'."""
    proportions = sorted({p for cells in summary.values() for p in cells})
    best = {p: max(round(cells[p][0], 2) for cells in summary.values() if p in cells) for p in proportions}
    seeds = sorted({n for cells in summary.values() for _, _, n in cells.values()})
    seeds_text = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    lines = [f"### {metric} — {title}", "",
             f"mean ± std over seeds (population std, ddof={STD_DDOF}; seeds per cell: {seeds_text}); "
             "best mean per column in **bold**.", "",
             "| method | " + " | ".join(f"{p:g}%" for p in proportions) + " |",
             "|---|" + "---:|" * len(proportions)]
    for cam, cells in summary.items():
        texts = []
        for p in proportions:
            if p not in cells:
                texts.append("–")
                continue
            text = format_cell(*cells[p])
            texts.append(f"**{text}**" if round(cells[p][0], 2) == best[p] else text)
        lines.append(f"| {cam} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def plot_metric(summary: dict, metric: str, title: str, path: Path) -> Path:
    """The metric against the proportion (log x-axis), one line per method, a ±std band around it."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for cam, cells in summary.items():
        xs = np.array(list(cells))
        means, stds = np.array([c[0] for c in cells.values()]), np.array([c[1] for c in cells.values()])
        (line,) = ax.plot(xs, means, marker="o", label=cam)
        ax.fill_between(xs, means - stds, means + stds, color=line.get_color(), alpha=0.2, linewidth=0)
    proportions = sorted({p for cells in summary.values() for p in cells})
    ax.set_xscale("log")
    ax.set_xticks(proportions, [f"{p:g}" for p in proportions])
    ax.minorticks_off()
    ax.set_xlabel("training data (%)")
    ax.set_ylabel(metric)
    ax.ticklabel_format(axis="y", useOffset=False)  # metrics read as percent, never as an offset
    ax.set_title(f"{metric} — {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=GRID_DPI)
    plt.close(fig)
    return path


# ----- seed grid ------------------------------------------------------------------------------------------
def grid_pixel_size(images: int, methods: int, proportions: int, cell_px: int) -> tuple[int, int]:
    """(width, height) in pixels of a seed grid: one cell_px square per image/mask/CAM."""
    return (2 + proportions) * cell_px, images * methods * cell_px


@dataclass
class GridInputs:
    """What a seed grid shows: N evaluation images (`images` [N, 3, H, W] normalised, `masks` [N, H, W],
    `labels` [N, C]) and per (cam, proportion) job the CAM overlay maps [N, H, W] in [0, 1]."""

    images: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor
    overlays: dict[tuple[str, float], torch.Tensor]
    class_names: list[str]
    ignore_index: int


def seed_grid(grid: GridInputs, path: Path, cell_px: int = 128) -> Path:
    """The demo's seed grid for one dataset/backbone: for each image, a block of rows = CAM methods, columns =
    image, mask, then one CAM overlay per proportion ascending."""
    methods = sorted({cam for cam, _ in grid.overlays})
    proportions = sorted({p for _, p in grid.overlays})
    count = len(grid.images)
    names = grid.class_names
    width, height = grid_pixel_size(count, len(methods), len(proportions), cell_px)
    fig = plt.figure(figsize=(width / GRID_DPI, height / GRID_DPI), dpi=GRID_DPI)
    axes = fig.subplots(count * len(methods), 2 + len(proportions), squeeze=False)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1, wspace=0.02, hspace=0.02)
    mask_colors = len(names) + 1
    for n in range(count):
        mask = grid.masks[n].float().masked_fill(grid.masks[n] == grid.ignore_index, float("nan"))
        present = torch.nonzero(grid.labels[n] > 0).flatten().tolist()
        block = axes[n * len(methods):(n + 1) * len(methods)]
        block[0][0].imshow(denormalize(grid.images[n]))
        _label(block[0][0], ", ".join(names[c] for c in present))
        block[0][1].imshow(mask, cmap="tab20", vmin=0, vmax=mask_colors, interpolation="nearest")
        _label(block[0][1], "mask")
        for m, cam in enumerate(methods):
            for p, proportion in enumerate(proportions):
                ax = block[m][2 + p]
                maps = grid.overlays.get((cam, proportion))
                ax.imshow(denormalize(grid.images[n]) if maps is None else overlay(grid.images[n], maps[n]))
                _label(ax, f"{cam} {proportion:g}%")
    for ax in axes.flat:
        ax.axis("off")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=GRID_DPI)
    plt.close(fig)
    return path


def _label(ax, text: str) -> None:
    ax.text(0.02, 0.98, text, transform=ax.transAxes, va="top", ha="left", fontsize=6,
            bbox=dict(facecolor="white", alpha=0.7, linewidth=0, pad=1))


# ----- everything -----------------------------------------------------------------------------------------
def build_report(dirs: Iterable[str | Path], out: str | Path,
                 grid: Callable[[list[dict]], GridInputs] | None = None, cell_px: int = 128) -> list[Path]:
    """Write the csv, the tables, the plots, `report.md` and (given `grid`, which makes the `GridInputs` of a
    dataset/backbone's rows) the seed grids of every job below `dirs` into `out`; returns the files written.
    Raises FileNotFoundError when no job is found."""
    dirs = list(dirs)
    out = Path(out)
    rows, dropped = results_rows(find_jobs(dirs))
    if not rows:
        raise FileNotFoundError(f"no results.json below {[str(d) for d in dirs]}; expected finished jobs")
    for path in dropped:
        print(f"[report] {path}: older duplicate of a job with the same key, not counted")
    written = [write_csv(rows, out / "results.csv")]
    sections = []
    for (dataset, backbone), group in groups(rows).items():
        title = f"{dataset} / {backbone}"
        for metric in metric_names(group):
            if metric in NOT_SCORES:
                continue
            summary = summarize(group, metric)
            stem = safe_dirname(f"{dataset}_{backbone}_{metric}")
            table = markdown_table(summary, metric, title)
            written.append(write_text_atomic(out / "tables" / f"{stem}.md", table))
            written.append(plot_metric(summary, metric, title, out / "plots" / f"{stem}.png"))
            sections.append(f"{table}\n![{metric}](plots/{stem}.png)\n")
        if grid is not None:
            path = out / f"seed_grid_{safe_dirname(f'{dataset}_{backbone}')}.png"
            written.append(seed_grid(grid(group), path, cell_px))
            sections.append(f"### Seed grid — {title}\n\n![seed grid]({path.name})\n")
    header = f"# Report\n\n{len(rows)} jobs from {', '.join(str(d) for d in dirs)}.\n\n"
    written.append(write_text_atomic(out / "report.md", header + "\n".join(sections)))
    return written
