"""The training bar counts optimisation steps against max_steps across epochs, or epochs for an epoch budget."""
from __future__ import annotations

import io

import pytorch_lightning as pl
from rich.console import Console

from src.runtime.progress import StepProgressBar
from tests.runtime.conftest import BATCHES_PER_EPOCH


class TrainBarProbe(pl.Callback):
    """Reads the training bar after the progress bar has updated it at each batch end."""

    def __init__(self, bar: StepProgressBar) -> None:
        self.bar, self.seen, self.time_left = bar, [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        task = self.bar.train_progress_bar
        self.seen.append((task.description, task.completed, task.total))
        self.time_left.append(task.time_remaining)


def _rendered_train_row(bar: StepProgressBar) -> str:
    """The training bar's line as the terminal shows it (own console: Lightning's global one is left alone)."""
    console = Console(file=io.StringIO(), width=160)
    console.print(bar.progress.make_tasks_table([bar.train_progress_bar]))
    return console.file.getvalue()


def test_step_budget_counts_steps_across_epochs(fit_tiny):
    bar = StepProgressBar()
    probe = TrainBarProbe(bar)
    fit_tiny(callbacks=[bar, probe], max_steps=7, max_epochs=-1, enable_progress_bar=True)

    # 7 steps over 3 epochs of 3 batches: one bar that never restarts, total = the budget
    assert probe.seen == [(f"step {k}/7", k, 7) for k in range(1, 8)]
    # Rich estimates the time left from its samples from the 2nd step on, a new epoch's first step included
    # (Lightning's bar resets its task, and with it the estimate, at every epoch)
    assert None not in probe.time_left[1:]
    row = _rendered_train_row(bar)
    assert row.startswith("step 7/7 ") and row.count("7/7") == 1  # the batches column does not repeat it


def test_step_budget_has_thousands_separators(fit_tiny):
    bar = StepProgressBar()
    probe = TrainBarProbe(bar)
    fit_tiny(callbacks=[bar, probe], max_steps=1000, max_epochs=1, enable_progress_bar=True)

    # max_epochs ends it first: the bar still counts against the step budget
    assert probe.seen[-1] == (f"step {BATCHES_PER_EPOCH}/1,000", BATCHES_PER_EPOCH, 1000)


def test_epoch_budget_counts_epochs_and_their_batches(fit_tiny):
    bar = StepProgressBar()
    probe = TrainBarProbe(bar)
    fit_tiny(callbacks=[bar, probe], max_steps=-1, max_epochs=2, enable_progress_bar=True)

    assert probe.seen == [(f"epoch {e}/2", b, BATCHES_PER_EPOCH) for e in (1, 2)
                          for b in range(1, BATCHES_PER_EPOCH + 1)]
    assert _rendered_train_row(bar).startswith("epoch 2/2 ")
