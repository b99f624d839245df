"""The paper's tables, plots and seed grid from the `results.json` files of one or more sweeps.

Outputs (under `out`): `results.csv` (one row per job; `job_dir` relative to `out`, so a committed or shared
report holds no machine's paths), `tables/<dataset>_<backbone>_<metric>.md` (rows = CAM method, columns =
proportion ascending, cells = mean ± std over seeds), `plots/<…>.png` (the metric against the proportion, log
x-axis, one line per method, ±std bands), `seed_grid_<dataset>_<backbone>.png` (one row per evaluation image
and method: the ground-truth mask over the image, then the method's seeds at each proportion, in the mask's
palette, by the export's rule at each job's threshold; `seed_grid`), for seed mIoU
`tables/<…>_seed_mIoU_paired.md` (BroadCAM minus each other method with paired 95 % bootstrap intervals over
images and seeds, `paired.py`, from the jobs' per-image counts) and `report.md` gathering the tables. Every
file is written atomically. Called by `scripts/report.py`, which also supplies the seed grid's CAMs
(`src.jobs.artifacts.grid_inputs`): reporting renders, it never builds a CAM.

Statistics: std is the population std over seeds (numpy's default, ddof=0), so one seed gives 0 and the
cell shows the mean alone. Reports never mix configs: jobs are grouped by everything in their config that
defines a result besides the grid keys (cam, proportion, seed; `definition`), so two sweeps that differ in more
than the grid give separate tables, named by the keys they differ in, and report.md and the console say so.
The same experiment found twice (same config, proportion and seed, e.g. in two sweeps) is counted once, the
newer results.json, and that too is said (with whether their metrics agree).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from src.reporting.overlay import denormalize, label_overlay, overlay  # noqa: E402
from src.reporting.paired import paired_differences, paired_table  # noqa: E402
from src.reporting.results import find_jobs  # noqa: E402
from src.store.atomic import atomic_path, write_text_atomic  # noqa: E402
from src.store.keyed import json_digest, safe_dirname  # noqa: E402
from src.store.result_neutral import OUTPUT_KEYS, RUN_KEYS  # noqa: E402

log = logging.getLogger(__name__)

KEY_FIELDS = ("dataset", "backbone", "cam", "proportion", "seed")
STD_DDOF = 0
# In results.csv but not tabulated nor plotted: the chosen background threshold is a parameter, not a score.
NOT_SCORES = frozenset({"seed_threshold"})
GRID_DPI = 100


# ----- what defines a result -----------------------------------------------------------------------------
# The grid of a sweep: table rows (cam), columns (proportion) and the statistic (seed). Everything else in a
# job's config defines its results too, so jobs that differ there are never pooled in one table.
GRID_KEYS = ("cam", "proportion", "seed")
# Top-level config keys that do not define a job's numbers (`src.store.result_neutral`; `stage` is the run key's
# name in results of earlier versions), and the grid's own axes.
NOT_DEFINING = frozenset({*RUN_KEYS, *OUTPUT_KEYS, "stage", "hydra", "proportion", "seed"})
# Leaves that repeat a grid key or a path (results.json holds the resolved config).
NOT_DEFINING_LEAVES = frozenset({"data.proportion", "data.seed", "trainer.default_root_dir"})


def flatten(tree, prefix: str = "") -> dict[str, str]:
    """Nested dicts → {dotted key: JSON text of the leaf} (lists are leaves)."""
    if not isinstance(tree, dict):
        return {prefix: json.dumps(tree, sort_keys=True, default=str)}
    flat: dict[str, str] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def definition(results: dict) -> tuple[dict[str, str], dict[str, str]]:
    """What defines a job's results besides the grid keys, from results.json's `config`, split in two flat dicts:
    the setting shared by every method of a table (data, backbone, training, evaluation, the CAM options every
    method declares: `cam.options.*`), and the method's own settings (the other `cam.*` keys but its name).
    Both are empty for a results.json without `config`."""
    config = {k: v for k, v in (results.get("config") or {}).items() if k not in NOT_DEFINING}
    flat = {k: v for k, v in flatten(config).items() if k not in NOT_DEFINING_LEAVES}
    method = {k: v for k, v in flat.items() if k.startswith("cam.") and not k.startswith("cam.options.")}
    method.pop("cam.name", None)
    return {k: v for k, v in flat.items() if k not in method and k != "cam.name"}, method


def digest(flat: dict[str, str]) -> str:
    return json_digest(flat, 8)


def differing(flats: Iterable[dict[str, str]]) -> list[str]:
    """Keys whose value (or presence) is not the same in every dict."""
    flats = list(flats)
    keys = sorted({k for flat in flats for k in flat})
    return [k for k in keys if len({flat.get(k, "<absent>") for flat in flats}) > 1]


def describe(flat: dict[str, str], keys: list[str], limit: int = 4) -> str:
    """`k=v, …` for `keys` (the first `limit`, then how many more)."""
    parts = [f"{k}={flat.get(k, '<absent>')}" for k in keys[:limit]]
    return ", ".join(parts + ([f"+{len(keys) - limit} more"] if len(keys) > limit else []))


# ----- rows and statistics --------------------------------------------------------------------------------
@dataclass
class Rows:
    """The jobs to report, one row each; `notes` say what was set apart or counted once, and why."""

    rows: list[dict]
    dropped: list[Path]
    notes: list[str]
    settings: dict[str, dict[str, str]]  # setting digest → its flat definition

    def label(self, dataset: str, backbone: str, setting: str) -> str:
        """'' when the dataset/backbone has one setting, else `k=v, …` of the keys its settings differ in."""
        digests = sorted({row["setting"] for row in self.rows if (row["dataset"], row["backbone"]) == (dataset, backbone)})
        if len(digests) < 2:
            return ""
        return describe(self.settings[setting], differing(self.settings[d] for d in digests))


def results_rows(found: Iterable[tuple[Path, dict]], shown: Callable[[Path], str] = str) -> Rows:
    """(path, results) pairs → one flat row per job: `KEY_FIELDS`, `setting` (digest of what defines the job
    besides the grid keys), `method` (the cam's label: its name, plus its own settings when two configurations
    of one method meet in a setting), n_train, n_eval, every metric, job_dir; sorted.

    Jobs are never pooled across settings: each (dataset, backbone, setting) is its own table, and when one
    dataset/backbone has several settings the notes name the keys they differ in. Two jobs with the same
    setting, method, proportion and seed are the same experiment run twice (e.g. found in two sweeps): the
    newest results.json is counted, the other is listed in `dropped`, and a note says so (and whether their
    metrics differ), naming the files by `shown`."""
    notes: list[str] = []
    jobs = []
    for path, results in found:
        setting, method = definition(results)
        row = {field: results[field] for field in KEY_FIELDS}
        row["proportion"], row["seed"] = float(row["proportion"]), int(row["seed"])
        row.update(setting=digest(setting), method=row["cam"], n_train=results.get("n_train"),
                   n_eval=results.get("n_eval"), **results["metrics"])
        row["job_dir"] = str(path.parent)
        jobs.append((path, row, setting, method))
    # Several configurations of one method within a setting: each its own table row, labelled by what differs.
    by_method: dict[tuple, list] = defaultdict(list)
    for job in jobs:
        by_method[(job[1]["dataset"], job[1]["backbone"], job[1]["setting"], job[1]["cam"])].append(job)
    for (dataset, backbone, _, cam), members in by_method.items():
        keys = differing(job[3] for job in members)
        if keys:
            notes.append(f"{dataset}/{backbone}: {cam} ran with different settings of its own ({', '.join(keys)}); "
                         "one table row each")
            for job in members:
                job[1]["method"] = f"{cam} ({describe(job[3], keys)})"
    # Settings of one dataset/backbone that differ in more than the grid keys: separate tables, said out loud.
    settings: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for job in jobs:
        settings[(job[1]["dataset"], job[1]["backbone"])][job[1]["setting"]] = job[2]
    for (dataset, backbone), found_settings in settings.items():
        if len(found_settings) > 1:
            keys = differing(found_settings.values())
            notes.append(f"{dataset}/{backbone}: {len(found_settings)} sweeps/configs differ in more than the grid "
                         f"keys ({', '.join(GRID_KEYS)}): {', '.join(keys)}; reported as separate tables, never pooled")
    newest: dict[tuple, tuple[float, Path, dict]] = {}
    dropped = []
    for path, row, _, _ in jobs:
        key = (row["dataset"], row["backbone"], row["setting"], row["method"], row["proportion"], row["seed"])
        mtime = path.stat().st_mtime
        if key in newest:
            other = newest[key]
            (older, kept) = sorted([other, (mtime, path, row)], key=lambda entry: entry[0])
            same = {k: v for k, v in older[2].items() if k in kept[2] and k not in ("job_dir",)} == \
                {k: v for k, v in kept[2].items() if k in older[2] and k not in ("job_dir",)}
            notes.append(f"{shown(older[1])}: same config, proportion and seed as {shown(kept[1])} (metrics "
                         f"{'equal' if same else 'DIFFER'}); counted once, the newer one")
            dropped.append(older[1])
            newest[key] = kept
        else:
            newest[key] = (mtime, path, row)
    rows = [entry[2] for entry in newest.values()]
    order = ("dataset", "backbone", "setting", "method", "proportion", "seed")
    return Rows(sorted(rows, key=lambda row: tuple(row[field] for field in order)), dropped, notes,
                {job[1]["setting"]: job[2] for job in jobs})


def metric_names(rows: list[dict]) -> list[str]:
    """Metric columns present in `rows` (numbers in at least one row), in first-seen order."""
    fixed = set(KEY_FIELDS) | {"setting", "method", "n_train", "n_eval", "job_dir"}
    names: dict[str, None] = {}
    for row in rows:
        names.update({k: None for k, v in row.items() if k not in fixed and isinstance(v, (int, float))})
    return list(names)


def summarize(rows: list[dict], metric: str) -> dict[str, dict[float, tuple[float, float, int]]]:
    """{method: {proportion: (mean, std (ddof=0), number of seeds)}} over the rows that have `metric` (rows of
    one setting: `groups`)."""
    values: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if isinstance(row.get(metric), (int, float)):
            values[row.get("method", row["cam"])][row["proportion"]].append(float(row[metric]))
    return {cam: {p: (float(np.mean(v)), float(np.std(v, ddof=STD_DDOF)), len(v)) for p, v in sorted(cells.items())}
            for cam, cells in sorted(values.items())}


def groups(rows: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """Rows by (dataset, backbone, setting), sorted: one table each."""
    grouped: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for row in rows:
        grouped[(row["dataset"], row["backbone"], row.get("setting", ""))].append(row)
    return dict(sorted(grouped.items()))


# ----- files ----------------------------------------------------------------------------------------------
def relative_to(path: str | Path, folder: Path) -> str:
    """`path` as seen from `folder` (POSIX separators): what a report may write without naming a machine's
    folders."""
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def write_csv(rows: list[dict], path: Path) -> Path:
    """results.csv: the key fields, setting, method, n_train, n_eval, every metric (empty where a job lacks it),
    job_dir (relative to the csv's folder)."""
    columns = [*KEY_FIELDS, "setting", "method", "n_train", "n_eval", *metric_names(rows), "job_dir"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "job_dir": relative_to(row["job_dir"], path.parent)} for row in rows)
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
GRID_STYLES = ("seeds", "heatmaps")


def grid_pixel_size(images: int, methods: int, proportions: int, cell_px: int) -> tuple[int, int]:
    """(width, height) in pixels of a seed grid: one row per image and method, a cell_px square for the
    ground-truth mask and one per proportion."""
    return (1 + proportions) * cell_px, images * methods * cell_px


@dataclass
class GridInputs:
    """What a seed grid shows: N evaluation images (`images` [N, 3, H, W] normalised, `masks` [N, H, W],
    `labels` [N, C]) and per (cam, proportion) job `maps` [N, H, W]: with `style` "seeds" the seed labels by the
    export's rule at the job's threshold (0 = background, class c → c + 1; without a background plane c → c),
    the masks' own values, drawn in `palette`; with "heatmaps" the max over the GT-class seed maps in [0, 1]."""

    images: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor
    maps: dict[tuple[str, float], torch.Tensor]
    class_names: list[str]
    ignore_index: int
    palette: list[int]
    style: str = "seeds"


def seed_grid(grid: GridInputs, path: Path, cell_px: int = 128) -> Path:
    """The demo's seed grid for one dataset/backbone: one row per (image, CAM method), its first cell the
    ground-truth mask over the image, then the method's seeds (or heat map) at each proportion ascending, all
    in the mask's palette; every cell holds a picture (a missing job shows the bare image, labelled so)."""
    if grid.style not in GRID_STYLES:
        raise ValueError(f"grid style {grid.style!r}: expected one of {list(GRID_STYLES)}")
    methods = sorted({cam for cam, _ in grid.maps})
    proportions = sorted({p for _, p in grid.maps})
    count = len(grid.images)
    names = grid.class_names
    width, height = grid_pixel_size(count, len(methods), len(proportions), cell_px)
    fig = plt.figure(figsize=(width / GRID_DPI, height / GRID_DPI), dpi=GRID_DPI)
    axes = fig.subplots(count * len(methods), 1 + len(proportions), squeeze=False)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1, wspace=0.02, hspace=0.02)
    for n in range(count):
        present = torch.nonzero(grid.labels[n] > 0).flatten().tolist()
        truth = label_overlay(grid.images[n], grid.masks[n], grid.palette)
        for m, cam in enumerate(methods):
            row = axes[n * len(methods) + m]
            row[0].imshow(truth, interpolation="nearest")
            _label(row[0], "mask: " + ", ".join(names[c] for c in present))
            for p, proportion in enumerate(proportions):
                maps = grid.maps.get((cam, proportion))
                if maps is None:
                    picture, text = denormalize(grid.images[n]), f"{cam} {proportion:g}%: no job"
                elif grid.style == "seeds":
                    picture, text = label_overlay(grid.images[n], maps[n], grid.palette), f"{cam} {proportion:g}%"
                else:
                    picture, text = overlay(grid.images[n], maps[n]), f"{cam} {proportion:g}%"
                row[1 + p].imshow(picture, interpolation="nearest")
                _label(row[1 + p], text)
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
    found = results_rows(find_jobs(dirs), shown=lambda path: relative_to(path, out))
    rows = found.rows
    if not rows:
        raise FileNotFoundError(f"no results.json below {[str(d) for d in dirs]}; expected finished jobs")
    for note in found.notes:
        log.info(f"[report] {note}")
    written = [write_csv(rows, out / "results.csv")]
    sections = []
    for (dataset, backbone, setting), group in groups(rows).items():
        label = found.label(dataset, backbone, setting)
        title = f"{dataset} / {backbone}" + (f" / {label}" if label else "")
        prefix = f"{dataset}_{backbone}" + (f"_{setting}" if label else "")
        for metric in metric_names(group):
            if metric in NOT_SCORES:
                continue
            summary = summarize(group, metric)
            stem = safe_dirname(f"{prefix}_{metric}")
            table = markdown_table(summary, metric, title)
            written.append(write_text_atomic(out / "tables" / f"{stem}.md", table))
            written.append(plot_metric(summary, metric, title, out / "plots" / f"{stem}.png"))
            sections.append(f"{table}\n![{metric}](plots/{stem}.png)\n")
            if metric == "seed_mIoU":
                differences = paired_differences(group)
                if differences:
                    paired = paired_table(differences, title)
                    written.append(write_text_atomic(out / "tables" / f"{stem}_paired.md", paired))
                    sections.append(paired)
        if grid is not None:
            path = out / f"seed_grid_{safe_dirname(prefix)}.png"
            written.append(seed_grid(grid(group), path, cell_px))
            sections.append(f"### Seed grid — {title}\n\n![seed grid]({path.name})\n")
    header = f"# Report\n\n{len(rows)} jobs from {', '.join(relative_to(d, out) for d in dirs)} (paths relative to " \
             "this report's folder).\n\n"
    if found.notes:
        header += "Grouping notes:\n\n" + "".join(f"- {note}\n" for note in found.notes) + "\n"
    written.append(write_text_atomic(out / "report.md", header + "\n".join(sections)))
    return written
