"""The one place where progress bars are built.

:func:`progress_bar` picks the bar that shows where the user is:

- in a Jupyter kernel with ``ipywidgets``: tqdm's widget bar (``tqdm.notebook``);
- in a Jupyter kernel without it: a text bar on the cell's stderr (tqdm's own choice there,
  ``tqdm.auto``, draws nothing and warns "IProgress not found");
- in a terminal: a text bar on stderr;
- when stderr is a file or a pipe (a log, a batch job, CI): a plain line every
  ``LOG_INTERVAL`` seconds and a last one at the end, instead of carriage-return redraws;
  bars that would vanish when done (``leave=False``) are not shown there.

``show=False`` (a fit's ``progress=False``) or ``tj.settings.progress = False`` hides the bar.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

from ._settings import settings

__all__ = ["LOG_INTERVAL", "bar_kind", "progress_bar"]

#: Seconds between the lines of a bar written to a file or a pipe.
LOG_INTERVAL = 30.0
#: Width of a text bar in a notebook, whose output area tqdm cannot measure.
NOTEBOOK_COLUMNS = 100


#: Cells above which the AnnData tools show a bar over their steps (below it they take seconds).
BAR_MIN_CELLS = 50_000


def in_kernel() -> bool:
    """Whether this code runs in a Jupyter (IPython) kernel."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return getattr(shell, "kernel", None) is not None


def widgets_available() -> bool:
    """Whether ``ipywidgets``, which tqdm's notebook bar is drawn with, can be imported."""
    return importlib.util.find_spec("ipywidgets") is not None


def bar_kind(*, leave: bool = True, stream: TextIO | None = None) -> str:
    """Which bar :func:`progress_bar` draws here: ``"widget"``, ``"text"``, ``"log"`` or ``"none"``."""
    if in_kernel():
        return "widget" if widgets_available() else "text"
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return "text"
    return "log" if leave else "none"


class _Lines:
    """A file for tqdm that turns its carriage-return redraws into whole lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        getattr(self.stream, "flush", lambda: None)()


def progress_bar(
    iterable: Iterable | None = None, *, desc: str | None = None, total: int | None = None, show: bool = True, leave: bool = True,
    **options: Any,
) -> tqdm:
    """A tqdm progress bar over ``iterable`` suited to where the output goes (see the module).

    Parameters
    ----------
    iterable
        What to iterate over (``None`` for a bar updated by hand).
    desc
        Label of the bar.
    total
        Number of steps (default ``len(iterable)``).
    show
        ``False`` returns a disabled bar (the iteration still runs).
    leave
        Keep the finished bar on screen.
    **options
        Other tqdm arguments (``initial``, ``unit``, ``mininterval``, ...).

    Returns
    -------
    tqdm.tqdm
        Iterate over it, or call ``update``; ``close`` it when done.
    """
    kind = bar_kind(leave=leave) if show and settings.progress else "none"
    if kind == "none":
        return tqdm(iterable, desc=desc, total=total, disable=True, **options)
    if kind == "widget":
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm(iterable, desc=desc, total=total, leave=leave, **options)
    if kind == "log":
        options = {**options, "mininterval": max(float(options.get("mininterval", 0.1)), LOG_INTERVAL), "ascii": True}
        return tqdm(iterable, desc=desc, total=total, leave=leave, file=_Lines(sys.stderr), disable=False, **options)
    if in_kernel():
        options.setdefault("ncols", NOTEBOOK_COLUMNS)
    return tqdm(iterable, desc=desc, total=total, leave=leave, file=sys.stderr, disable=False, **options)
