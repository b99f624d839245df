"""The SLURM launcher's schema, extended with the srun options a DDP job needs (`srun_args`, e.g.
`--kill-on-bad-exit=1`: a rank that fails ends its job's other tasks at once instead of leaving them waiting in a
collective). hydra-submitit-launcher's `SlurmQueueConf` has no such field, though submitit takes one; registered
here as `hydra/launcher=submitit_slurm_srun`, which conf/hydra/launcher/slurm.yaml extends. Importing `src.run`
registers it (the submitted jobs unpickle `src.run.main`, so the nodes have it too).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

try:
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
except ImportError:  # the [slurm] extra is not installed: `hydra/launcher=slurm` then fails to compose, as before
    SlurmQueueConf = None

SCHEMA_NAME = "submitit_slurm_srun"

if SlurmQueueConf is not None:

    @dataclass
    class SlurmSrunQueueConf(SlurmQueueConf):
        """`SlurmQueueConf` + `srun_args`: extra arguments of the `srun` that starts the job's tasks."""

        srun_args: list[str] = field(default_factory=list)

    ConfigStore.instance().store(group="hydra/launcher", name=SCHEMA_NAME, node=SlurmSrunQueueConf,
                                 provider="broadcam")
