"""Every config group composes with every option, and the top-level keys users sweep exist."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from src.config.checks import CONF_DIR, ConfigError, check_group_overrides, group_options
from src.reporting.results import read_results
from tests.helpers import compose_config, run_cli

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


# Every CAM option the README documents, with a non-default value: a plain override (no `+`) must reach the job.
CAM_OPTIONS = {"scales": ("[1.0,0.5]", [1.0, 0.5]), "flip": ("true", True), "fusion": ("max", "max"),
               "batch_size": ("4", 4)}


@pytest.mark.parametrize("cam", group_options("cam"))
@pytest.mark.parametrize("option", sorted(CAM_OPTIONS))
def test_every_documented_cam_option_is_declared_with_its_default(cam, option):
    value, expected = CAM_OPTIONS[option]
    cfg = compose_config([f"cam={cam}", f"cam.options.{option}={value}"])
    assert OmegaConf.to_container(cfg.cam.options)[option] == expected


def test_base_files_are_shared_defaults_not_choices():
    assert "_base" not in group_options("cam")
    with pytest.raises(ConfigError, match="cam='_base'"):
        check_group_overrides(["cam=_base"])


@pytest.mark.slow
def test_cam_options_work_on_the_command_line_without_plus(tiny_overrides, tmp_path):
    overrides = [f"cam.options.{name}={value}" for name, (value, _) in CAM_OPTIONS.items()]
    result = run_cli(tiny_overrides + ["cam=gradcam", "data.num_val=4", *overrides])
    assert result.returncode == 0, result.stderr[-2000:]
    options = read_results(tmp_path / "job")["config"]["cam"]["options"]
    assert options == {name: expected for name, (_, expected) in CAM_OPTIONS.items()}


def test_the_renamed_stage_key_names_its_new_form():
    with pytest.raises(ConfigError, match=r"stage= is renamed; expected job=cams .* or job=classifiers"):
        check_group_overrides(["-m", "stage=classifiers", "cam=cam"])
