"""Nothing stale (issue 20): every artifact knows the classifier that made it. A finished job whose classifier was
retrained or replaced is recomputed, a metric checkpoint of another classifier is discarded, an export made under
another manifest is rewritten, stale per-image counts are refused.

Each job here uses its own seed (its own classifier key), so retraining it does not touch the session cache's
other classifiers.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from src.evaluation import CamEvaluation
from src.store.classifiers import ClassifierCache
from src.store.identity import entry_identity, weights_sha1
from src.reporting.results import PER_IMAGE_FILE, read_per_image
from src.run import run_job
from tests.helpers import classifier_key_of, compose_config


class KilledMidEvaluation(RuntimeError):
    """Stands for SLURM's kill in the middle of the CAM pass."""


def retrain(overrides: list[str], tmp_path) -> None:
    """The classifiers pass with force_retrain=true (outside a multirun every forced job retrains)."""
    run_job(compose_config(overrides + ["job=classifiers", "force_retrain=true",
                                        f"paths.output_dir={tmp_path / 'retrain'}"]))


def test_a_finished_job_is_recomputed_after_its_classifier_is_retrained(tiny_overrides, tmp_path, capsys):
    job = tiny_overrides + ["seed=11", "cam=cam"]
    first = run_job(compose_config(job))
    assert first["classifier"]["identity"]["weights_sha1"] == entry_identity(first["classifier"]["dir"])["weights_sha1"]
    again = run_job(compose_config(job))
    assert again["job_id"] == first["job_id"] and "[skip]" in capsys.readouterr().out  # same classifier: skipped

    retrain(job, tmp_path)
    redone = run_job(compose_config(job))
    assert "[redo]" in capsys.readouterr().out
    assert redone["job_id"] != first["job_id"]
    assert redone["classifier"]["identity"] == entry_identity(redone["classifier"]["dir"])
    assert redone["classifier"]["identity"]["trained_at"] != first["classifier"]["identity"]["trained_at"]


def test_a_finished_job_is_recomputed_when_the_cached_network_is_replaced(tiny_overrides, capsys):
    job = tiny_overrides + ["seed=12", "cam=cam"]
    first = run_job(compose_config(job))
    net_file = ClassifierCache(compose_config(job).paths.cache_dir).path(first["classifier"]["key"]) / "net.pt"
    other = torch.load(net_file, weights_only=True)
    other["fc.bias"] += 0.5  # another network under the same key, meta.json untouched
    torch.save(other, net_file)
    redone = run_job(compose_config(job))
    assert "[redo]" in capsys.readouterr().out and redone["job_id"] != first["job_id"]
    assert redone["classifier"]["identity"]["weights_sha1"] == weights_sha1(other)


def test_an_evaluation_killed_then_retrained_starts_over(tiny_overrides, tmp_path, monkeypatch, capsys):
    # 16 images in batches of 2: killed during the 4th batch, 3 checkpointed; the retrain must void them.
    job = tiny_overrides + ["seed=13", "cam=cam", "data.eval_batch_size=2", "eval.checkpoint_every=1"]
    batch_end = CamEvaluation.on_test_batch_end

    def killed_during_the_fourth_batch(self, *args):
        if self.batches_done == 3:
            raise KilledMidEvaluation("killed")
        batch_end(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(CamEvaluation, "on_test_batch_end", killed_during_the_fourth_batch)
        with pytest.raises(KilledMidEvaluation):
            run_job(compose_config(job))
    assert torch.load(tmp_path / "job" / "eval_checkpoint.pt", weights_only=True)["batches_done"] == 3

    retrain(job, tmp_path)
    capsys.readouterr()
    steps = []
    original = CamEvaluation.test_step
    monkeypatch.setattr(CamEvaluation, "test_step", lambda self, batch, i: steps.append(i) or original(self, batch, i))
    run_job(compose_config(job))
    lines = [line for line in capsys.readouterr().out.splitlines() if "eval_checkpoint.pt" in line]
    assert len(lines) == 1 and "scored another classifier" in lines[0] and "discarded" in lines[0]
    assert len(steps) == 8  # every batch scored by the new classifier


def test_overwrite_with_another_threshold_rewrites_the_seeds_and_the_same_manifest_resumes(tiny_overrides, tmp_path):
    job = tiny_overrides + ["seed=14", "cam=cam", "export.seeds=true"]
    seeds = tmp_path / "job" / "seeds"
    first = run_job(compose_config(job + ["export.threshold=0.30"]))
    assert first["export"]["written"] == 16
    old = {p.name: p.read_bytes() for p in (seeds / "png").glob("*.png")}

    redone = run_job(compose_config(job + ["export.threshold=0.05", "overwrite=true"]))
    assert redone["export"] == {"dir": str(seeds), "format": "irn", "written": 16, "skipped": 0, "threshold": 0.05}
    new = {p.name: p.read_bytes() for p in (seeds / "png").glob("*.png")}
    assert new.keys() == old.keys() and any(new[name] != old[name] for name in new)
    assert json.loads((seeds / "manifest.json").read_text())["threshold"] == 0.05

    # The same manifest: a killed export resumes, the files already written are kept.
    (seeds / "png" / sorted(new)[0]).unlink()
    (tmp_path / "job" / "results.json").unlink()
    resumed = run_job(compose_config(job + ["export.threshold=0.05"]))
    assert (resumed["export"]["written"], resumed["export"]["skipped"]) == (1, 15)


def test_stale_per_image_counts_are_refused_and_a_run_without_them_removes_them(tiny_overrides, tmp_path):
    job = tiny_overrides + ["seed=15", "cam=cam"]
    run_job(compose_config(job))
    other = [o.replace(str(tmp_path / "job"), str(tmp_path / "other")) for o in job] + ["seed=16"]
    run_job(compose_config(other))
    own = (tmp_path / "job" / PER_IMAGE_FILE).read_bytes()

    # A job killed between its two writes: another run's counts beside these results.
    shutil.copy(tmp_path / "other" / PER_IMAGE_FILE, tmp_path / "job" / PER_IMAGE_FILE)
    with pytest.raises(ValueError, match=f"{PER_IMAGE_FILE}: stale per-image counts"):
        read_per_image(tmp_path / "job")
    (tmp_path / "job" / PER_IMAGE_FILE).write_bytes(own)
    assert read_per_image(tmp_path / "job")["job"]["classifier"]["key"] == classifier_key_of(job)

    run_job(compose_config(job + ["overwrite=true", "eval.per_image_scores=false"]))
    assert not (tmp_path / "job" / PER_IMAGE_FILE).exists() and read_per_image(tmp_path / "job") is None


def test_a_per_image_file_without_results_beside_it_is_refused(tmp_path):
    from src.reporting.results import write_per_image

    counts = np.zeros((2, 4, 3), dtype=np.int64)  # [N images, T thresholds, K classes]
    write_per_image(tmp_path / PER_IMAGE_FILE, {"index": [0, 1], "thresholds": [0.1, 0.2, 0.3, 0.4],
                                                "intersection": counts, "union": counts},
                    {"job_id": "a", "classifier": None})
    with pytest.raises(ValueError, match="stale"):
        read_per_image(tmp_path)
