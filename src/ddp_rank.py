"""`python -m src.ddp_rank <config.yaml> [run|pretrain]`: one rank > 0 of a DDP job, started by the job's rank 0
(`src.runtime.ranks`) with the job's resolved config and the rank in `LOCAL_RANK`; `run` is a job of
`src.run` (either kind), `pretrain` the pretraining. Not meant to be run by hand."""
from __future__ import annotations

import os
import sys

from omegaconf import OmegaConf

from src.runtime.logs import log_to_console
from src.runtime.ranks import TASKS

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or "LOCAL_RANK" not in os.environ or sys.argv[2:] not in ([], *[[t] for t in TASKS]):
        print("error: usage: LOCAL_RANK=<r> ... python -m src.ddp_rank <job dir>/.ddp/config.yaml [run|pretrain] "
              "(started by a DDP job's rank 0)", file=sys.stderr)
        sys.exit(2)
    log_to_console()
    cfg = OmegaConf.load(sys.argv[1])
    if sys.argv[2:] == ["pretrain"]:
        from src.jobs.build import build_pretraining
        from src.jobs.pretraining import pretrain

        pretrain(build_pretraining(cfg))
    else:
        from src.run import run_job

        run_job(cfg)
