"""The evaluation split shared among ranks: every image exactly once, in order, no padding."""
from __future__ import annotations

import pytest
from torch.utils.data import DataLoader, DistributedSampler

from src.evaluation.sharding import ShardSampler, sharded_loader


@pytest.mark.parametrize("n", [0, 1, 5, 7, 16])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_cover_the_split_once_without_padding(n, world):
    shards = [list(ShardSampler(range(n), world, rank)) for rank in range(world)]
    assert sum(shards, []) == list(range(n))  # concatenated in rank order: the split, each index once
    assert [len(ShardSampler(range(n), world, r)) for r in range(world)] == [len(s) for s in shards]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(s) for s in shards] == sorted(map(len, shards), reverse=True)  # rank 0 has an image if any


def test_lightning_keeps_the_sampler_and_a_resume_skips_batches():
    sampler = ShardSampler(range(7), 2, 1, start=1)  # rank 1's share: [4, 5, 6]
    assert isinstance(sampler, DistributedSampler)  # Lightning replaces any other sampler by a padding one
    assert list(sampler) == [5, 6]
    loader = sharded_loader(DataLoader(list(range(10)), batch_size=3), num_replicas=2, rank=0, start_batch=1)
    assert [batch.tolist() for batch in loader] == [[3, 4]]
    with pytest.raises(ValueError, match="rank=2"):
        ShardSampler(range(4), 2, 2)
