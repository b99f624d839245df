"""Helpers for tests that compose the real config or run `python -m src.run` in a subprocess."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import nn
from torchvision.models.resnet import BasicBlock

import src.config.resolvers  # noqa: F401  (the configs' resolvers: composing the config resolves Hydra's node)

from tests.conftest import REPO


def compose_config(overrides: list[str]) -> DictConfig:
    """The job config as `python -m src.run <overrides>` would see it (hydra keys dropped)."""
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=[o for o in overrides if not o.startswith("hydra.")])


def run_cli(args: list[str], module: str = "src.run", timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m <module> <args>` from the repo root with W&B disabled."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


TIMED_PHASES = ("setup_s", "train_s", "cam_s", "eval_s", "eval_loader_s", "write_s")


def assert_timings_add_up(results: dict, tolerance: float = 0.02, expected: dict | None = None) -> None:
    """A job's `timings` hold its phases and their sum is `total_s` within `tolerance` (issue 15: no second
    of the job left out of a phase). `PhaseClock` makes the sum hold by construction, so on its own this only
    checks the shape; with `expected` ({phase: seconds}, from a fake clock that advances only where the test says,
    `tests/jobs/test_timings.py`) each phase must be exactly what its stage spent, so time charged to the wrong
    phase, counted twice or lost fails."""
    timings = dict(results["timings"])
    total = timings.pop("total_s")
    assert set(TIMED_PHASES) <= set(timings), sorted(timings)
    assert all(seconds >= 0 for seconds in timings.values()), timings
    assert abs(sum(timings.values()) - total) <= tolerance * total, (sum(timings.values()), total, timings)
    if expected is not None:
        assert timings == pytest.approx(expected, abs=1e-3), timings
        assert total == pytest.approx(sum(expected.values()), abs=1e-3), (total, expected)


def flat(pairs: list[list[float]]) -> list[float]:
    """A curve of `[x, y]` pairs as one list (pytest.approx compares flat sequences only)."""
    return [value for pair in pairs for value in pair]


def load_script(name: str):
    """`scripts/<name>.py` imported as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_resnet(num_classes: int, seed: int = 0, output_stride: int = 16) -> nn.Module:
    """A fresh random `resnet18_small` in eval mode: torchvision's ResNet-18 layout and stage names at a quarter of
    its width and a 3×3 stem, so CAM and BLS tests compute in milliseconds. Its residual branches start from
    torchvision's default init (bn2 weights 1, not the zeros the framework trains from): a block whose branch
    gave zeros would pass activations and gradients through unchanged, and what a test checks on it would be
    half a network."""
    from src.models import build_backbone

    torch.manual_seed(seed)
    net = build_backbone("resnet18_small", num_classes, None, output_stride)
    for block in net.modules():
        if isinstance(block, BasicBlock):
            nn.init.ones_(block.bn2.weight)
    return net.eval()


def stem(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """A ResNet's input to layer1 (torchvision's has a max-pool after its stem, resnet18_small has none)."""
    x = net.relu(net.bn1(net.conv1(images)))
    return net.maxpool(x) if hasattr(net, "maxpool") else x


def synthetic_datamodule(root, setup: bool = True, **options):
    """The tiny synthetic datamodule of TINY_JOB (64 px, 120 training and 16 evaluation images) under `root`,
    rendered and set up unless `setup=False`; `options` override its arguments."""
    from src.data import SyntheticDataModule

    dm = SyntheticDataModule(root=str(root), **{"image_size": 64, "num_train": 120, "num_val": 16, "num_test": 16,
                                                **options})
    if setup:
        dm.prepare_data()
        dm.setup()
    return dm


def job_settings_of(overrides: list[str]):
    """`src.jobs.build.job_settings` of the job config of `overrides` (checked; a placeholder output dir unless
    given: settings never write)."""
    from src.jobs.build import check_config, job_settings

    if not any(o.startswith("paths.output_dir=") for o in overrides):
        overrides = [*overrides, f"paths.output_dir={os.path.join(tempfile.gettempdir(), 'unwritten-job')}"]
    cfg = compose_config(overrides)
    check_config(cfg)
    return job_settings(cfg)


def classifier_key_of(overrides: list[str]) -> str:
    return job_settings_of(overrides).classifier_key
