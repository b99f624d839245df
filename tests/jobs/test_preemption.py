"""Preemption without a cluster (issue 20): the requeue signal in the middle of training checkpoints the trainer at
the end of the step and hands over to the requeue; the re-run resumes from that step, trains to the budget,
records the resume and removes the training checkpoint. The real SLURM round trip is tests/cluster/test_preemption.py.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from src.runtime.preemption import PREEMPTION, remove_lightning_hpc_checkpoints
from src.jobs.training import TrainingCheckpoint
from src.store.train_checkpoints import TrainCheckpoints
from src.run import run_job
from tests.helpers import classifier_key_of, compose_config


class Requeued(SystemExit):
    """Stands for submitit's checkpoint-and-requeue, which requeues the SLURM job and exits the process."""


@pytest.fixture
def fake_submitit(monkeypatch):
    """PREEMPTION installed in front of a stand-in for submitit's handler, on SIGUSR1 (restored afterwards)."""
    calls = []

    def submitit_handler(signum, frame):
        calls.append(signum)
        raise Requeued(-1)

    previous = signal.getsignal(signal.SIGUSR1)
    monkeypatch.setattr(PREEMPTION, "_submitit_handler", submitit_handler)
    monkeypatch.setattr(PREEMPTION, "_pid", os.getpid())
    monkeypatch.setattr(PREEMPTION, "_signum", signal.SIGUSR1)
    monkeypatch.setattr(PREEMPTION, "install", lambda: True)
    signal.signal(signal.SIGUSR1, PREEMPTION._on_signal)
    yield calls
    signal.signal(signal.SIGUSR1, previous)
    PREEMPTION.requested = False
    PREEMPTION.defer(False)


def test_a_signal_mid_training_checkpoints_that_step_and_the_rerun_resumes_from_it(tiny_overrides, monkeypatch,
                                                                                   fake_submitit, capsys):
    # 15 batches per epoch; 9 steps with a periodic checkpoint every 4: the signal at step 6 is between two
    # periodic checkpoints and inside the first epoch.
    job = tiny_overrides + ["seed=21", "cam=cam", "trainer.max_steps=9", "train_checkpoint_every=4"]
    cfg = compose_config(job)
    path = TrainCheckpoints(cfg.paths.cache_dir).path(classifier_key_of(job))
    batch_end = TrainingCheckpoint.on_train_batch_end

    def signalled_at_step_6(self, trainer, *args):
        if trainer.global_step == 6:
            os.kill(os.getpid(), signal.SIGUSR1)  # SLURM's USR1, delivered to this process
        batch_end(self, trainer, *args)

    with monkeypatch.context() as patch:
        patch.setattr(TrainingCheckpoint, "on_train_batch_end", signalled_at_step_6)
        with pytest.raises(Requeued):
            run_job(cfg)
    assert fake_submitit == [signal.SIGUSR1]
    assert TrainCheckpoints(cfg.paths.cache_dir).read(classifier_key_of(job))["step"] == 6 and not (path.parent.parent / "classifiers" /
                                                                 classifier_key_of(job) / "net.pt").exists()
    capsys.readouterr()

    results = run_job(compose_config(job))
    out = capsys.readouterr().out
    assert f"resuming from step 6 ({path})" in out and "trained to step 9 (resumed from [6])" in out
    assert results["classifier"]["resumed_from_steps"] == [6] and not results["classifier"]["cache_hit"]
    assert not path.exists()  # cached: the training checkpoint is gone
    assert json.loads((Path(results["classifier"]["dir"]) / "meta.json").read_text())["resumed_from_steps"] == [6]


def test_periodic_checkpoints_alone_let_a_killed_training_resume(tiny_overrides, monkeypatch, capsys):
    job = tiny_overrides + ["seed=22", "cam=cam", "trainer.max_steps=9", "train_checkpoint_every=4"]
    batch_end = TrainingCheckpoint.on_train_batch_end

    def killed_after_step_7(self, trainer, *args):
        batch_end(self, trainer, *args)
        if trainer.global_step == 7:
            raise KeyError("killed")  # not a requeue: a node failure, a scancel without signal

    with monkeypatch.context() as patch:
        patch.setattr(TrainingCheckpoint, "on_train_batch_end", killed_after_step_7)
        with pytest.raises(KeyError):
            run_job(compose_config(job))
    capsys.readouterr()
    results = run_job(compose_config(job))
    assert "resuming from step 4" in capsys.readouterr().out and results["classifier"]["resumed_from_steps"] == [4]


def test_leftover_lightning_hpc_checkpoints_are_removed(tmp_path, capsys):
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"old")
    (tmp_path / "other.ckpt").write_bytes(b"keep")
    remove_lightning_hpc_checkpoints(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.ckpt"]
    assert "hpc_ckpt_1.ckpt" in capsys.readouterr().out


def test_lightning_auto_requeue_is_off_under_slurm(monkeypatch):
    from lightning_fabric.plugins.environments import SLURMEnvironment

    from src.runtime.preemption import trainer_plugins

    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "broadcam")
    (plugin,) = trainer_plugins()
    assert isinstance(plugin, SLURMEnvironment) and not plugin.auto_requeue
    monkeypatch.delenv("SLURM_NTASKS")
    assert trainer_plugins() == []
