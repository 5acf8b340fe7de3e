"""Typed errors. Each carries the offending path; the CLI turns them into one line and an exit code."""
from __future__ import annotations

import os

EXIT_OK = 0
EXIT_FAILURE = 1        # something broke while processing
EXIT_USAGE = 64         # bad command line (sysexits EX_USAGE)
EXIT_DATA = 65          # bad input data (sysexits EX_DATAERR)
EXIT_REFUSED = 73       # would overwrite existing outputs (sysexits EX_CANTCREAT)
EXIT_IO = 74            # a file could not be read or written (sysexits EX_IOERR), e.g. a full disk
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


class BibsnetError(Exception):
    """Base class: a message for the user, optionally naming a file."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class UsageError(BibsnetError):
    exit_code = EXIT_USAGE


class InputError(BibsnetError):
    """Input data that cannot be used (missing, unreadable, inconsistent)."""

    exit_code = EXIT_DATA


class ModelError(BibsnetError):
    """A model package that is missing, unsuitable or fails verification."""

    exit_code = EXIT_DATA


class RefusedError(BibsnetError):
    """Outputs exist and would be overwritten."""

    exit_code = EXIT_REFUSED


class ProcessingError(BibsnetError):
    """A stage (synthesis, nnU-Net, prediction) failed."""

    exit_code = EXIT_FAILURE
