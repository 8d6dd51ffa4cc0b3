"""Shared docstring fragments for the parameters that ``tl`` and ``pl`` functions repeat.

A function decorated with :func:`doc_params` writes ``{name}`` alone on a line of its docstring
where a fragment belongs; the fragment (a parameter and its description, numpy style) is put
there at the line's indentation, so each shared parameter is described once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

__all__ = ["FRAGMENTS", "doc_params"]

F = TypeVar("F", bound=Callable)

FRAGMENTS: dict[str, str] = {
    "adata_model": """\
adata, model
    The data and a model from :func:`trajinfer.fit` (the data need the fitted representation
    and the time column; they may be other cells than those fitted).""",
    "cluster_table": """\
n_neighbors, n_repeats, n_steps, seed
    Observed cells per pushed cell for its cluster, simulations averaged (stochastic models),
    time steps of each simulation, seed of the first simulation (``seed + r`` for repeat ``r``).""",
    "key_uns": """\
key
    The ``key_added`` of the fit: its record is ``uns[key]``.""",
    "ax": """\
ax
    Axes to draw into (default: a new figure).""",
}

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)\{(?P<name>\w+)\}[ \t]*$", re.MULTILINE)


def doc_params(**fragments: str) -> Callable[[F], F]:
    """Decorator: fill the ``{name}`` lines of a docstring with ``fragments`` (default: :data:`FRAGMENTS`).

    Parameters
    ----------
    **fragments
        Extra or replacing fragments by name.
    """
    table = {**FRAGMENTS, **fragments}

    def fill(match: re.Match) -> str:
        name, indent = match["name"], match["indent"]
        if name not in table:
            raise KeyError(f"No docstring fragment named {name!r}; known: {sorted(table)}.")
        return "\n".join(indent + line if line else line for line in table[name].splitlines())

    def decorate(obj: F) -> F:
        if obj.__doc__:
            obj.__doc__ = _PLACEHOLDER.sub(fill, obj.__doc__)
        return obj

    return decorate
