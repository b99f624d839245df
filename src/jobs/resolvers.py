"""OmegaConf resolvers the configs use (`${safe_dirname:…}`, `${named_or:…}`, `${job_dirname:…}`); registered on
import by `src.run` and the tests."""
from __future__ import annotations

import hashlib
import re

from omegaconf import OmegaConf

from src.reporting.results import safe_dirname


def named_or(name, fallback: str) -> str:
    """`name` when set (a named sweep keeps one stable folder, so a re-run resumes it), else `fallback`."""
    return safe_dirname(name) if name not in (None, "", "None", "null") else fallback


def job_dirname(override_dirname) -> str:
    """A sweep job's folder name from its overrides alone (Hydra's `override_dirname`: the job's `key=value`
    overrides, sorted, resume flags excluded), never from its position in the grid (`hydra.job.num`), so a job
    keeps its folder when the grid grows and a re-run finds its results.

    Filesystem-safe (`safe_dirname`), and unique: when making it safe changed the text (a '/' or '[' became '_',
    or a long name was cut) a hash of the exact overrides is appended, so two different jobs never share a
    folder. A path value is shown by its last part (`data.root=/data/VOC2012` → `data.root=VOC2012`, hashed as
    above), so the grid's own keys stay readable. A job with no overrides of its own gets `default`."""
    text = str(override_dirname or "")
    name = safe_dirname(re.sub(r"=[^,=]*/", "=", text))  # a path value by its last part: readable, hash-unique
    if text and name != text:  # lossy: tell apart the jobs it could have merged by their exact overrides
        name = f"{name[:MAX_BEFORE_HASH]}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return name


MAX_BEFORE_HASH = 110  # safe_dirname's cap (120) minus the '_' and 8 hex digits


for _name, _resolver in {"safe_dirname": safe_dirname, "named_or": named_or, "job_dirname": job_dirname}.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
