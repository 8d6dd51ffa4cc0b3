"""Example data sets: synthetic petals, MIOFlow's dyngen bifurcation and the embryoid body.

Loaders return :class:`anndata.AnnData` objects with a numeric ``obs["time"]`` label, ready for
:func:`trajinfer.fit`. Files are looked for in :func:`cache_dir` when no path is given.
"""

from __future__ import annotations

from ._atlas import synthetic_atlas
from ._download import cache_dir
from ._dyngen import dyngen
from ._embryoid import embryoid_body
from ._petals import petals

__all__ = ["cache_dir", "dyngen", "embryoid_body", "petals", "synthetic_atlas"]
