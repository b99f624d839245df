"""A Trainer fit small enough to watch Lightning's own machinery: a linear model on 12 random points, 3 batches
an epoch, one logged value a step (what makes Lightning flatten a pytree)."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

BATCHES_PER_EPOCH = 3


class LinearRegression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.fixture
def fit_tiny():
    """`fit_tiny(callbacks=[...], max_steps=7)`: fit the linear model with those Trainer arguments on the CPU;
    returns the Trainer."""
    def fit(**trainer_kwargs) -> pl.Trainer:
        generator = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(4 * BATCHES_PER_EPOCH, 4, generator=generator),
                             torch.randn(4 * BATCHES_PER_EPOCH, 1, generator=generator))
        trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_model_summary=False, **trainer_kwargs)
        trainer.fit(LinearRegression(), DataLoader(data, batch_size=4))
        return trainer
    return fit
