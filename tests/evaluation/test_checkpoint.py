"""A CAM evaluation killed after k batches resumes from its checkpoint: the batches done are skipped and the
metrics equal those of an uninterrupted run."""
from __future__ import annotations

import pytest
import torch

from src.evaluation import CamEvaluation
from src.run import run_job
from tests.helpers import compose_config, flat


class TimeLimitReached(RuntimeError):
    """Stands for SLURM's kill at the time limit (KeyboardInterrupt would make Lightning exit the process)."""


def test_a_killed_evaluation_resumes_and_scores_like_an_uninterrupted_one(tiny_overrides, tmp_path, monkeypatch):
    # 16 images in batches of 2: 8 batches, a checkpoint after each; killed during the 4th (3 checkpointed).
    base = tiny_overrides + ["cam=gradcam", "data.eval_batch_size=2", "eval.checkpoint_every=1"]
    batch_end = CamEvaluation.on_test_batch_end

    def killed_during_the_fourth_batch(self, *args):
        if self.batches_done == 3:
            raise TimeLimitReached("killed by the time limit")
        batch_end(self, *args)

    with monkeypatch.context() as patch:  # the kill is no part of the config: the re-run has the same one
        patch.setattr(CamEvaluation, "on_test_batch_end", killed_during_the_fourth_batch)
        with pytest.raises(TimeLimitReached):
            run_job(compose_config(base))
    job = tmp_path / "job"
    saved = torch.load(job / "eval_checkpoint.pt", weights_only=True)
    assert saved["batches_done"] == 3 and not (job / "results.json").exists()

    steps = []
    original = CamEvaluation.test_step
    monkeypatch.setattr(CamEvaluation, "test_step", lambda self, batch, i: steps.append(i) or original(self, batch, i))
    resumed = run_job(compose_config(base))
    assert len(steps) == 5  # the 3 checkpointed batches were not scored again
    assert not (job / "eval_checkpoint.pt").exists()  # the job is complete: nothing left to resume

    steps.clear()
    whole = run_job(compose_config([o.replace(str(job), str(tmp_path / "whole")) for o in base]))
    assert len(steps) == 8 and whole["classifier"]["cache_hit"]  # same cached classifier
    assert resumed["metrics"] == pytest.approx(whole["metrics"], abs=1e-9)  # sums of integer counts: exact
    assert flat(resumed["details"]["seed_curve"]) == pytest.approx(flat(whole["details"]["seed_curve"]), abs=1e-9)


def test_a_checkpoint_of_another_config_is_ignored(tmp_path):
    from src.evaluation.checkpoint import EvalCheckpoint

    torch.save({"tag": "old", "batches_done": 5}, tmp_path / "ck.pt")
    assert EvalCheckpoint(tmp_path / "ck.pt", "new", every=1).load() is None
    assert EvalCheckpoint(tmp_path / "ck.pt", "old", every=1).load()["batches_done"] == 5
    with pytest.raises(ValueError, match="checkpoint_every=-1"):
        EvalCheckpoint(tmp_path / "ck.pt", "old", every=-1)
