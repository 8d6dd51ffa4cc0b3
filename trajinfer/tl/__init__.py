"""Tools on AnnData: fit, simulate/push/pull, fate and transition tables, growth, decoding, scverse interop."""

from ._decode import decode
from ._fate import FateResult, fate
from ._fit import default_sigma, fit
from ._growth import growth_rates
from ._holdout import holdout
from ._pull import PullResult, pull
from ._push import push, simulate
from ._record import FitRecord, cells_at, fit_record
from ._scverse import cellrank_kernel, embed, transition_matrix, velocity_embedding

__all__ = [
    "FateResult", "FitRecord", "PullResult", "cellrank_kernel", "cells_at", "decode", "default_sigma", "embed", "fate", "fit",
    "fit_record", "growth_rates", "holdout", "pull", "push", "simulate", "transition_matrix", "velocity_embedding",
]
