"""What changes no result, declared once. Read by the job folder names (`conf/hydra/default.yaml`, through the
`${folder_name_excludes:}` resolver), the finished-job fingerprint (`src.store.finished_jobs`), the classifier
key (`src.store.classifiers`), the pretrained-weights key (`src.store.pretrained`) and the report's pooling of
jobs (`src.reporting.report`).

A key listed here may change where a job writes, how it resumes or how fast it runs; if it could change a
number in `results.json`, a trained network or pretrained weights, it does not belong here."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

# Top-level keys that say where a job writes, how it resumes, which pass of a sweep it is: no result of the job.
RUN_KEYS = ("paths", "overwrite", "force_retrain", "sweep_name", "job", "train_checkpoint_every")
# What a job leaves beside its numbers (loggers, callbacks, exported seeds): a change reruns the job, for what it
# leaves (so these stay in its fingerprint), but a report pools jobs that differ only here.
OUTPUT_KEYS = ("logger", "callbacks", "export")
# Keys of `data` that change how a job evaluates or loads its data, not the classifier it trains.
EVALUATION_DATA_KEYS = ("eval_split", "eval_batch_size", "num_workers", "pin_memory", "num_val", "num_test",
                        "on_corrupt")
# Keys of a generated dataset's `data` (the pretraining world) that say only where its images are cached.
GENERATED_DATA_KEYS = ("root",)
# The only `trainer` keys that change what a classifier learns (devices do not: `data.batch_size` is global).
TRAINING_TRAINER_KEYS = ("accumulate_grad_batches", "gradient_clip_val", "max_epochs", "max_steps", "precision")


def without(mapping: Mapping, keys: Iterable[str]) -> dict:
    keys = set(keys)
    return {k: v for k, v in mapping.items() if k not in keys}


def fingerprint_fields(config: Mapping) -> dict:
    """The part of a job's config (unresolved, as a plain dict) that defines its results."""
    return without(config, RUN_KEYS)


def classifier_fields(resolved: Mapping) -> dict:
    """The part of a job's resolved config that determines its trained classifier."""
    trainer = resolved.get("trainer") or {}
    return {"data": without(resolved["data"], EVALUATION_DATA_KEYS), "backbone": resolved["backbone"],
            "proportion": float(resolved["proportion"]), "seed": int(resolved["seed"]), "train": resolved["train"],
            "trainer": {k: trainer[k] for k in sorted(TRAINING_TRAINER_KEYS) if k in trainer}}


def pretraining_fields(resolved: Mapping) -> dict:
    """The part of a pretraining config (`conf/pretrain.yaml`, resolved) that determines its weights."""
    return {"backbone": resolved["backbone"], "train": resolved["train"],
            "data": without(resolved["data"], (*EVALUATION_DATA_KEYS, *GENERATED_DATA_KEYS)),
            "max_steps": int(resolved["trainer"]["max_steps"]), "seed": int(resolved["seed"])}


def folder_name_excludes(paths: Iterable[str] = ()) -> list[str]:
    """The overrides a sweep job's folder name leaves out (Hydra's `override_dirname.exclude_keys`): the run keys,
    a `paths` group's every key (`paths`: its key names), and Hydra's own output folders."""
    expanded = [f"paths.{key}" for key in paths] if "paths" in RUN_KEYS else []
    return ["hydra.sweep.dir", "hydra.run.dir", *expanded, *(k for k in RUN_KEYS if k != "paths")]
