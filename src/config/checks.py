"""Checks of user input before a job does any work (`src.run`, `src.jobs.build`): one clear line naming the key
and the allowed values."""
from __future__ import annotations

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from src.config.compose import CONF_DIR

JOB_KINDS = ("cams", "classifiers")  # `job`: the whole job, or its classifier only (a sweep's first pass)


# Keys renamed in this version: their old form gets this line instead of Hydra's "Could not override".
RENAMED = {"stage": "job=cams (was stage=all) or job=classifiers (was stage=classifiers)"}


class ConfigError(ValueError):
    """A configuration value a job cannot run with; its message names the key and what was expected."""


def group_options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """Names of the options of config group `group` (yaml files under conf/<group>/; `_base`-like files whose
    name starts with `_` are shared defaults, not options)."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml") if not p.stem.startswith("_"))


def check_group_overrides(args: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Raise ConfigError for a command-line choice of a config group that has no yaml file.

    Sweeps are checked value by value (`cam=cam,foo` names `foo`). Hydra's own groups are left to Hydra.
    """
    candidates = [a for a in args if not a.startswith("-") and "=" in a]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except HydraException:
        return  # malformed overrides: Hydra reports those itself
    for override in overrides:
        group = override.key_or_group
        if group.lstrip("+~") in RENAMED:
            raise ConfigError(f"{group.lstrip('+~')}= is renamed; expected {RENAMED[group.lstrip('+~')]}")
        if "@" in group or group.startswith("hydra") or not (conf_dir / group).is_dir():
            continue
        if override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        else:
            values = [override.value()]
        allowed = group_options(group, conf_dir)
        for value in values:
            if value is not None and str(value) not in allowed:
                raise ConfigError(f"{group}={value!r} is not a known {group}; expected one of {allowed}")
