"""Every config group composes with every option, and the top-level keys users sweep exist."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from src.config_checks import CONF_DIR, ConfigError, check_group_overrides, group_options
from tests.helpers import compose_config

GROUPS = [d.name for d in CONF_DIR.iterdir() if d.is_dir() and d.name != "hydra"]
CHOICES = [(group, option) for group in GROUPS for option in group_options(group)]


@pytest.mark.parametrize(("group", "option"), CHOICES, ids=[f"{g}={o}" for g, o in CHOICES])
def test_every_group_option_composes(group, option):
    cfg = compose_config([f"{group}={option}"])
    OmegaConf.to_container(cfg.cam)  # the parts every job reads are well-formed
    assert {"proportion", "seed", "task_name"} <= set(cfg)
    assert cfg.cam.name in ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "broadcam")


def test_defaults_are_the_synthetic_cpu_job():
    cfg = compose_config([])
    assert cfg.data._target_.endswith("SyntheticDataModule")
    assert cfg.trainer.accelerator == "cpu"
    assert 0 < cfg.proportion <= 100


@pytest.mark.parametrize("args", [["cam=nope"], ["-m", "cam=cam,nope"], ["backbone=resnet999"]])
def test_unknown_group_choice_names_the_allowed_values(args):
    with pytest.raises(ConfigError, match=r"expected one of \[.*'cam'|expected one of \[.*'resnet18'"):
        check_group_overrides(args)


def test_known_choices_and_plain_keys_pass():
    check_group_overrides(["-m", "cam=cam,gradcam", "backbone=resnet18,resnet50", "proportion=1,2", "seed=3"])
