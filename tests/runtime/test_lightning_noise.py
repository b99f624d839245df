"""After quiet_lightning(), a Trainer's fit shows neither Lightning's litlogger tip nor its LeafSpec warning."""
from __future__ import annotations

import logging
import warnings

from src.runtime.lightning_noise import RANK_ZERO_LOGGERS, quiet_lightning


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_fit_shows_no_tip_and_no_leafspec_warning(fit_tiny):
    # a handler on the loggers Lightning's rank-zero messages are sent to sees what passed their filters
    records = Records()
    for name in RANK_ZERO_LOGGERS:
        logging.getLogger(name).addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # every warning, even one this process has already shown
            quiet_lightning()
            quiet_lightning()  # idempotent: one filter each, not two
            assert sum(bool(f[1]) and "LeafSpec" in f[1].pattern for f in warnings.filters) == 1
            assert [len(logging.getLogger(name).filters) for name in RANK_ZERO_LOGGERS] == [1, 1]
            fit_tiny(max_steps=2, enable_progress_bar=False)
    finally:
        for name in RANK_ZERO_LOGGERS:
            logging.getLogger(name).removeHandler(records)

    assert any(m.startswith("GPU available") for m in records.messages)  # the handler does see Lightning's lines
    assert not [m for m in records.messages if "litlogger" in m]
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
