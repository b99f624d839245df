"""The SLURM launcher configs: resources follow the trainer (one task per device), in the gpus-per-node and the
gres forms; a failing task ends its job's others (srun --kill-on-bad-exit); Hydra loads them without its
schema-name warning."""
from __future__ import annotations

import warnings

import pytest
from hydra import compose, initialize_config_dir

import src.config.launcher_schema  # noqa: F401  (as `python -m src.run` does: the schema with srun_args)
from tests.conftest import REPO


def launcher(overrides: list[str]):
    """`hydra.launcher` as a sweep with these overrides would build it, and the warnings Hydra raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
    return cfg.hydra.launcher, [str(w.message) for w in caught]


@pytest.mark.parametrize("devices", [2, 4])
def test_ddp_on_slurm_gets_one_task_per_gpu(devices):
    conf, _ = launcher(["hydra/launcher=slurm", "trainer=ddp", f"trainer.devices={devices}"])
    assert conf.gpus_per_node == devices and conf.tasks_per_node == devices


def test_single_gpu_job_gets_one_gpu_one_task():
    conf, _ = launcher(["hydra/launcher=slurm", "trainer=gpu"])
    assert (conf.gpus_per_node, conf.tasks_per_node) == (1, 1)


def test_cpu_launcher_asks_for_no_gpu_and_one_task_per_cpu_rank():
    conf, _ = launcher(["hydra/launcher=slurm_cpu"])
    assert (conf.gpus_per_node, conf.tasks_per_node, conf.cpus_per_task) == (0, 1, 1)
    conf, _ = launcher(["hydra/launcher=slurm_cpu", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
    assert (conf.gpus_per_node, conf.tasks_per_node) == (0, 2)


@pytest.mark.parametrize("name", ["slurm", "slurm_cpu", "local"])
def test_launcher_configs_extend_the_plugin_schema_without_warning(name):
    conf, warned = launcher([f"hydra/launcher={name}"])
    assert conf._target_.startswith("hydra_plugins.hydra_submitit_launcher.")
    assert "signal_delay_s" in conf or name == "local"  # the schema's fields came with it
    assert not [w for w in warned if "ConfigStore schema" in w], warned


@pytest.mark.parametrize("devices", [1, 4])
def test_gres_form_keeps_one_task_per_device(devices):
    # README's gres recipe: the GPUs as a gres, gpus_per_node unset; tasks per node still follow trainer.devices.
    trainer = ["trainer=gpu"] if devices == 1 else ["trainer=ddp", f"trainer.devices={devices}"]
    conf, _ = launcher(["hydra/launcher=slurm", *trainer, f"hydra.launcher.gres=gpu:a100:{devices}",
                        "hydra.launcher.gpus_per_node=null"])
    assert (conf.gres, conf.gpus_per_node, conf.tasks_per_node) == (f"gpu:a100:{devices}", None, devices)


@pytest.mark.parametrize("name", ["slurm", "slurm_cpu"])
def test_a_failing_task_ends_the_jobs_other_tasks(name):
    conf, _ = launcher([f"hydra/launcher={name}"])
    assert "--kill-on-bad-exit=1" in conf.srun_args
    more = 'hydra.launcher.srun_args=["--kill-on-bad-exit=1","--cpu-bind=none"]'
    conf, _ = launcher([f"hydra/launcher={name}", more])
    assert list(conf.srun_args) == ["--kill-on-bad-exit=1", "--cpu-bind=none"]
