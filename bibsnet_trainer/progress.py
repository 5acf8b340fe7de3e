"""Progress with time left for long loops (synthesis, subjects)."""
from __future__ import annotations

import logging
import time


class Progress:
    def __init__(self, total: int, what: str, logger: logging.Logger):
        self.total, self.what, self.logger = total, what, logger
        self.done = 0
        self.started = time.monotonic()

    def step(self, detail: str = "") -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        self.logger.info("%s %d/%d%s (%.0f s elapsed, about %.0f s left)", self.what, self.done, self.total,
                         f" {detail}" if detail else "", elapsed, left)
