"""OmegaConf resolvers the configs use (`${safe_dirname:…}`, `${named_or:…}`, `${job_dirname:…}`, `${not_cpu:…}`);
registered on import by `src.run` and the tests."""
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

    Filesystem-safe: a path value is shown by its last part (`data.root=/data/VOC2012` → `data.root=VOC2012`),
    characters other than `A-Za-z0-9=,.+_-` become '_', and names are cut to `MAX_SHOWN` characters. Unique:
    whenever any of that changed the text, a hash of the exact overrides is appended, so two different jobs
    never share a folder. A job with no overrides of its own gets `default`."""
    text = str(override_dirname or "")
    if not text:
        return "default"
    shown = re.sub(r"[^A-Za-z0-9=,.+_-]+", "_", re.sub(r"=[^,=]*/", "=", text)).strip("_")
    if shown != text or len(shown) > MAX_SHOWN:  # lossy: tell apart the jobs it could have merged by their exact overrides
        shown = f"{shown[:MAX_SHOWN]}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return shown


MAX_SHOWN = 200  # + '_' + 8 hex digits stays under the usual 255-byte limit of a file name


def not_cpu(accelerator) -> bool:
    """False for `accelerator=cpu` (SyncBatchNorm, for one, works on GPU modules only), else True."""
    return str(accelerator) != "cpu"


_RESOLVERS = {"safe_dirname": safe_dirname, "named_or": named_or, "job_dirname": job_dirname, "not_cpu": not_cpu}
for _name, _resolver in _RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
