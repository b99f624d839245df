"""Trained classifiers cached by everything that determines them, shared by every CAM method of a sweep
(`train_or_load`, called by `src.run`); `load_cached_net` is the one reader of a cached network.

Layout: `<cache_dir>/classifiers/<key>/` holds `net.pt` (the network's state dict), `subset_ids.txt` and
`meta.json` (what the key was made of, the sweep launch that trained it, the classifier's identity: weights hash
and `trained_at`, see `src.jobs.identity`, and `resumed_from_steps` when its training was resumed). A directory appears only complete
(written under a temp name, then renamed), and jobs wanting the same key take an exclusive file lock, so of two
racing jobs one trains and the other loads.

`force_retrain=true` retrains a classifier once per sweep launch, not once per CAM job: an entry trained by
the current launch (`sweep_launch_id`) counts as fresh. The launch is identified by the file Hydra's sweeper
writes once per launch, `<sweep dir>/multirun.yaml` (path, mtime, size), read by every job of the launch
whatever the launcher: local jobs, submitit processes and SLURM array tasks all see the same file on the shared
file system, so no two clocks are compared (a node's clock skew cannot make an entry look fresh or stale), and a
requeued SLURM task still belongs to its launch (no second retrain), while re-running the sweep rewrites
multirun.yaml, i.e. a new launch that retrains again. Outside a multirun every forced job retrains.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import LightningDataModule, LightningModule, Trainer
from torch import nn

from src.data import data_content_digest
from src.jobs.distributed import Ranks
from src.jobs.identity import entry_identity, identity, now_stamp, weights_sha1
from src.jobs.pretrained_cache import is_pretrained_name, pretrain_config, pretrained_key
from src.jobs.train_checkpoint import fit_resumable, remove_training_checkpoint

LOCK_POLL_S = 2.0  # DDP: how often rank 0 tries a key's lock that another job holds
# Keys of the data config that change how a job evaluates or loads, not which classifier it trains.
_DATA_KEYS_NOT_IN_KEY = {"eval_split", "eval_batch_size", "num_workers", "pin_memory", "num_val", "num_test",
                         "on_corrupt"}
# Keys of the trainer config that change what it learns (not the device count: `data.batch_size` is global).
_TRAINER_KEYS_IN_KEY = {"max_steps", "max_epochs", "precision", "accumulate_grad_batches", "gradient_clip_val"}


def classifier_key_fields(cfg: DictConfig) -> dict:
    """What determines a trained classifier: dataset (and its root), backbone and weights (for pretrained
    weights, the key of their pretraining config, not only their name), proportion, seed and training config;
    for a datamodule with a `content_digest` (data=folder), the digest of what its folder holds."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    pretrained = {"pretrained": pretrained_key(pretrain_config())} if is_pretrained_name(cfg.backbone.weights) else {}
    content = data_content_digest(data)  # a dataset the user edits in place (data=folder): its labels and files
    return {
        **pretrained,
        **({"data_content": content} if content else {}),
        "data": {k: v for k, v in data.items() if k not in _DATA_KEYS_NOT_IN_KEY},
        "backbone": OmegaConf.to_container(cfg.backbone, resolve=True),
        "proportion": float(cfg.proportion),
        "seed": int(cfg.seed),
        "train": OmegaConf.to_container(cfg.train, resolve=True),
        "trainer": {k: cfg.trainer[k] for k in sorted(_TRAINER_KEYS_IN_KEY) if k in cfg.trainer},
    }


def classifier_key(cfg: DictConfig) -> str:
    fields = json.dumps(classifier_key_fields(cfg), sort_keys=True, default=str)
    return hashlib.sha1(fields.encode()).hexdigest()[:16]


class ClassifierCache:
    """Trained networks under `<cache_dir>/classifiers/<key>/`."""

    def __init__(self, cache_dir: str | Path):
        self.root = Path(cache_dir) / "classifiers"

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / "net.pt").is_file()

    def meta(self, key: str) -> dict:
        """The entry's `meta.json` ({} when absent or unreadable)."""
        try:
            return json.loads((self.path(key) / "meta.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    @contextmanager
    def lock(self, key: str, wait: bool = True):
        """Exclusive lock of one key across processes (parallel sweep jobs on one file system). Yields True once
        held; with `wait=False` yields False at once when another process holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def save(self, key: str, net: nn.Module, subset_ids: list[str], meta: dict) -> Path:
        """Store a trained network; the key's directory appears complete or not at all."""
        final = self.path(key)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        state = net.state_dict()
        torch.save(state, tmp / "net.pt")
        stat = (tmp / "net.pt").stat()  # a rename keeps it: `entry_identity` trusts the hash while it matches
        meta = {**meta, "key": key, "weights_sha1": weights_sha1(state), "trained_at": now_stamp(),
                "net_file": [stat.st_size, stat.st_mtime_ns]}
        (tmp / "subset_ids.txt").write_text("\n".join(subset_ids) + "\n")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        shutil.rmtree(final, ignore_errors=True)  # a forced retrain replaces the old entry
        tmp.replace(final)
        return final

    def load_into(self, key: str, net: nn.Module, subset_ids: list[str]) -> dict:
        """Load a cached network into `net`; its subset must be the job's own subset. Returns its meta."""
        return load_cached_net(self.path(key), net, subset_ids)


def load_cached_net(path: str | Path, net: nn.Module, subset_ids: list[str] | None = None) -> dict:
    """Load the network cached in `path` (`net.pt`) into `net` and return its `meta.json`; with `subset_ids`,
    the cached subset must be exactly those ids (a job never loads a classifier trained on other images)."""
    path = Path(path)
    if not (path / "net.pt").is_file():
        raise FileNotFoundError(f"{path / 'net.pt'}: no cached classifier there (run from the directory the "
                                "sweep ran in, or rerun the job)")
    if subset_ids is not None and (path / "subset_ids.txt").read_text().split() != list(subset_ids):
        raise RuntimeError(f"{path}: cached subset differs from this job's subset; rerun with force_retrain=true")
    state = torch.load(path / "net.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    meta = json.loads((path / "meta.json").read_text())
    return {**meta, "weights_sha1": weights_sha1(state)}  # of the weights loaded, whatever meta.json says


def sweep_launch_id() -> str | None:
    """The id of the multirun launch this job belongs to: a hash of `<sweep dir>/multirun.yaml`'s path, mtime and
    size (Hydra's sweeper rewrites that file at each launch, before any job starts). None outside a multirun."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    path = Path(HydraConfig.get().sweep.dir) / "multirun.yaml"
    try:
        stat = path.stat()
    except OSError:
        return None
    return hashlib.sha1(f"{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}".encode()).hexdigest()[:16]


def must_train(cache: ClassifierCache, key: str, force_retrain: bool, launch: str | None) -> bool:
    """Whether a job trains the classifier `key`: not cached yet, or `force_retrain` and the entry was not trained
    by this sweep launch (`launch`; None = not a multirun, so a forced job always retrains)."""
    if not cache.has(key):
        return True
    return bool(force_retrain) and (launch is None or cache.meta(key).get("launch_id") != launch)


def train_or_load(cfg: DictConfig, model: LightningModule, datamodule: LightningDataModule,
                  trainer: Trainer, ranks: Ranks = Ranks()) -> tuple[float, dict]:
    """Train `model` (`trainer.fit`), or load its `net` from the cache when a classifier of the same key exists
    (and `force_retrain` is off, or this sweep launch already retrained it). Returns (seconds spent, classifier
    info for results.json: key, dir, cache_hit). The rank protocol is `classifier_protocol`'s."""
    seconds, info, _ = classifier_protocol(cfg, model, datamodule, trainer, ranks)
    return seconds, info


def classifier_protocol(cfg: DictConfig, model: LightningModule, datamodule: LightningDataModule, trainer: Trainer,
                        ranks: Ranks = Ranks(), stage: bool = False) -> tuple[float, dict, str]:
    """The one protocol of every job that needs the classifier, one process or DDP however its ranks started:
    rank 0 takes the key's lock and holds it to the end (under DDP it tries every LOCK_POLL_S, so that the other
    ranks never wait in one collective for as long as another job's training), decides hit or miss and tells
    the others; on a miss every rank trains (each on `data.batch_size / world_size` images per step: the batch is
    global, so the recipe, and the key, do not depend on the device count) and rank 0 saves; then every rank that
    does not hold the saved weights loads them (on a hit all ranks; after DDP training ranks > 0, whose
    batch-norm statistics are their own). Holding the lock across it all, of two racing jobs one trains and the
    other then loads, and no save interleaves with another job's or with a load.

    With `stage` (the classifiers stage): a cached classifier is not loaded, and a key whose lock another job
    holds is left to it. Returns (seconds, info as `train_or_load`, decision: "hit", "train" or "busy")."""
    cache = ClassifierCache(cfg.paths.cache_dir)
    key = classifier_key(cfg)
    tick = time.perf_counter()
    launch = ranks.broadcast(sweep_launch_id())  # rank 0's Hydra config names the launch
    with ExitStack() as held:
        decision = "wait"
        while decision == "wait":  # DDP: the other ranks wait in short broadcasts, never one as long as a training
            if ranks.is_zero:
                decision = _decide(held, cache, key, bool(cfg.get("force_retrain", False)), launch,
                                   wait=not (stage or ranks.distributed), stage=stage)
            decision = ranks.broadcast(decision)
            if decision == "wait":
                time.sleep(LOCK_POLL_S)
        if decision == "train":
            datamodule.batch_size = ranks.batch_share(int(cfg.data.batch_size))
            resumed = fit_resumable(cfg, key, model, datamodule, trainer, launch)
            if ranks.is_zero:
                _save_trained(cfg, cache, key, model, datamodule, launch, resumed)
            ranks.barrier()
        if (decision == "hit" and not stage) or (decision == "train" and not ranks.is_zero):
            cache.load_into(key, model.net, datamodule.subset_ids)
        ranks.barrier()  # every rank has its weights before rank 0 lets another job at the key
    if decision == "hit" and ranks.is_zero and not stage:
        print(f"[cache hit] classifier {key} loaded from {cache.path(key)}")
    info = {"key": key, "dir": str(cache.path(key)), "cache_hit": decision == "hit"}
    if decision == "train" or (decision == "hit" and not stage):
        # Rank 0's network is the cached one (the others' BatchNorm statistics are their own until they load it,
        # or until Lightning's `test` copies rank 0's states): the identity is rank 0's.
        info = ranks.broadcast(classifier_info(cache, key, decision == "hit", model.net) if ranks.is_zero else None)
    return time.perf_counter() - tick, info, decision


def _decide(held: ExitStack, cache: ClassifierCache, key: str, force: bool, launch: str | None, wait: bool,
            stage: bool) -> str:
    """Rank 0's decision: "train" or "hit" with the key's lock taken into `held`; without the lock (another job
    holds it) "busy" for the classifiers stage, else "wait" (try again)."""
    attempt = ExitStack()
    if not attempt.enter_context(cache.lock(key, wait=wait)):
        attempt.close()
        return "busy" if stage else "wait"
    held.enter_context(attempt.pop_all())
    return "train" if must_train(cache, key, force, launch) else "hit"


def _save_trained(cfg: DictConfig, cache: ClassifierCache, key: str, model: LightningModule,
                  datamodule: LightningDataModule, launch: str | None, resumed_from: list[int]) -> None:
    """Cache a network just trained (recording the steps its training resumed from), then drop its training
    checkpoint: the cache entry is now the one copy to resume from."""
    cache.save(key, model.net, datamodule.subset_ids,
               {"key": key, "num_classes": datamodule.num_classes, "launch_id": launch,
                "resumed_from_steps": resumed_from, **classifier_key_fields(cfg)})
    remove_training_checkpoint(cfg.paths.cache_dir, key)


def classifier_info(cache: ClassifierCache, key: str, hit: bool, net: nn.Module) -> dict:
    """The job's classifier for results.json: key, cache dir, cache_hit, its identity (`src.jobs.identity`: the
    entry's key and `trained_at`, the hash of the weights the job holds) and the steps its training resumed from."""
    meta = cache.meta(key)
    return {"key": key, "dir": str(cache.path(key)), "cache_hit": hit,
            "identity": identity(key, weights_sha1(net.state_dict()), meta.get("trained_at")),
            "resumed_from_steps": list(meta.get("resumed_from_steps") or [])}


def cached_identity(cfg: DictConfig) -> dict | None:
    """The identity of the classifier this job would use now without training, or None when it will train one
    (not cached, or `force_retrain` still to do in this launch): what a finished job's results are checked against."""
    cache = ClassifierCache(cfg.paths.cache_dir)
    key = classifier_key(cfg)
    if must_train(cache, key, cfg.get("force_retrain", False), sweep_launch_id()):
        return None
    return entry_identity(cache.path(key))
