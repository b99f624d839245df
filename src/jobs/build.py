"""The job's setup: the one place in `src/jobs/` that reads the config. `check_config` validates the user's values
(each bad one is a `ConfigError` naming its key); `job_settings` reads the plain values once and computes the
job's keys (classifier key, config fingerprint); `build_job` builds what the stages run on (datamodule,
classifier, CAM and its fitting step, loggers, trainer, evaluation, export, stores). The stages
(`src.jobs.cam_job`, `src.jobs.classifiers_pass`) receive those objects, never the config.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from src.cams import CAM_METHODS, CamSpec
from src.config.checks import ConfigError, JOB_KINDS
from src.config.compose import is_pretrained_name, pretrain_config, resolved_parts
from src.config.launch import sweep_launch_id, sweep_names
from src.data import ProportionDataModule, check_proportion, data_content_digest
from src.evaluation import CamEvaluation, SeedExport
from src.evaluation.export import EXPORT_SPLITS, SEED_FORMATS
from src.jobs.training import TrainingPlan
from src.models import Classifier, backbone_spec, check_layers
from src.models.classifier import OPTIMIZERS, SCHEDULERS
from src.reporting.wandb_logging import wandb_run_settings
from src.runtime.lightning_noise import quiet_lightning
from src.runtime.preemption import EvaluationRequeue, trainer_plugins
from src.store.classifiers import ClassifierCache, classifier_key
from src.store.finished_jobs import config_fingerprint
from src.store.pretrained import PretrainedWeights, pretrained_key
from src.store.train_checkpoints import TrainCheckpoints

log = logging.getLogger(__name__)
SCOREMAP_METRICS = ("PxAP", "MaxBoxAccV2")  # the metrics that score maps (wsolevaluation's scoremap_root)


@dataclass(frozen=True)
class JobSettings:
    """The plain values of a job's config, read once, and the keys computed from them."""

    kind: str  # `job`: "cams" (the whole job) or "classifiers" (train the classifier into the cache, no CAMs)
    output_dir: Path
    seed: int
    proportion: float
    cam_name: str
    backbone_name: str
    global_batch: int  # `data.batch_size`: the global batch, shared by the DDP ranks
    overwrite: bool
    resolved: dict  # the resolved config: results.json's `config`, the config of launched DDP ranks
    fingerprint: str  # `src.store.finished_jobs.config_fingerprint`
    classifier_key: str
    classifier_fields: dict  # what the key is made of (the cache entry's meta.json)
    training: TrainingPlan
    classifiers: ClassifierCache

    @property
    def ddp_folder(self) -> Path:
        """Where the job's ranks meet on disk (launched ranks' config, failure reports)."""
        return self.output_dir / ".ddp"

    def current_classifier(self) -> dict | None:
        """The identity of the classifier the job would use now without training (None: it will train one)."""
        return self.classifiers.current_identity(self.classifier_key, self.training.force_retrain,
                                                 self.training.launch)


@dataclass
class Job:
    """What the stages of one job run on, built from its config (`build_job`)."""

    settings: JobSettings
    datamodule: ProportionDataModule
    model: Classifier
    cam: CamSpec  # the method, its layers and options; `fit_cam_method` returns it with what it fitted
    trainer: pl.Trainer
    evaluation: Callable[..., CamEvaluation]  # the `eval` group's CamEvaluation, less the job's own objects
    export: SeedExport
    scoremap_dir: str | None  # wsolevaluation's scoremap_root (`export.scoremaps=true`), else None
    fitting: object | None = None  # the method's fitting step (BroadCAM: src.bls.BLSFitting), from `cam.fitting`
    loggers: list[Logger] = field(default_factory=list)

    @property
    def dataset_name(self) -> str:
        return self.datamodule.name


def check_config(cfg: DictConfig) -> None:
    """Raise `ConfigError` naming the key for the first value the job cannot run with; nothing is built."""
    kind = cfg.get("job", "cams")
    if kind not in JOB_KINDS:
        raise ConfigError(f"job={kind!r} is unknown; expected one of {list(JOB_KINDS)}")
    _as_config_error(check_proportion, cfg.proportion)
    spec = _as_config_error(backbone_spec, cfg.backbone.name)
    if cfg.backbone.output_stride not in spec.output_strides:
        raise ConfigError(f"backbone.output_stride={cfg.backbone.output_stride!r}; {cfg.backbone.name} supports "
                          f"{list(spec.output_strides)}")
    if cfg.cam.name not in CAM_METHODS:
        raise ConfigError(f"cam.name={cfg.cam.name!r} is unknown; expected one of {sorted(CAM_METHODS)}")
    for key, value, allowed in (("train.optimizer", cfg.train.optimizer, OPTIMIZERS),
                                ("train.scheduler", cfg.train.scheduler, SCHEDULERS),
                                ("export.format", cfg.export.format, SEED_FORMATS),
                                ("export.split", cfg.export.split, EXPORT_SPLITS)):
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is unknown; expected one of {list(allowed)}")
    for key in ("train_checkpoint_every", "eval.checkpoint_every"):
        value = OmegaConf.select(cfg, key, default=0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{key}={value!r}: expected an integer >= 0")
    try:
        get_class(str(cfg.data._target_))
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"data._target_={cfg.data._target_!r} is not an importable class: {error}") from None
    weights = cfg.backbone.weights
    if is_pretrained_name(weights):
        made_for = pretrain_config().backbone.name
        if made_for != cfg.backbone.name:
            raise ConfigError(f"backbone.weights={weights!r} holds {made_for} weights (conf/pretrain.yaml), but "
                              f"backbone.name={cfg.backbone.name!r}; expected backbone={made_for}")
    elif weights is not None and Path(str(weights)).suffix in (".pt", ".pth", ".ckpt", ".bin") \
            and not Path(str(weights)).is_file():
        raise ConfigError(f"backbone.weights={str(weights)!r}: no such file")


def _as_config_error(check: Callable, *args):
    """`check(*args)`, a validator whose KeyError/ValueError describes a bad config value, as a ConfigError."""
    try:
        return check(*args)
    except (KeyError, ValueError) as error:
        raise ConfigError(error.args[0]) from None


def job_settings(cfg: DictConfig) -> JobSettings:
    """The job's plain values and keys, from its (checked) config."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    cache_dir = Path(cfg.paths.cache_dir)
    pretrained = (pretrained_key(resolved_parts(pretrain_config())) if is_pretrained_name(cfg.backbone.weights)
                  else None)
    key, fields = classifier_key(resolved, data_content_digest(resolved["data"]), pretrained)
    launch = sweep_launch_id()
    force = bool(cfg.get("force_retrain", False))
    return JobSettings(
        kind=str(cfg.get("job", "cams")), output_dir=Path(cfg.paths.output_dir), seed=int(cfg.seed),
        proportion=check_proportion(cfg.proportion), cam_name=str(cfg.cam.name), backbone_name=str(cfg.backbone.name),
        global_batch=int(cfg.data.batch_size), overwrite=bool(cfg.get("overwrite", False)), resolved=resolved,
        fingerprint=config_fingerprint(OmegaConf.to_container(cfg, resolve=False)), classifier_key=key,
        classifier_fields=fields, classifiers=ClassifierCache(cache_dir),
        training=TrainingPlan(key, launch, force, int(cfg.get("train_checkpoint_every", 0)), TrainCheckpoints(cache_dir)))


def build_job(cfg: DictConfig, settings: JobSettings) -> Job:
    """Seed, then build the datamodule (subset chosen, ids saved by rank 0), the classifier, the CAM, loggers and
    the trainer. A value the config names but the built objects cannot take (a layer the backbone lacks) is a
    ConfigError; anything else raised here is a bug or a dataset error and keeps its own type."""
    # Before anything random is built: weight init, data order, augmentation and (workers=True) each loader
    # worker's RNG follow `seed`. On the CPU this makes a job's metrics repeatable; on CUDA, atomics in
    # backward/scatter kernels and cuDNN's autotuned algorithms still vary run to run unless
    # `trainer.deterministic=true` (Lightning then sets torch.use_deterministic_algorithms and cuDNN's flags).
    quiet_lightning()
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    datamodule = instantiate_datamodule(cfg.data)
    weights = pretrained_weights(cfg.backbone.weights, cfg.paths.cache_dir)
    model = Classifier(cfg.backbone.name, datamodule.num_classes, weights, cfg.backbone.output_stride, **cfg.train)
    if cfg.cam.get("stages") is not None:  # a method fitted on stage features (BroadCAM) maps those stages
        _as_config_error(check_layers, model.net, cfg.cam.stages, "cam.stages")
    layers = _as_config_error(check_layers, model.net, cam_target_layers(cfg.cam, cfg.backbone.name),
                              "cam.target_layers")
    scoremap_dir = str(cfg.export.scoremap_dir) if cfg.export.get("scoremaps") else None
    if scoremap_dir and not set(SCOREMAP_METRICS) & set(datamodule.metrics):
        raise ConfigError(f"export.scoremaps=true: {datamodule.name} is scored by {list(datamodule.metrics)}, which "
                          f"make no score maps; expected a dataset scored by {' or '.join(SCOREMAP_METRICS)}")
    datamodule.prepare_data()
    datamodule.setup("fit")
    if rank_zero_only.rank == 0:  # DDP: rank 0 writes the job's files (ranks > 0 know theirs from the env)
        datamodule.save_subset_ids(f"{settings.output_dir}/subset_ids.txt")
    loggers = instantiate_loggers(cfg.get("logger"), settings.resolved, datamodule.name)
    fitting = cfg.cam.get("fitting")
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers, plugins=trainer_plugins(),
                                      callbacks=[*instantiate_all(cfg.get("callbacks")), EvaluationRequeue()])
    return Job(settings, datamodule, model, CamSpec(cfg.cam.name, layers, dict(cfg.cam.get("options") or {})),
               trainer, evaluation=hydra.utils.instantiate(cfg.eval, _partial_=True),  # objects go in later
               export=hydra.utils.instantiate(cfg.export), scoremap_dir=scoremap_dir,
               fitting=hydra.utils.instantiate(fitting) if fitting else None, loggers=loggers)


def cam_target_layers(cam_config: Mapping, backbone: str) -> list[str]:
    """The layers a CAM hooks: the cam config's `target_layers`, else its fitted `stages` (BroadCAM: the CAM's
    maps are the BLS's features), else the backbone's default CAM layers (backbone registry)."""
    return list(cam_config.get("target_layers") or cam_config.get("stages") or backbone_spec(backbone).cam_layers)


def pretrained_weights(weights, cache_dir: str | Path) -> str | None:
    """`backbone.weights` as `build_backbone` takes it: a pretrained name (`conf/pretrain.yaml`) resolves to its
    cached `backbone.pt`, pretrained now on a miss (as a torchvision name downloads on first use: the job cannot
    run without them; a sweep's jobs share the one pretraining through its lock)."""
    if not is_pretrained_name(weights):
        return weights
    cfg = pretrain_config()
    cfg.paths.cache_dir = str(cache_dir)
    store, key = PretrainedWeights(cache_dir), pretrained_key(resolved_parts(cfg))
    if not store.has(key):
        log.info(f"[pretrained] {weights!r} is not in {store.root}: pretraining it once now (the same as "
                 f"`python -m src.pretrain`; ~{int(cfg.trainer.max_steps)} steps)")
        from src.jobs.pretraining import pretrain  # the pretraining task builds on this module

        pretrain(build_pretraining(cfg))
    return str(store.weights(key))


@dataclass
class Pretraining:
    """What the one-time pretraining runs on (`build_pretraining`, run by `src.jobs.pretraining.pretrain`)."""

    key: str
    store: PretrainedWeights
    datamodule: pl.LightningDataModule
    model: Classifier
    trainer_factory: Callable[..., pl.Trainer]  # the `trainer` group, less its callbacks
    resolved: dict  # the pretraining config, resolved (its meta.json and launched ranks)
    seed: int
    max_steps: int
    global_batch: int
    checkpoint_every: int
    progress_bar: bool


def build_pretraining(cfg: DictConfig) -> Pretraining:
    """The pretraining of `cfg` (`conf/pretrain.yaml`): seeded, its datamodule and classifier built."""
    resolved = resolved_parts(cfg)
    quiet_lightning()
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = Classifier(cfg.backbone.name, len(datamodule.class_names), None, cfg.backbone.output_stride, **cfg.train)
    trainer = functools.partial(hydra.utils.instantiate, cfg.trainer, enable_progress_bar=bool(cfg.progress_bar))
    return Pretraining(pretrained_key(resolved), PretrainedWeights(cfg.paths.cache_dir), datamodule, model, trainer,
                       resolved, int(cfg.seed), int(cfg.trainer.max_steps), int(cfg.data.batch_size),
                       int(cfg.checkpoint_every), bool(cfg.progress_bar))


def instantiate_datamodule(data_cfg: DictConfig | dict) -> ProportionDataModule:
    """The configured DataModule; a constructor's own error (e.g. a missing root) surfaces unwrapped."""
    try:
        return hydra.utils.instantiate(data_cfg)
    except InstantiationException as error:
        raise (error.__cause__ or error) from None


def instantiate_loggers(logger_cfg: DictConfig | None, resolved: dict, dataset: str) -> list[Logger]:
    """The `logger` group's loggers; W&B gets its sweep group, run name and top-level config fields."""
    loggers = []
    for entry in (logger_cfg or {}).values():
        if entry and "_target_" in entry:
            extra = wandb_run_settings(resolved, dataset, *sweep_names()) if entry._target_.endswith("WandbLogger") else {}
            loggers.append(hydra.utils.instantiate(entry, _partial_=True)(**extra))  # `config` is a W&B kwarg
    return loggers


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every `_target_` entry of a config group mapping (callbacks)."""
    return [hydra.utils.instantiate(entry) for entry in (group or {}).values() if entry and "_target_" in entry]
