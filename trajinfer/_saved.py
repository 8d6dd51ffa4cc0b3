"""Reading saved models: :func:`trajinfer.load`."""

from __future__ import annotations

from pathlib import Path

import torch

from ._run import RUN_SETTINGS, as_run_config
from .costs import resolve_cost
from .derivatives import resolve_laplacian
from .dynamics import Dynamics
from .estimator import RESOLVED, ActionMatching
from .persistence import MODEL, read_payload

__all__ = ["load"]

# the modelling parameters of a version-1 model file (it also stored run settings and warmup)
_V1_PARAMS = frozenset(ActionMatching._get_param_names()) - {"run", "cost"}
# run settings of this machine and run, never taken from a file
_LOCAL_SETTINGS = ("device", "checkpoint_path", "checkpoint_file", "resume")


def load(file: str | Path, device: str | torch.device = "auto") -> ActionMatching:
    """Load a model saved by :meth:`ActionMatching.save` onto ``device``.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``file``.
    ValueError
        If the file cannot be read as a saved model (:func:`~trajinfer.persistence.read_payload`);
        the message names the file, the problem and what to do.
    """
    if not Path(file).is_file():
        raise FileNotFoundError(f"No saved model at {file}.")
    payload = read_payload(file, MODEL)
    params, fitted = dict(payload["params"]), payload["fitted"]
    if payload["version"] == 1:  # the dynamics were stored beside the parameters
        params = {key: value for key, value in params.items() if key in _V1_PARAMS}
        params["run"] = {key: value for key, value in payload["params"].items()
                         if key in RUN_SETTINGS and key not in _LOCAL_SETTINGS}
        dynamics = {
            "method": params["method"], "sigma": params.get("sigma"), "cost": payload["params"]["cost"],
            "growth_scale": params.get("growth_scale", 1.0), "dim": fitted["dim_"], "t_range": fitted["t_range_"],
            "potential_config": payload["potential_config"], "state_dict": payload["state_dict"],
        }
    else:
        dynamics = payload["dynamics"]
    if not isinstance(params["hidden_dims"], str):  # "auto" stays a name
        params["hidden_dims"] = tuple(params["hidden_dims"])
    est = ActionMatching(cost=resolve_cost(dynamics["cost"]), **params)
    est.run = est.run_ = as_run_config(est.run).replace(device=device)
    est.dynamics_ = Dynamics.from_payload(dynamics, device=device)
    est.laplacian_ = resolve_laplacian(est.laplacian, est.dynamics_.dim, use="training")
    est.loss_curve_ = fitted["loss_curve_"].numpy().astype(float)
    est.n_iter_, est.fit_time_ = len(est.loss_curve_), float(fitted["fit_time_"])
    est.metadata_ = payload.get("metadata", {})
    for key in RESOLVED:  # files of early versions lack them
        if key in fitted:
            setattr(est, key, tuple(fitted[key]) if key == "hidden_dims_" else fitted[key])
    return est
