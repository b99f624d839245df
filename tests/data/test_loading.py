"""Loader settings from the machine (src/data/loading.py) and the datamodule's loaders: workers from the CPUs
this process may use, one set of workers alive at a time."""
from __future__ import annotations

import os

import pytest

from src.data import loading
from src.data.loading import default_num_workers, resolve_num_workers, usable_cpus
from tests.helpers import synthetic_datamodule


def test_workers_leave_one_core_to_the_main_process_capped_and_none_on_two_cores():
    assert [default_num_workers(n) for n in (1, 2, 3, 4, 9, 16, 128)] == [0, 0, 2, 3, 8, 8, 8]


def test_usable_cpus_follow_the_affinity_mask_and_slurm(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert usable_cpus() == 12 and default_num_workers() == 8
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    assert usable_cpus() == 4 and default_num_workers() == 3
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "64")  # SLURM never grants more than the mask allows
    assert usable_cpus() == 12
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "")
    assert usable_cpus() == 12
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert resolve_num_workers(None) == 0 and resolve_num_workers("auto") == 0 and resolve_num_workers(3) == 3


@pytest.mark.parametrize("bad", [-1, 1.5, True, "four"])
def test_a_bad_worker_count_is_a_one_line_error(bad):
    with pytest.raises(ValueError, match=r"data.num_workers=.*expected null"):
        resolve_num_workers(bad)


def test_only_the_training_loader_keeps_workers_and_teardown_stops_them(cache_dir, monkeypatch):
    monkeypatch.setattr(loading, "usable_cpus", lambda: 3)  # → 2 workers, whatever this machine has
    dm = synthetic_datamodule(cache_dir / "synthetic", setup=False, batch_size=8, pin_memory=False)
    assert dm.num_workers == 2
    dm.prepare_data()
    dm.setup("fit")
    train = dm.train_dataloader()
    assert train.persistent_workers and train.num_workers == 2 and not train.pin_memory
    next(iter(train))
    workers = train._iterator._workers
    assert all(w.is_alive() for w in workers)
    dm.teardown("fit")
    assert not any(w.is_alive() for w in workers) and train._iterator is None
    for one_pass in (dm.test_dataloader(), dm.train_subset_eval_dataloader()):
        assert one_pass.num_workers == 2 and not one_pass.persistent_workers  # workers end with the pass
