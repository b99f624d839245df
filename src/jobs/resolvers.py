"""OmegaConf resolvers the configs use (`${safe_dirname:…}`, `${named_or:…}`); registered on import by `src.run`
and the tests."""
from __future__ import annotations

from omegaconf import OmegaConf

from src.reporting.results import safe_dirname


def named_or(name, fallback: str) -> str:
    """`name` when set (a named sweep keeps one stable folder, so a re-run resumes it), else `fallback`."""
    return safe_dirname(name) if name not in (None, "", "None", "null") else fallback


for _name, _resolver in {"safe_dirname": safe_dirname, "named_or": named_or}.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
