"""Helpers for tests that compose the real config or run `python -m src.run` in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

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
