"""What a dataset holds beyond its config, for the classifier cache key: a datamodule class whose files a user
edits in place (data=folder) declares `content_digest(data_config) -> str`; the paper datasets are fixed
releases and declare none."""
from __future__ import annotations

from collections.abc import Mapping

from hydra.utils import get_class


def data_content_digest(data_config: Mapping) -> str | None:
    """The digest of the configured dataset's content (`<datamodule class>.content_digest`), or None when the
    class declares none."""
    digest = getattr(get_class(str(data_config["_target_"])), "content_digest", None)
    return None if digest is None else digest(data_config)
