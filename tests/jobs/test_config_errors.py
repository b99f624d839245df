"""`ConfigError` only where the config is wrong (issue 23): a bad value is one line naming its key (exit 2), a bug
anywhere else keeps its own type and its traceback (exit 1), however deep in the job's setup it happens."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from src.config.checks import ConfigError
from src.data.synthetic import SyntheticDataModule
from src.run import run_job
from tests.conftest import REPO
from tests.helpers import compose_config, run_cli

A_BUG = "a deliberate bug in the datamodule's setup"


def broken_setup(self, stage=None):
    raise KeyError(A_BUG)  # the kind of error the old setup turned into a ConfigError


def test_a_bug_in_the_datamodule_setup_is_not_a_config_error(tiny_overrides, tmp_path, monkeypatch):
    monkeypatch.setattr(SyntheticDataModule, "setup", broken_setup)
    with pytest.raises(KeyError, match=A_BUG) as caught:
        run_job(compose_config(tiny_overrides))
    assert not isinstance(caught.value, ConfigError)
    assert not (tmp_path / "job" / "results.json").exists()


@pytest.mark.parametrize(("override", "key"), [
    ("train.optimizer=adam", "train.optimizer"), ("export.format=png", "export.format"),
    ("backbone.output_stride=7", "backbone.output_stride"), ("job=cam", "job"),
    ("data._target_=src.data.nowhere.DataModule", "data._target_"), ("eval.checkpoint_every=-1", "eval.checkpoint_every"),
])
def test_bad_values_are_config_errors_naming_their_key(tiny_overrides, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_job(compose_config(tiny_overrides + override.split()))


@pytest.mark.slow
def test_on_the_command_line_a_bug_keeps_its_traceback_and_a_bad_value_is_one_line(tiny_overrides, tmp_path):
    patched = (f"import sys, runpy, src.data.synthetic as s; from {__name__} import broken_setup; "
               "s.SyntheticDataModule.setup = broken_setup; sys.argv = ['src.run', *sys.argv[1:]]; "
               "runpy.run_module('src.run', run_name='__main__')")
    bug = subprocess.run([sys.executable, "-c", patched, *tiny_overrides], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "WANDB_MODE": "disabled"}, timeout=600)
    assert bug.returncode == 1 and "Traceback" in bug.stderr and A_BUG in bug.stderr
    assert "error: " + A_BUG not in bug.stderr  # not reported as bad input
    bad = run_cli([*tiny_overrides, "train.optimizer=adam"])
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: train.optimizer='adam' is unknown")
