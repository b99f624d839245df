"""`python -m src.pretrain`: pretrain a backbone once on the disjoint synthetic world (conf/pretrain.yaml)
and cache its weights under `<paths.cache_dir>/pretrained/<name>-<hash>/`; a job then selects them with
`backbone.weights=<name>`. Rerunning a finished config does nothing; an interrupted one resumes."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from src.jobs.build import build_pretraining
from src.jobs.pretraining import pretrain


@hydra.main(version_base="1.3", config_path="../conf", config_name="pretrain")
def main(cfg: DictConfig) -> None:
    entry = pretrain(build_pretraining(cfg))
    print(f"backbone.weights={cfg.name} -> {entry}")


if __name__ == "__main__":
    main()
