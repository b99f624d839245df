"""Checkpoints of a partly done CAM evaluation, so a job killed by a time limit resumes instead of restarting.

Every metric keeps sum-reduced (or concatenated) states, so what `k` batches contributed is a few small tensors:
they are written every `every` batches, atomically, to `<job dir>/eval_checkpoint[.rank<r>of<w>].pt` with the
count of batches done; the figure samples (images and maps, the bulk: MBs at VOC sizes) go to a
`….figures.pt` beside it, rewritten only while the figure still gains images. A re-run of the job restores them and its loader
starts after those batches. A checkpoint made with another config (`tag`, the job's config fingerprint) or
another rank layout is ignored; one made with another classifier (its identity, `src.store.identity`: a retrain
or a replaced cache entry since) is discarded, with one log line, and the evaluation starts over.
Each DDP rank resumes its own share from its own count (the states are sums
over disjoint images, so ranks need not agree on where they stopped).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchmetrics import Metric

from src.store.atomic import atomic_path

log = logging.getLogger(__name__)


def checkpoint_file(directory: str | Path, rank: int = 0, world_size: int = 1) -> Path:
    """Where rank `rank` of `world_size` keeps its evaluation checkpoint in the job dir `directory`."""
    suffix = "" if world_size == 1 else f".rank{rank}of{world_size}"
    return Path(directory) / f"eval_checkpoint{suffix}.pt"


def remove_checkpoints(directory: str | Path) -> None:
    """Remove every rank's checkpoint files from the job dir `directory` (the job is complete: nothing to resume)."""
    for path in Path(directory).glob("eval_checkpoint*.pt"):
        path.unlink(missing_ok=True)


class EvalCheckpoint:
    """Reads and writes one rank's checkpoint at `path`; `tag` identifies the config it belongs to, `classifier`
    the identity of the network it scores (a dict; None: not checked)."""

    def __init__(self, path: str | Path, tag: str, every: int, classifier: dict | None = None):
        if int(every) < 0:
            raise ValueError(f"eval.checkpoint_every={every}: expected >= 0 (0 = no checkpoints)")
        self.path, self.tag, self.every = Path(path), str(tag), int(every)
        self.classifier = dict(classifier) if classifier else None
        self.figures_path = self.path.with_suffix(".figures.pt")
        self._figures_saved = -1

    def load(self) -> dict | None:
        """The saved payload (`batches_done`, `metrics`, `figure_samples`), or None when there is none
        or it belongs to another config."""
        if not self.path.is_file():
            return None
        payload = torch.load(self.path, map_location="cpu", weights_only=True)
        if payload.get("tag") != self.tag:
            log.info(f"[eval] {self.path} was made with another config: ignored, the evaluation starts over")
            return None
        if self.classifier is not None and payload.get("classifier") != self.classifier:
            log.info(f"[eval] {self.path} scored another classifier ({_short(payload.get('classifier'))}, this job: "
                  f"{_short(self.classifier)}): discarded, the evaluation starts over")
            self.path.unlink(missing_ok=True)
            self.figures_path.unlink(missing_ok=True)
            return None
        figures = torch.load(self.figures_path, weights_only=True) if self.figures_path.is_file() else []
        self._figures_saved = len(figures)
        return {**payload, "figure_samples": figures}

    def due(self, batches_done: int) -> bool:
        return self.every > 0 and batches_done % self.every == 0

    def save(self, batches_done: int, metrics: nn.Module, figure_samples: list[dict]) -> None:
        if len(figure_samples) != self._figures_saved:  # before the states that count the batches they came from
            with atomic_path(self.figures_path) as tmp:
                torch.save(figure_samples, tmp)
            self._figures_saved = len(figure_samples)
        payload = {"tag": self.tag, "classifier": self.classifier, "batches_done": int(batches_done),
                   "metrics": metric_states(metrics)}
        with atomic_path(self.path) as tmp:
            torch.save(payload, tmp)


def metric_states(module: nn.Module) -> dict[str, dict]:
    """Every torchmetrics `Metric` under `module` (by module name): its states, on the CPU, and update count."""
    out = {}
    for name, metric in module.named_modules():
        if isinstance(metric, Metric):
            states = {key: _cpu(getattr(metric, key)) for key in metric._defaults}
            out[name] = {"states": states, "update_count": int(metric._update_count)}
    return out


def restore_metric_states(module: nn.Module, saved: dict[str, dict]) -> None:
    """Put `metric_states(...)`'s values back into the metrics under `module`, on each metric's device."""
    metrics = {name: m for name, m in module.named_modules() if isinstance(m, Metric)}
    if set(saved) != set(metrics):
        raise ValueError(f"checkpoint holds metrics {sorted(saved)}, the evaluation has {sorted(metrics)}")
    for name, metric in metrics.items():
        device = metric.device
        for key, value in saved[name]["states"].items():
            setattr(metric, key, [v.to(device) for v in value] if isinstance(value, list) else value.to(device))
        metric._update_count = saved[name]["update_count"]
        metric._computed = None


def _short(identity: dict | None) -> str:
    if not identity:
        return "unrecorded"
    return f"{identity.get('key')}/{str(identity.get('weights_sha1'))[:12]}@{identity.get('trained_at')}"


def _cpu(value):
    return [v.detach().cpu() for v in value] if isinstance(value, list) else value.detach().cpu()
