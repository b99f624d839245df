"""What a job needs before it runs, built from the config and checked up front (see `src.run`)."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import Trainer
from pytorch_lightning.loggers import Logger

from src.cams import CAM_METHODS
from src.classifier_cache import ClassifierCache, classifier_key, classifier_key_fields
from src.config_checks import ConfigError
from src.data import ProportionDataModule, check_proportion
from src.models import Classifier, backbone_spec, check_layers
from src.reporting.wandb_logging import wandb_run_settings


@dataclass
class JobInputs:
    proportion: float
    datamodule: ProportionDataModule
    model: Classifier
    target_layers: list[str]
    dataset_name: str
    resolved_config: dict
    loggers: list[Logger] = field(default_factory=list)
    callbacks: list = field(default_factory=list)
    method_callbacks: list = field(default_factory=list)  # e.g. BroadCAM's BLS fit, also run on a cache hit


def sweep_range(spec) -> list[float]:
    """{start, stop, step} → [start, start + step, …] below stop (as numpy.arange, rounded)."""
    count = int(round((float(spec.stop) - float(spec.start)) / float(spec.step)))
    return [round(float(spec.start) + i * float(spec.step), 10) for i in range(count)]


def prepare_job(cfg: DictConfig) -> JobInputs:
    """Check the config's values, build the datamodule (subset chosen, ids saved), the classifier, loggers
    and callbacks. Any bad value raises ConfigError before training starts and before results are written."""
    try:
        proportion = check_proportion(cfg.proportion)
        spec = backbone_spec(cfg.backbone.name)
        if cfg.cam.name not in CAM_METHODS:
            raise KeyError(f"cam.name={cfg.cam.name!r} is unknown; expected one of {sorted(CAM_METHODS)}")
        datamodule = instantiate_datamodule(cfg.data)
        model = Classifier(cfg.backbone.name, datamodule.num_classes, cfg.backbone.weights,
                           cfg.backbone.output_stride, **cfg.train)
        if cfg.cam.get("stages") is not None:  # a method fitted on stage features (BroadCAM) maps those stages
            check_layers(model.net, cfg.cam.stages, "cam.stages")
        layers = cfg.cam.get("target_layers") or cfg.cam.get("stages") or spec.cam_layers
        target_layers = check_layers(model.net, layers, "cam.target_layers")
        datamodule.prepare_data()
        datamodule.setup("fit")
    except (KeyError, ValueError, FileNotFoundError, ImportError) as error:
        raise ConfigError(error.args[0] if error.args else repr(error)) from error
    datamodule.save_subset_ids(f"{cfg.paths.output_dir}/subset_ids.txt")
    fitting = method_callbacks(cfg)
    return JobInputs(proportion, datamodule, model, target_layers, dataset_name=datamodule.name,
                     resolved_config=OmegaConf.to_container(cfg, resolve=True),
                     loggers=instantiate_loggers(cfg),
                     callbacks=instantiate_all(cfg.get("callbacks")) + fitting, method_callbacks=fitting)


def config_fingerprint(cfg: DictConfig) -> str:
    """A hash of everything that defines a job's results (not where it writes, nor resume flags)."""
    container = OmegaConf.to_container(cfg, resolve=False)
    for key in ("paths", "overwrite", "force_retrain", "sweep_name"):
        container.pop(key, None)
    return hashlib.sha1(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:16]


def previous_results(cfg: DictConfig) -> dict | None:
    """The job's existing results when they were made with the same config and `overwrite` is off."""
    path = Path(cfg.paths.output_dir) / "results.json"
    if cfg.get("overwrite") or not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return results if results.get("config_fingerprint") == config_fingerprint(cfg) else None


def train_or_load(cfg: DictConfig, job: JobInputs, trainer: Trainer) -> tuple[dict, dict]:
    """Train the classifier, or load it from the cache when a classifier of the same key exists (then run
    the method's fitting callbacks directly). Returns (timings, classifier info for results.json)."""
    cache = ClassifierCache(cfg.paths.cache_dir)
    key = classifier_key(cfg)
    tick = time.perf_counter()
    with cache.lock(key):  # one of several racing jobs trains; the others then load
        hit = cache.has(key) and not cfg.get("force_retrain", False)
        if hit:
            cache.load_into(key, job.model.net, job.datamodule.subset_ids)
        else:
            trainer.fit(job.model, datamodule=job.datamodule)
            cache.save(key, job.model.net, job.datamodule.subset_ids,
                       {"key": key, "num_classes": job.datamodule.num_classes, **classifier_key_fields(cfg)})
    timings = {"train_s": time.perf_counter() - tick}
    if hit:
        print(f"[cache hit] classifier {key} loaded from {cache.path(key)}")
        for callback in job.method_callbacks:
            callback.fit_for(job.model, job.datamodule, output_dir=cfg.paths.output_dir, loggers=job.loggers)
    if getattr(job.model, "bls_info", None):
        timings["bls_s"] = job.model.bls_info["fit_s"]
    return timings, {"key": key, "dir": str(cache.path(key)), "cache_hit": hit}


def evaluation_kwargs(cfg: DictConfig, datamodule: ProportionDataModule) -> dict:
    """The dataset's protocol and the `eval` config as CamEvaluation arguments."""
    return dict(num_classes=datamodule.num_classes, seed_background=datamodule.seed_background,
                ignore_index=datamodule.ignore_index, metric_names=datamodule.metrics,
                seed_thresholds=sweep_range(cfg.eval.seed_thresholds), wsol_size=cfg.eval.wsol_size,
                box_thresholds=sweep_range(cfg.eval.box_thresholds), iou_thresholds=tuple(cfg.eval.iou_thresholds),
                figure_images=cfg.eval.figure_images)


def instantiate_datamodule(data_cfg: DictConfig) -> ProportionDataModule:
    """The configured DataModule; a constructor's own error (e.g. a missing root) surfaces unwrapped."""
    try:
        return hydra.utils.instantiate(data_cfg)
    except InstantiationException as error:
        raise (error.__cause__ or error) from None


def instantiate_loggers(cfg: DictConfig) -> list[Logger]:
    """The `logger` group's loggers; W&B gets its sweep group, run name and top-level config fields."""
    loggers = []
    for entry in (cfg.get("logger") or {}).values():
        if entry and "_target_" in entry:
            extra = wandb_run_settings(cfg) if entry._target_.endswith("WandbLogger") else {}
            loggers.append(hydra.utils.instantiate(entry, _partial_=True)(**extra))  # `config` is a W&B kwarg
    return loggers


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every `_target_` entry of a config group mapping (loggers, callbacks)."""
    return [hydra.utils.instantiate(entry) for entry in (group or {}).values() if entry and "_target_" in entry]


def method_callbacks(cfg: DictConfig) -> list:
    """The CAM method's own fitting callback (e.g. BroadCAM's BLS fit), if its config declares one."""
    callback = cfg.cam.get("callback")
    return [hydra.utils.instantiate(callback)] if callback else []


def finish_loggers(loggers: list[Logger]) -> None:
    """Close every logger's run, so that jobs of a multirun never share a W&B run (even after a failure)."""
    for logger in loggers:
        logger.finalize("success")
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()
