"""The run's log file: everything logged, library messages and Python warnings included, in
WORK/logs/<level>_<time>.log. Messages are held in memory from the start and written once the
run has passed its checks and made its folders, so a refused run writes nothing."""
from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
import time
from pathlib import Path

LOG = logging.getLogger("bibsnet_trainer")
FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"
_held: list[logging.handlers.MemoryHandler] = []
_current: list[Path] = []


class AppMessages(logging.Filter):
    """The console shows the app's own messages (progress, results, warnings) and every error but
    nipype's (a failed session is the app's one line; nipype's traceback is in the log and the
    crash file); libraries' messages and Python warnings (torch, nnU-Net, numpy) go to the log
    file only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("bibsnet_trainer") or (
            record.levelno >= logging.ERROR and not record.name.startswith("nipype"))


def console_handler() -> logging.Handler:
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    console.addFilter(AppMessages())
    return console


def quiet_nipype() -> None:
    """nipype prints its own messages to stdout through a handler of its own: send them, like
    every library's, through the root logger (the log file) instead."""
    nipype = logging.getLogger("nipype")
    for handler in list(nipype.handlers):
        nipype.removeHandler(handler)
    nipype.propagate = True


def current_log() -> Path | None:
    """The log file of the run in progress in this process, if any."""
    return _current[-1] if _current else None


def worker_logging(log_file: Path | None) -> None:
    """In a worker process (a nipype MultiProc node) that has no logging set up: the console as
    the parent's, the run's log file appended to, Python warnings captured, nipype quiet."""
    root = logging.getLogger()
    quiet_nipype()
    if root.handlers:          # the parent's own process (Linear plugin): set up already
        return
    root.setLevel(logging.INFO)
    root.addHandler(console_handler())
    if log_file is not None:
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        root.addHandler(handler)
    logging.captureWarnings(True)


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
    _current.append(path)
    LOG.info("log of this run, library messages included: %s", path)
    try:
        yield path
    finally:
        _current.remove(path)
        root.removeHandler(handler)
        handler.close()
