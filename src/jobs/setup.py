"""What a job needs before and around the pipeline, built from the config and checked up front (`src.run`): the
datamodule, the classifier, the CAM (`CamSpec`, with the one answer to "which layers does this CAM hook"), its
fitting step (BroadCAM's BLS), the evaluation and export, loggers and callbacks.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import hydra
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from src.cams import CAM_METHODS, CamSpec
from src.data import ProportionDataModule, check_proportion
from src.evaluation import CamEvaluation, SeedExport
from src.evaluation.checkpoint import checkpoint_file
from src.evaluation.sharding import sharded_loader
from src.jobs.config_checks import ConfigError
from src.jobs.distributed import Ranks, to_cpu
from src.jobs.pretraining import resolve_weights
from src.jobs.sweeps import config_fingerprint
from src.models import Classifier, backbone_spec, check_layers
from src.reporting.wandb_logging import wandb_run_settings


@dataclass
class JobInputs:
    proportion: float
    datamodule: ProportionDataModule
    model: Classifier
    cam: CamSpec  # the method, its layers and options; `fit_cam_method` returns it with what it fitted
    resolved_config: dict
    fitting: object | None = None  # the method's fitting step (BroadCAM: src.bls.BLSFitting), from `cam.fitting`
    loggers: list[Logger] = field(default_factory=list)
    callbacks: list = field(default_factory=list)

    @property
    def dataset_name(self) -> str:
        return self.datamodule.name


def cam_target_layers(cam_config: Mapping, backbone: str) -> list[str]:
    """The layers a CAM hooks: the cam config's `target_layers`, else its fitted `stages` (BroadCAM: the CAM's
    maps are the BLS's features), else the backbone's default CAM layers (backbone registry)."""
    return list(cam_config.get("target_layers") or cam_config.get("stages") or backbone_spec(backbone).cam_layers)


def prepare_job(cfg: DictConfig) -> JobInputs:
    """Check the config's values, build the datamodule (subset chosen, ids saved), the classifier, the CAM,
    loggers and callbacks. Any bad value raises ConfigError before training starts and before results are written."""
    try:
        proportion = check_proportion(cfg.proportion)
        backbone_spec(cfg.backbone.name)
        if cfg.cam.name not in CAM_METHODS:
            raise KeyError(f"cam.name={cfg.cam.name!r} is unknown; expected one of {sorted(CAM_METHODS)}")
        datamodule = instantiate_datamodule(cfg.data)
        weights, _ = resolve_weights(cfg.backbone.weights, cfg.backbone.name, cfg.paths.cache_dir)
        model = Classifier(cfg.backbone.name, datamodule.num_classes, weights, cfg.backbone.output_stride, **cfg.train)
        if cfg.cam.get("stages") is not None:  # a method fitted on stage features (BroadCAM) maps those stages
            check_layers(model.net, cfg.cam.stages, "cam.stages")
        layers = check_layers(model.net, cam_target_layers(cfg.cam, cfg.backbone.name), "cam.target_layers")
        datamodule.prepare_data()
        datamodule.setup("fit")
    except (KeyError, ValueError, FileNotFoundError, ImportError) as error:
        raise ConfigError(error.args[0] if error.args else repr(error)) from error
    if rank_zero_only.rank == 0:  # DDP: rank 0 writes the job's files (ranks > 0 know their rank from the env)
        datamodule.save_subset_ids(f"{cfg.paths.output_dir}/subset_ids.txt")
    fitting = cfg.cam.get("fitting")
    return JobInputs(proportion, datamodule, model, CamSpec(cfg.cam.name, layers, dict(cfg.cam.get("options") or {})),
                     resolved_config=OmegaConf.to_container(cfg, resolve=True),
                     fitting=hydra.utils.instantiate(fitting) if fitting else None,
                     loggers=instantiate_loggers(cfg), callbacks=instantiate_all(cfg.get("callbacks")))


def fit_cam_method(job: JobInputs, output_dir: str | None, device: torch.device | str,
                   step: int = 0, ranks: Ranks = Ranks()) -> tuple[CamSpec, dict | None]:
    """Run the CAM method's fitting step, if it has one, on the trained (or loaded) classifier: the same call
    on a cache hit and after training, on `device` (the trainer's root device). Returns the CAM to use (with
    `bls=` when a BLS was fitted, saved under `output_dir` when given) and the fit's info for results.json (None
    without a fitting step). Under DDP rank 0 fits once on the whole subset and broadcasts the BLS."""
    if job.fitting is None:
        return job.cam, None
    fitted = None
    if ranks.is_zero:
        bls, info = job.fitting(job.model.net, job.datamodule, device, output_dir)
        fitted = to_cpu((bls.to("cpu"), info)) if ranks.distributed else (bls, info)
    bls, info = ranks.broadcast(fitted)
    bls.to(device)
    info.pop("indices")  # which images were fitted on: the job's subset, saved as subset_ids.txt
    metrics = {f"bls/{key}": float(info[key]) for key in ("fit_s", "extract_s", "n", "d", "C")}
    for logger in job.loggers if ranks.is_zero else ():
        logger.log_metrics(metrics, step=step)
    if ranks.is_zero:
            print(f"BLS fitted on n={info['n']} images, d={info['d']} ({'+'.join(info['stages'])}), C={info['C']} in "
              f"{info['fit_s']:.2f} s (features {info['extract_s']:.2f} s)")
    return CamSpec(job.cam.name, job.cam.target_layers, {**job.cam.options, "bls": bls}), info


def build_evaluation(cfg: DictConfig, job: JobInputs, cam: CamSpec, ranks: Ranks = Ranks(),
                     classifier: dict | None = None) -> CamEvaluation:
    """The `eval` group's CamEvaluation of `cam` on the job's net, with the dataset's protocol; it checkpoints
    into (and resumes from) this rank's file in the job dir (`eval.checkpoint_every`), for the classifier of
    identity `classifier` only (`src.jobs.identity`)."""
    datamodule = job.datamodule
    evaluation = hydra.utils.instantiate(cfg.eval, _partial_=True)  # objects go in after: Hydra would convert them
    try:
        return evaluation(net=job.model.net, cam=cam, num_classes=datamodule.num_classes,
                          seed_background=datamodule.seed_background, ignore_index=datamodule.ignore_index,
                          metric_names=datamodule.metrics,
                          checkpoint_file=str(checkpoint_file(cfg.paths.output_dir, ranks.rank, ranks.world_size)),
                          checkpoint_tag=config_fingerprint(cfg), checkpoint_classifier=classifier,
                          scoremap_dir=_scoremap_dir(cfg))
    except ValueError as error:
        raise ConfigError(error.args[0]) from error


def _scoremap_dir(cfg: DictConfig) -> str | None:
    """Where the evaluation writes wsolevaluation's score maps (`export.scoremaps=true`), else None."""
    export = cfg.get("export") or {}
    return str(export.get("scoremap_dir")) if export.get("scoremaps") else None


def evaluation_loader(job: JobInputs, evaluation: CamEvaluation, ranks: Ranks = Ranks()):
    """This rank's share of the evaluation split, after the batches a resumed evaluation already scored."""
    return sharded_loader(job.datamodule.test_dataloader(), ranks.world_size, ranks.rank, evaluation.batches_done)


def build_export(cfg: DictConfig) -> SeedExport:
    """The `export` group's SeedExport (`export.seeds` switches it on)."""
    return hydra.utils.instantiate(cfg.export)


def instantiate_datamodule(data_cfg: DictConfig | dict) -> ProportionDataModule:
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
    """Instantiate every `_target_` entry of a config group mapping (callbacks)."""
    return [hydra.utils.instantiate(entry) for entry in (group or {}).values() if entry and "_target_" in entry]


def finish_loggers(loggers: list[Logger]) -> None:
    """Close every logger's run, so that jobs of a multirun never share a W&B run (even after a failure)."""
    for logger in loggers:
        logger.finalize("success")
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()
