"""The job's classifier, trained or loaded from the cache (`src.store.classifiers`) by one rank protocol for every
job that needs it (the CAM job, the classifiers pass), one process or DDP however its ranks started."""
from __future__ import annotations

import logging
import time
from contextlib import ExitStack

from pytorch_lightning import LightningDataModule, LightningModule, Trainer
from torch import nn

from src.jobs.training import fit_resumable
from src.runtime.ranks import Rank
from src.store.classifiers import ClassifierCache
from src.store.identity import identity, weights_sha1

log = logging.getLogger(__name__)
LOCK_POLL_S = 2.0  # DDP: how often rank 0 tries a key's lock that another job holds


def classifier_protocol(settings, model: LightningModule, datamodule: LightningDataModule, trainer: Trainer,
                        rank: Rank = Rank(), classifiers_pass: bool = False) -> tuple[float, dict, str]:
    """Train `model` or load its `net` from the cache, for the job of `settings` (`src.jobs.build.JobSettings`).

    Rank 0 takes the key's lock and holds it to the end (under DDP it tries every LOCK_POLL_S, so that the other
    ranks never wait in one collective for as long as another job's training), decides hit or miss and tells the
    others; on a miss every rank trains (each on `data.batch_size / world_size` images per step: the batch is
    global, so the recipe, and the key, do not depend on the device count) and rank 0 saves; then every rank that
    does not hold the saved weights loads them (on a hit all ranks; after DDP training ranks > 0, whose
    batch-norm statistics are their own). Holding the lock across it all, of two racing jobs one trains and the
    other then loads, and no save interleaves with another job's or with a load.

    With `classifiers_pass`: a cached classifier is not loaded, and a key whose lock another job
    holds is left to it. Returns (seconds, classifier info for results.json: key, dir, cache_hit, identity,
    resumed_from_steps; decision: "hit", "train" or "busy")."""
    cache, key, plan = settings.classifiers, settings.classifier_key, settings.training
    tick = time.perf_counter()
    launch = rank.broadcast(plan.launch)  # rank 0's Hydra config names the launch
    with ExitStack() as held:
        decision = "wait"
        while decision == "wait":  # DDP: the other ranks wait in short broadcasts, never one as long as a training
            if rank.is_zero:
                decision = _decide(held, cache, key, plan.force_retrain, launch,
                                   wait=not (classifiers_pass or rank.distributed), busy_is_final=classifiers_pass)
            decision = rank.broadcast(decision)
            if decision == "wait":
                time.sleep(LOCK_POLL_S)
        if decision == "train":
            datamodule.batch_size = rank.batch_share(settings.global_batch)
            resumed = fit_resumable(plan, model, datamodule, trainer)
            if rank.is_zero:
                cache.save(key, model.net, datamodule.subset_ids,
                           {"key": key, "num_classes": datamodule.num_classes, "launch_id": launch,
                            "resumed_from_steps": resumed, **settings.classifier_fields})
                plan.checkpoints.remove(key)  # the cache entry is now the one copy to resume from
            rank.barrier()
        if (decision == "hit" and not classifiers_pass) or (decision == "train" and not rank.is_zero):
            cache.load_into(key, model.net, datamodule.subset_ids)
        rank.barrier()  # every rank has its weights before rank 0 lets another job at the key
    if decision == "hit" and not classifiers_pass:
        log.info(f"[cache hit] classifier {key} loaded from {cache.path(key)}")
    info = {"key": key, "dir": str(cache.path(key)), "cache_hit": decision == "hit"}
    if decision == "train" or (decision == "hit" and not classifiers_pass):
        # Rank 0's network is the cached one (the others' BatchNorm statistics are their own until they load it,
        # or until Lightning's `test` copies rank 0's states): the identity is rank 0's.
        info = rank.broadcast(classifier_info(cache, key, decision == "hit", model.net) if rank.is_zero else None)
    return time.perf_counter() - tick, info, decision


def _decide(held: ExitStack, cache: ClassifierCache, key: str, force: bool, launch: str | None, wait: bool,
            busy_is_final: bool) -> str:
    """Rank 0's decision: "train" or "hit" with the key's lock taken into `held`; without the lock (another job
    holds it) "busy" when that is final (the classifiers pass leaves the key to it), else "wait" (try again)."""
    attempt = ExitStack()
    if not attempt.enter_context(cache.lock(key, wait=wait)):
        attempt.close()
        return "busy" if busy_is_final else "wait"
    held.enter_context(attempt.pop_all())
    return "train" if cache.must_train(key, force, launch) else "hit"


def classifier_info(cache: ClassifierCache, key: str, hit: bool, net: nn.Module) -> dict:
    """The job's classifier for results.json: key, cache dir, cache_hit, its identity (`src.store.identity`: the
    entry's key and `trained_at`, the hash of the weights the job holds) and the steps its training resumed from."""
    meta = cache.meta(key)
    return {"key": key, "dir": str(cache.path(key)), "cache_hit": hit,
            "identity": identity(key, weights_sha1(net.state_dict()), meta.get("trained_at")),
            "resumed_from_steps": list(meta.get("resumed_from_steps") or [])}
