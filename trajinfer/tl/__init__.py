"""Tools on AnnData: fit, simulate/push/pull, fate and transition tables, gene trends and fate drivers, growth, decoding,
scverse interop."""

from ._decode import decode
from ._fate import FateResult, fate
from ._fit import default_sigma, fit
from ._growth import growth_rates
from ._holdout import holdout
from ._pull import PullResult, pull
from ._push import push, simulate
from ._record import FitRecord, cells_at, fit_record
from ._scverse import cellrank_kernel, embed, transition_matrix, velocity_embedding
from ._trends import GeneTrends, fate_drivers, gene_trends

__all__ = [
    "FateResult", "FitRecord", "GeneTrends", "PullResult", "cellrank_kernel", "cells_at", "decode", "default_sigma", "embed", "fate",
    "fate_drivers", "fit", "fit_record", "gene_trends", "growth_rates", "holdout", "pull", "push", "simulate", "transition_matrix",
    "velocity_embedding",
]
