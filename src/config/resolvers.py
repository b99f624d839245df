"""OmegaConf resolvers the configs use (`${safe_dirname:…}`, `${named_or:…}`, `${job_dirname:…}`, `${not_cpu:…}`,
`${folder_name_excludes:}`);
registered on import by `src.run` and the tests."""
from __future__ import annotations

import re

from omegaconf import OmegaConf


from src.store import result_neutral
from src.store.keyed import safe_dirname, safe_name


def named_or(name, fallback: str) -> str:
    """`name` when set (a named sweep keeps one stable folder, so a re-run resumes it), else `fallback`."""
    return safe_dirname(name) if name not in (None, "", "None", "null") else fallback


def job_dirname(override_dirname) -> str:
    """A sweep job's folder name from its overrides alone (Hydra's `override_dirname`: the job's `key=value`
    overrides, sorted, result-neutral keys excluded: `src.store.result_neutral`), never from its position in the
    grid (`hydra.job.num`), so a job keeps its folder when the grid grows and a re-run finds its results.

    A path value is shown by its last part (`data.root=/data/VOC2012` → `data.root=VOC2012`), the rest by
    `safe_name` (cut to MAX_SHOWN characters, plus a digest of the exact overrides whenever the name is not them
    verbatim, so two different jobs never share a folder). A job with no overrides of its own gets `default`."""
    text = str(override_dirname or "")
    return safe_name(text, MAX_SHOWN, shown=re.sub(r"=[^,=]*/", "=", text)) if text else "default"


MAX_SHOWN = 200  # + '_' + 8 hex digits stays under the usual 255-byte limit of a file name


def folder_name_excludes(*, _root_) -> list[str]:
    """`hydra.job.config.override_dirname.exclude_keys`: what changes no result (`src.store.result_neutral`)."""
    return result_neutral.folder_name_excludes(_root_.get("paths") or {})


def not_cpu(accelerator) -> bool:
    """False for `accelerator=cpu` (SyncBatchNorm, for one, works on GPU modules only), else True."""
    return str(accelerator) != "cpu"


_RESOLVERS = {"safe_dirname": safe_dirname, "named_or": named_or, "job_dirname": job_dirname, "not_cpu": not_cpu,
              "folder_name_excludes": folder_name_excludes}
for _name, _resolver in _RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
