"""MIOFlow (Huguet et al., 2022; PyPI ``mioflow``) on snapshot lists.

Settings are the package's own defaults (``MIOFlow.__init__``: ODE vector field with hidden width
64, OT loss weight 1, energy weight 0.01, Adam lr 1e-3, all cells of each time point per step,
no GAGA autoencoder, no density loss); only the number of epochs is set by the benchmark.
Cells are pushed with ``torchdiffeq.odeint`` (dopri5, MIOFlow's own integrator) in MIOFlow's
standardised coordinates.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

MIOFLOW_DEFAULTS: dict[str, Any] = {
    "hidden_dim": 64, "lambda_ot": 1.0, "lambda_energy": 0.01, "learning_rate": 1e-3,
    "sample_size": None, "use_density_loss": False, "gaga_model": None,
}


class MIOFlowModel:
    def __init__(self, mf: Any, settings: dict[str, Any]):
        self.mf = mf
        self.settings = settings

    def push(self, X: np.ndarray, t_start: float, t_end: float, seed: int = 0) -> tuple[np.ndarray, None]:
        from torchdiffeq import odeint

        mf = self.mf
        x = torch.as_tensor((np.asarray(X, dtype=np.float64) - mf.mean_vals) / mf.std_vals, dtype=torch.float32)
        model = mf.ode_model.eval()
        model.reset_momentum()
        with torch.no_grad():
            out = odeint(model, x, torch.tensor([float(t_start), float(t_end)]))[-1]
        return out.numpy().astype(np.float64) * mf.std_vals + mf.mean_vals, None


def fit_mioflow(snapshots: list[np.ndarray], times: list[float], n_epochs: int = 100, seed: int = 0, **overrides: Any) -> MIOFlowModel:
    """Train MIOFlow; ``times`` must be 0, 1, ..., K-1 (MIOFlow factorises its time labels)."""
    import anndata as ad
    from mioflow import MIOFlow

    if list(times) != list(range(len(times))):
        raise ValueError("MIOFlow uses the rank of each time label as its time; pass times 0..K-1.")
    settings = {**MIOFLOW_DEFAULTS, **overrides, "n_epochs": int(n_epochs), "seed": seed}
    torch.manual_seed(seed)
    np.random.seed(seed)
    X = np.concatenate(snapshots).astype(np.float32)
    labels = np.concatenate([np.full(len(s), t, dtype=float) for s, t in zip(snapshots, times)])
    adata = ad.AnnData(X)
    adata.obsm["X_pca"] = X
    adata.obs["time"] = labels
    logging.getLogger("MIOFlow").setLevel(logging.WARNING)
    kwargs = {k: v for k, v in settings.items() if k != "seed"}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        mf = MIOFlow(adata, gaga_input_key="X_pca", obs_time_key="time", use_cuda=False, exp_dir=tmp,
                     debug_level="warning", **kwargs)
        mf.fit()
    return MIOFlowModel(mf, settings)
