"""OmegaConf resolvers the configs use; registered on import (by `src.run` and the tests)."""
from __future__ import annotations

import hashlib
import re

from omegaconf import OmegaConf

MAX_DIRNAME = 120


def safe_dirname(text: str) -> str:
    """A job's overrides as one folder name: path separators and odd characters become '_', long names
    are cut and suffixed by a hash so two sweeps' jobs never share a folder."""
    name = re.sub(r"[^A-Za-z0-9=,.+_-]+", "_", str(text)).strip("_") or "default"
    if len(name) > MAX_DIRNAME:
        name = f"{name[:MAX_DIRNAME - 13]}_{hashlib.sha1(name.encode()).hexdigest()[:12]}"
    return name


def named_or(name, fallback: str) -> str:
    """`name` when set (a named sweep keeps one stable folder, so a re-run resumes it), else `fallback`."""
    return safe_dirname(name) if name not in (None, "", "None", "null") else fallback


for _name, _resolver in {"safe_dirname": safe_dirname, "named_or": named_or}.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
