"""Adapters that train peer methods (MIOFlow, TorchCFM) on snapshot lists and push cells.

Every adapter exposes ``fit_<peer>(snapshots, times, **settings) -> model`` with
``model.push(X, t_start, t_end, seed) -> (X_end, weights_or_None)`` and ``model.settings``.
The peers are optional (``pip install trajinfer[bench]``); importing a missing one raises
ImportError, which the benchmark scripts record instead of numbers.
"""

from .mioflow_adapter import MIOFLOW_DEFAULTS, fit_mioflow
from .torchcfm_adapter import CFM_DEFAULTS, SF2M_DEFAULTS, fit_otcfm, fit_sf2m

__all__ = ["fit_mioflow", "fit_otcfm", "fit_sf2m", "MIOFLOW_DEFAULTS", "CFM_DEFAULTS", "SF2M_DEFAULTS"]
