"""Errors that carry a user-facing message: what is wrong, where, and how to fix it.

The CLI prints ``str(error)`` of any :class:`NassearchError` as one line and exits non-zero;
anything else is a bug and keeps its traceback.
"""


class NassearchError(Exception):
    """Base class for user-facing errors (bad config, bad data, bad architecture)."""


class ConfigError(NassearchError):
    """A configuration key or value is wrong."""


class DataError(NassearchError):
    """A benchmark table is missing, corrupt or does not answer a query."""


class InvalidArchitecture(NassearchError, ValueError):
    """An architecture string or object is not valid in its search space."""


class RunDirError(NassearchError):
    """A run directory cannot be created, resumed or read."""


class ExecutorError(NassearchError):
    """An executor cannot run evaluations (e.g. no Ray cluster at the configured address)."""


class SearchError(NassearchError):
    """A search cannot go on or ended without a result to report."""


def user_message(error: NassearchError) -> str:
    """The one-line message of ``error``, also when a DataLoader worker process raised it: torch re-raises such an
    error in the main process with "Caught <type> in DataLoader worker ..." and the worker's traceback as its
    message, whose last line holds the original message."""
    text = str(error)
    name = type(error).__name__
    if not text.startswith(f"Caught {name} in DataLoader worker"):
        return text
    last = text.rstrip().splitlines()[-1]
    return last.split(f"{name}: ", 1)[-1]
