"""`python -m src.ddp_rank <config.yaml>`: one rank > 0 of a DDP job, started by the job's rank 0
(`src.jobs.distributed`) with the job's resolved config and the rank in `LOCAL_RANK`; not meant to be run by hand."""
from __future__ import annotations

import os
import sys

from omegaconf import OmegaConf

from src.run import run_job

if __name__ == "__main__":
    if len(sys.argv) != 2 or "LOCAL_RANK" not in os.environ:
        print("error: usage: LOCAL_RANK=<r> ... python -m src.ddp_rank <job dir>/.ddp/config.yaml "
              "(started by a DDP job's rank 0)", file=sys.stderr)
        sys.exit(2)
    run_job(OmegaConf.load(sys.argv[1]))
