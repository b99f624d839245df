"""The training bar counts what the budget counts: optimisation steps against `trainer.max_steps`
("step 440/1,000", elapsed • left), or epochs where the budget is in epochs (`max_steps=-1`, `max_epochs` set).

Lightning's RichProgressBar counts batches of the current epoch and names the epoch against `max_epochs - 1`:
with a step budget (`max_epochs=-1`) it reads "Epoch 6/-2 … 44/62" and restarts at every epoch, so neither the
position nor the time left says how far the job is. Here the training task lives across epochs, its total is
`max_steps` and its position `trainer.global_step` (optimiser steps: with gradient accumulation, every k-th batch),
so Rich's time left is the job's. Validation and test (the CAM pass) bars keep Lightning's "Testing … i/N".
"""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import BatchesProcessedColumn
from rich.text import Text


def counts_steps(trainer: pl.Trainer) -> bool:
    """Whether the training budget is in optimisation steps (it is, whenever `max_steps` is set)."""
    return trainer.max_steps > 0


class StepProgressBar(RichProgressBar):
    """RichProgressBar whose training bar shows "step 440/1,000" (a step budget) or "epoch 3/10" with the epoch's
    batches (an epoch budget); every bar keeps Lightning's elapsed • left time and speed columns."""

    def configure_columns(self, trainer: pl.Trainer) -> list:
        columns = super().configure_columns(trainer)
        return [_BatchesUnlessInDescription(column.style) if isinstance(column, BatchesProcessedColumn) else column
                for column in columns]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not counts_steps(trainer):
            return super().on_train_epoch_start(trainer, pl_module)
        if self.is_enabled and self.progress is not None and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()  # one task for the whole budget: not reset per epoch
        self.refresh()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not counts_steps(trainer):
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.is_disabled or self.progress is None:
            return
        if self.train_progress_bar_id is None:  # resumed mid-epoch
            self._initialize_train_progress_bar_id()
        self.progress.update(self.train_progress_bar_id, completed=trainer.global_step,
                             description=self._styled_train_description())
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def _initialize_train_progress_bar_id(self) -> None:
        if not counts_steps(self.trainer):
            return super()._initialize_train_progress_bar_id()
        # `completed` given at creation, not by an update: a resumed run's earlier steps are no speed sample
        self.train_progress_bar_id = self.progress.add_task(
            self._styled_train_description(), total=self.trainer.max_steps, completed=self.trainer.global_step,
            count_in_description=True)

    def _styled_train_description(self) -> str:
        """The description in the theme's style, as Lightning's `_add_task` writes it."""
        description = self._get_train_description(self.trainer.current_epoch)
        return f"[{self.theme.description}]{description}" if self.theme.description else description

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if counts_steps(trainer):
            return f"step {trainer.global_step:,}/{trainer.max_steps:,}"
        budget = f"/{trainer.max_epochs:,}" if trainer.max_epochs is not None and trainer.max_epochs > 0 else ""
        return f"epoch {current_epoch + 1:,}{budget}"  # counted from 1, as a person counts them


class _BatchesUnlessInDescription(BatchesProcessedColumn):
    """Lightning's "i/N" column, left empty for a task whose description already says "step i/N"."""

    def render(self, task: Any) -> Text:
        return Text() if task.fields.get("count_in_description") else super().render(task)
