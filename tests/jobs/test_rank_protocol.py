"""The classifier's rank protocol (`classifier_protocol`) as rank 0 of a DDP job sees it: it takes the key's lock
without sitting in one long collective while another job holds it, saves under the lock, and the classifiers
pass leaves a key another job is training."""
from __future__ import annotations

import fcntl
import threading
from types import SimpleNamespace

import pytest
from torch import nn

from src.jobs import classifier as classifier_module
from src.jobs.classifier import classifier_protocol
from src.runtime.ranks import Rank
from src.store.classifiers import ClassifierCache
from tests.conftest import TINY_JOB
from tests.helpers import job_settings_of


class RankZeroOfTwo(Rank):
    """Rank 0 of a 2-rank job whose other rank is elsewhere: collectives are identities here, and recorded."""

    def __init__(self):
        super().__init__(0, 2)
        object.__setattr__(self, "sent", [])

    def broadcast(self, value=None):
        self.sent.append(value)
        return value

    def barrier(self) -> None:
        pass


def lock_is_held(cache: ClassifierCache, key: str) -> bool:
    with open(cache.root / f"{key}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


@pytest.fixture
def job(tmp_path):
    settings = job_settings_of(TINY_JOB + [f"paths.cache_dir={tmp_path}"])
    fits = []
    trainer = SimpleNamespace(fit=lambda model, datamodule, ckpt_path=None: fits.append(datamodule.batch_size),
                              callbacks=[], global_step=0)
    datamodule = SimpleNamespace(subset_ids=["a", "b"], num_classes=2, batch_size=8)
    return settings, SimpleNamespace(net=nn.Linear(2, 2)), datamodule, trainer, fits


def hold_lock(cache: ClassifierCache, key: str, release: threading.Event) -> threading.Thread:
    """Another job holding the key's lock until `release` is set."""
    cache.root.mkdir(parents=True, exist_ok=True)
    taken = threading.Event()

    def hold():
        with cache.lock(key):
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    taken.wait(30)
    return thread


def test_ddp_rank_zero_waits_in_short_broadcasts_then_trains_and_saves_under_the_lock(job, monkeypatch):
    settings, model, datamodule, trainer, fits = job
    cache, key = settings.classifiers, settings.classifier_key
    release, saved_locked = threading.Event(), []
    save = ClassifierCache.save

    def spy_save(self, *args, **kwargs):
        saved_locked.append(lock_is_held(self, key))
        return save(self, *args, **kwargs)

    def sleep(_seconds):  # the racing job finishes while rank 0 waits
        release.set()
        holder.join(30)

    monkeypatch.setattr(ClassifierCache, "save", spy_save)
    monkeypatch.setattr(classifier_module.time, "sleep", sleep)
    holder = hold_lock(cache, key, release)
    rank = RankZeroOfTwo()
    _, info, decision = classifier_protocol(settings, model, datamodule, trainer, rank)
    assert rank.sent[1:3] == ["wait", "train"]  # [launch id, "wait", "train", ...]: no collective held it
    assert decision == "train" and fits == [4] and saved_locked == [True]  # the rank's half of the global batch
    assert not info["cache_hit"] and cache.has(key) and not lock_is_held(cache, key)


def test_classifiers_pass_leaves_a_key_another_job_is_training(job):
    settings, model, datamodule, trainer, fits = job
    cache, key, release = settings.classifiers, settings.classifier_key, threading.Event()
    holder = hold_lock(cache, key, release)
    try:
        _, _, decision = classifier_protocol(settings, model, datamodule, trainer, RankZeroOfTwo(),
                                              classifiers_pass=True)
    finally:
        release.set()
        holder.join(30)
    assert decision == "busy" and fits == [] and not cache.has(key)
