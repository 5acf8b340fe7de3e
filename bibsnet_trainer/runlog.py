"""The run's log file: everything logged, library messages and Python warnings included, in
WORK/logs/<level>_<time>.log. Messages are held in memory from the start and written once the
run has passed its checks and made its folders, so a refused run writes nothing."""
from __future__ import annotations

import contextlib
import logging
import logging.handlers
import time
from pathlib import Path

LOG = logging.getLogger("bibsnet_trainer")
FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"
_held: list[logging.handlers.MemoryHandler] = []


@contextlib.contextmanager
def held_messages():
    """Hold every message of a run in memory until `run_log` writes them (or the run ends)."""
    handler = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
    root = logging.getLogger()
    root.addHandler(handler)
    logging.captureWarnings(True)
    _held.append(handler)
    try:
        yield
    finally:
        _held.remove(handler)
        root.removeHandler(handler)
        handler.close()
        logging.captureWarnings(False)


@contextlib.contextmanager
def run_log(work_dir: Path, level_name: str):
    """Write the run's messages, those held so far first, to WORK/logs/<level>_<time>.log."""
    path = Path(work_dir) / "logs" / f"{level_name}_{time.strftime('%Y%m%d-%H%M%S')}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for held in _held:
        held.setTarget(handler)
        held.flush()
        root.removeHandler(held)
    root.addHandler(handler)
    LOG.info("log of this run, library messages included: %s", path)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
