"""The evaluation split shared among DDP ranks without padding: every image is scored exactly once.

Lightning's default `DistributedSampler` pads the split to a multiple of the world size by repeating images, and
summed metric states then count those images twice. `ShardSampler` gives rank r the r-th contiguous share
(sizes differ by at most one, the larger shares first: rank 0 starts at image 0 and has one whenever the split
does, so the figure shows the same images as one process; a rank may get none, e.g. 3 ranks on 2 images);
being a `DistributedSampler`, Lightning keeps it as it is. `start` skips a rank's first images (a resumed
evaluation, `src.evaluation.checkpoint`).
"""
from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ShardSampler(DistributedSampler):
    """Indices `[lo + start, hi)` of rank `rank`'s contiguous share of `len(dataset)` indices, in order."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, start: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank} must be in [0, {num_replicas})")
        # Not super().__init__: it asks torch.distributed for the world even when told it, and sets padded sizes.
        self.dataset, self.num_replicas, self.rank = dataset, int(num_replicas), int(rank)
        self.shuffle, self.drop_last, self.epoch, self.seed = False, False, 0, 0
        base, extra = divmod(len(dataset), self.num_replicas)  # the first `extra` ranks take one more
        self.lo = self.rank * base + min(self.rank, extra)
        self.hi = self.lo + base + int(self.rank < extra)
        self.start = min(max(int(start), 0), self.hi - self.lo)
        self.num_samples = self.total_size = self.hi - self.lo - self.start

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.lo + self.start, self.hi))

    def __len__(self) -> int:
        return self.num_samples


def sharded_loader(loader: DataLoader, num_replicas: int = 1, rank: int = 0, start_batch: int = 0) -> DataLoader:
    """`loader` (unshuffled, batched) over rank `rank`'s share only, from its batch `start_batch` on; same batch
    size, collate function and workers."""
    sampler = ShardSampler(loader.dataset, num_replicas, rank, start=start_batch * int(loader.batch_size))
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=False,
                      persistent_workers=loader.persistent_workers, worker_init_fn=loader.worker_init_fn)
