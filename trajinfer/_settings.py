"""Package settings, ``tj.settings``: how much trajinfer prints and whether it shows progress bars.

Messages go through the ``trajinfer`` logger. At import it gets one handler, which writes them
to the *current* ``sys.stderr`` (so in a Jupyter kernel they appear under the cell that ran,
as scanpy's do), at the level that :attr:`Settings.verbosity` sets:

===========  ==========  ===========================================================
verbosity    level       what is printed
===========  ==========  ===========================================================
0            ERROR       errors only
1            WARNING     and warnings
2 (default)  INFO        and the one-line summary of each fit and notes on what was
                         (not) written
3            DEBUG       and hints for developers
===========  ==========  ===========================================================

The records also reach the handlers of the root logger (``propagate`` stays on), so an
application's own logging set-up (``logging.basicConfig``, a log file) receives them; when the
root logger already prints to the console, the package's handler stays quiet rather than print
each line twice. A message that is also issued as a Python warning (a fit check,
:class:`~trajinfer.diagnostics.FitWarning`) is printed once, by :mod:`warnings`.

This module imports nothing heavy: ``import trajinfer`` stays light.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER_NAME", "VERBOSITY_LEVELS", "Settings", "WARNED", "settings"]

LOGGER_NAME = "trajinfer"
#: Logging level of each verbosity.
VERBOSITY_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
#: ``extra=`` of a log record whose message is also issued with :func:`warnings.warn`.
WARNED = {"tj_warned": True}
_CONSOLES = ("stderr", "stdout")


class _Formatter(logging.Formatter):
    """The message alone; ``WARNING:`` or ``ERROR:`` before messages of those levels."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname}: {message}"


class _ConsoleHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record arrives (a notebook kernel replaces it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(_Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "tj_warned", False) or _root_prints(record.levelno):
            return False
        return super().filter(record)


def _root_prints(level: int) -> bool:
    """Whether a handler of the root logger already prints records of ``level`` to the console."""
    consoles = {id(getattr(sys, name)) for name in _CONSOLES} | {id(getattr(sys, f"__{name}__")) for name in _CONSOLES}
    return any(
        type(handler) is logging.StreamHandler and id(handler.stream) in consoles and handler.level <= level
        for handler in logging.getLogger().handlers
    )


class Settings:
    """Global settings of trajinfer, ``tj.settings`` (in the manner of ``scanpy.settings``).

    Attributes
    ----------
    verbosity
        0 errors, 1 warnings, 2 information (default: the one-line summary after each fit and
        notes such as a layer that was not written), 3 debugging hints. Sets the level of the
        ``trajinfer`` logger.
    progress
        Show progress bars (default ``True``): in a Jupyter kernel, tqdm's widget bar when
        ``ipywidgets`` is installed, else a text bar; in a terminal, a text bar; when the
        output goes to a file, a line now and then. ``False`` hides every bar; a fit's own
        ``progress=False`` (:class:`~trajinfer.RunConfig`) hides its bar whatever this says.

    Examples
    --------
    >>> import trajinfer as tj
    >>> tj.settings.verbosity = 1    # warnings only: no fit summaries
    >>> tj.settings.progress = False  # no progress bars
    """

    def __init__(self) -> None:
        self._logger = logging.getLogger(LOGGER_NAME)
        if not any(isinstance(handler, _ConsoleHandler) for handler in self._logger.handlers):
            self._logger.addHandler(_ConsoleHandler())
        self._progress = True
        self.verbosity = 2

    @property
    def verbosity(self) -> int:
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: int) -> None:
        if isinstance(value, bool) or value not in VERBOSITY_LEVELS:
            raise ValueError(f"verbosity must be 0 (errors), 1 (warnings), 2 (information) or 3 (debugging); got {value!r}.")
        self._verbosity = int(value)
        self._logger.setLevel(VERBOSITY_LEVELS[self._verbosity])

    @property
    def progress(self) -> bool:
        return self._progress

    @progress.setter
    def progress(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"progress must be True or False; got {value!r}.")
        self._progress = value

    def __repr__(self) -> str:
        return f"trajinfer settings: verbosity={self.verbosity}, progress={self.progress}"


settings = Settings()
