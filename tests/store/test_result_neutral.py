"""One declaration of what changes no result (`src.store.result_neutral`), read by the job folder names, the
finished-job fingerprint, the classifier key and the report: a key it lists changes none of them, a key it does
not list changes the fingerprint."""
from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.store import result_neutral
from src.store.finished_jobs import config_fingerprint
from tests.conftest import REPO, TINY_JOB
from tests.helpers import job_settings_of

RUN_OVERRIDES = {"overwrite": "overwrite=true", "force_retrain": "force_retrain=true", "sweep_name": "sweep_name=x",
                 "job": "job=classifiers", "train_checkpoint_every": "train_checkpoint_every=7",
                 "paths": "paths.output_dir=/elsewhere/job"}


def test_every_run_key_has_a_case_here():
    assert set(RUN_OVERRIDES) == set(result_neutral.RUN_KEYS)


def test_run_keys_change_neither_the_fingerprint_nor_the_classifier_key(cache_dir):
    base = job_settings_of(TINY_JOB + [f"paths.cache_dir={cache_dir}"])
    for key, override in RUN_OVERRIDES.items():
        other = job_settings_of(TINY_JOB + [f"paths.cache_dir={cache_dir}", override])
        assert (other.fingerprint, other.classifier_key) == (base.fingerprint, base.classifier_key), key


def test_evaluation_keys_change_the_fingerprint_but_not_the_classifier(cache_dir):
    base = job_settings_of(TINY_JOB + [f"paths.cache_dir={cache_dir}"])
    for override in ("data.eval_batch_size=3", "data.num_val=9", "data.num_workers=1", "cam=gradcam",
                     "export.seeds=true"):
        other = job_settings_of(TINY_JOB + [f"paths.cache_dir={cache_dir}", override])
        assert other.classifier_key == base.classifier_key, override
        assert other.fingerprint != base.fingerprint, override  # a result (or what the job leaves) changes
    for override in ("trainer.max_steps=4", "train.lr=0.1", "data.image_size=48", "seed=5"):
        other = job_settings_of(TINY_JOB + [f"paths.cache_dir={cache_dir}", override])
        assert other.classifier_key != base.classifier_key, override


def test_job_folder_names_leave_out_the_run_keys():
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["paths.output_dir=/tmp/x"], return_hydra_config=True)
    excluded = OmegaConf.to_container(cfg.hydra.job.config.override_dirname, resolve=True)["exclude_keys"]
    assert {"overwrite", "force_retrain", "sweep_name", "job", "train_checkpoint_every"} <= set(excluded)
    assert {f"paths.{key}" for key in cfg.paths} <= set(excluded)  # every key of the paths group
    assert "proportion" not in excluded and "cam" not in excluded


def test_fingerprint_ignores_exactly_the_run_keys():
    config = {"proportion": 5, "cam": {"name": "cam"}, **{key: "anything" for key in result_neutral.RUN_KEYS}}
    assert config_fingerprint(config) == config_fingerprint({"proportion": 5, "cam": {"name": "cam"}})
    assert config_fingerprint({**config, "proportion": 6}) != config_fingerprint(config)
