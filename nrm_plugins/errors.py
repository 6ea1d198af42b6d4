"""Exceptions a user interface can catch (afmformats style: specific, with the file and the problem).

Every error the toolkit raises on purpose is an :class:`NRMError`.  The CLI prints ``str(error)`` as one
line and exits non-zero; ``--debug`` shows the traceback.
"""
from __future__ import annotations

from pathlib import Path


class NRMError(Exception):
    """Base class of all errors raised by nrm-plugins."""


class ReaderError(NRMError):
    """A file cannot be read.  The message names the file and the problem.

    Parameters
    ----------
    path : the file (or None when unknown)
    problem : what is wrong, in words a user understands (e.g. "truncated: expected 123 bytes, found 100")
    ramp : index of the ramp concerned, when the problem is local to one ramp
    """

    def __init__(self, path, problem: str, ramp: int | None = None):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        self.ramp = ramp
        where = f"{self.path}" if self.path is not None else "<unknown file>"
        if ramp is not None:
            where += f" (ramp {ramp})"
        super().__init__(f"{where}: {problem}")


class WriterError(NRMError):
    """A dataset cannot be written to the requested file or format."""

    def __init__(self, path, problem: str):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ModelError(NRMError):
    """A dataset lacks what a step needs (a role, a unit, a dimension); the message names it."""


class CalibrationError(NRMError):
    """A calibration/settings file or value is invalid (unknown key, wrong type, missing value)."""


class PluginError(NRMError):
    """A plugin is missing, broken, or no plugin can handle the request."""
