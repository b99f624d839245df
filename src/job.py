"""What a job needs before it runs, built from the config and checked up front (see `src.run`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import hydra
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger

from src.cams import CAM_METHODS
from src.config_checks import ConfigError
from src.data import ProportionDataModule, check_proportion
from src.models import Classifier, backbone_spec, check_layers


@dataclass
class JobInputs:
    proportion: float
    datamodule: ProportionDataModule
    model: Classifier
    target_layers: list[str]
    dataset_name: str
    loggers: list[Logger] = field(default_factory=list)
    callbacks: list = field(default_factory=list)


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
        datamodule = hydra.utils.instantiate(cfg.data)
        model = Classifier(cfg.backbone.name, datamodule.num_classes, cfg.backbone.weights,
                           cfg.backbone.output_stride, **cfg.train)
        target_layers = check_layers(model.net, cfg.cam.get("target_layers") or spec.cam_layers, "cam.target_layers")
        if cfg.cam.get("stages") is not None:
            check_layers(model.net, cfg.cam.stages, "cam.stages")
        datamodule.prepare_data()
        datamodule.setup("fit")
    except (KeyError, ValueError, FileNotFoundError, ImportError) as error:
        raise ConfigError(error.args[0] if error.args else repr(error)) from error
    datamodule.save_subset_ids(f"{cfg.paths.output_dir}/subset_ids.txt")
    return JobInputs(proportion, datamodule, model, target_layers, dataset_name=datamodule.name,
                     loggers=instantiate_all(cfg.get("logger")), callbacks=instantiate_all(cfg.get("callbacks")))


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
