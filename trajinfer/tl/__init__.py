"""Tools on AnnData: fit, simulate/push, fate and transition tables, growth, decoding."""

from ._decode import decode
from ._fate import FateResult, fate
from ._fit import default_sigma, fit
from ._growth import growth_rates
from ._push import push, simulate

__all__ = ["FateResult", "decode", "default_sigma", "fate", "fit", "growth_rates", "push", "simulate"]
