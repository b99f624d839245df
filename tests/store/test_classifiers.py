"""The classifier cache: keys from what determines a classifier, complete entries only, subset checked."""
from __future__ import annotations

import pytest
import torch

from src.store.classifiers import ClassifierCache
from src.models import build_backbone
from tests.helpers import classifier_key_of


def test_key_follows_what_determines_the_classifier():
    base = classifier_key_of([])
    assert classifier_key_of([]) == base
    for changed in ("proportion=5", "seed=1", "backbone=resnet50", "train.lr=0.01", "data.image_size=80",
                    "trainer.max_steps=7", "backbone.weights=IMAGENET1K_V1"):
        assert classifier_key_of([changed]) != base, changed
    for same in ("cam=cam", "data.eval_split=test", "data.eval_batch_size=3", "logger=none", "eval.wsol_size=100"):
        assert classifier_key_of([same]) == base, same


def test_save_then_load_restores_the_network(tmp_path):
    cache = ClassifierCache(tmp_path)
    net = build_backbone("resnet18", 3)
    with cache.lock("k1"):
        assert not cache.has("k1")
        cache.save("k1", net, ["a", "b"], {"num_classes": 3})
    assert cache.has("k1") and not list(cache.root.glob(".*.tmp"))
    other = build_backbone("resnet18", 3)
    meta = cache.load_into("k1", other, ["a", "b"])
    assert meta["num_classes"] == 3
    for (name, a), (_, b) in zip(net.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(RuntimeError, match="subset differs"):
        cache.load_into("k1", other, ["a", "c"])


def test_force_retrain_counts_an_entry_of_this_launch_as_fresh(tmp_path):
    cache = ClassifierCache(tmp_path)
    must_train = cache.must_train
    assert must_train("k", force_retrain=False, launch="L1")  # not cached: always trains
    cache.save("k", build_backbone("resnet18", 3), ["a"], {"launch_id": "L1"})
    assert not must_train("k", force_retrain=False, launch="L2")
    assert not must_train("k", force_retrain=True, launch="L1")  # this launch already retrained it
    assert must_train("k", force_retrain=True, launch="L2")  # a new launch retrains once more
    assert must_train("k", force_retrain=True, launch=None)  # a single job: forced means forced


def test_a_non_waiting_lock_reports_a_held_key(tmp_path):
    import subprocess
    import sys

    cache = ClassifierCache(tmp_path)
    with cache.lock("k") as held:
        assert held
        code = ("import sys; from src.store.classifiers import ClassifierCache\n"
                f"with ClassifierCache({str(tmp_path)!r}).lock('k', wait=False) as held: sys.exit(0 if held else 3)")
        assert subprocess.run([sys.executable, "-c", code]).returncode == 3  # another process: not waiting
    with cache.lock("k", wait=False) as held:
        assert held
