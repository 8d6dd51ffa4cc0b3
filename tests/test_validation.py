"""Parameter checks of the estimator: each bad value is refused before training, with a message
naming the parameter, the value and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import merged

import trajinfer as tj

FAST = dict(hidden_dims=(16, 16), n_iter=10, batch_size=32, run=dict(device="cpu", progress=False), seed=0)


def _snapshots() -> tj.SnapshotPath:
    rng = np.random.default_rng(0)
    return tj.SnapshotPath([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + [2.0, 0.0]], [0.0, 1.0])


# ------------------------------------------------------------------- parameter validation
@pytest.mark.parametrize(
    "params,error,match",
    [
        (dict(lr="0.1"), TypeError, r"lr must be a positive number or 'auto', got '0\.1' of type str"),
        (dict(lr=-1e-3), ValueError, r"lr must be a positive number or 'auto', got -0\.001"),
        (dict(hidden_dims=(0,)), ValueError, r"hidden_dims must be a non-empty sequence of positive integers or 'auto', got \(0,\)"),
        (dict(hidden_dims=(-4,)), ValueError, r"hidden_dims must be .*, got \(-4,\)"),
        (dict(hidden_dims=()), ValueError, r"hidden_dims must be a non-empty sequence"),
        (dict(hidden_dims=16), TypeError, r"hidden_dims must be a non-empty sequence of positive integers or 'auto', got 16 of type int"),
        (dict(hidden_dims=(16.0, 16.0)), TypeError, r"hidden_dims must be .*of type tuple"),
        (dict(n_iter=0), ValueError, r"n_iter must be a positive integer or 'auto', got 0"),
        (dict(n_iter=2.5), TypeError, r"n_iter must be a positive integer or 'auto', got 2\.5 of type float"),
        (dict(batch_size=1), ValueError, r"batch_size must be an integer >= 2, got 1"),
        (dict(batch_size="32"), TypeError, r"batch_size must be an integer >= 2, got '32' of type str"),
        (dict(weight_decay=-0.1), ValueError, r"weight_decay must be a non-negative number, got -0\.1"),
        (dict(grad_clip=0.0), ValueError, r"grad_clip must be a positive number or None, got 0\.0"),
        (dict(ema_decay=1.0), ValueError, r"ema_decay must be a number in \(0, 1\) or None, got 1\.0"),
        (dict(n_probes=0), ValueError, r"n_probes must be a positive integer, got 0"),
        (dict(run=dict(checkpoint_every=0)), ValueError, r"checkpoint_every must be a positive integer, got 0"),
        (dict(run=dict(checkpoint_every=True)), TypeError, r"checkpoint_every must be a positive integer, got True of type bool"),
        (dict(run=dict(grad_accumulation=0)), ValueError, r"grad_accumulation must be a positive integer, got 0"),
        (dict(method="sde"), ValueError, r"Unknown method 'sde'; choose one of \('am', 'eam', 'uam', 'ueam'\)"),
        (dict(laplacian="trace"), ValueError, r"Unknown laplacian 'trace'; choose one of \('auto', 'exact', 'hutchinson'\)"),
        (dict(lr_schedule="step"), ValueError, r"Unknown lr_schedule 'step'; choose one of \('cosine', 'constant'\)"),
        (dict(time_proposal="importance"), ValueError, r"Unknown time_proposal 'importance'; choose one of"),
        (dict(activation="relu6"), ValueError, r"Unknown activation 'relu6'; choose one of \('silu'"),
        (dict(run=dict(device="tpu")), ValueError, r"Unknown device 'tpu'; use 'auto', 'cpu', 'cuda', 'cuda:N' or a torch\.device"),
        (dict(run=dict(device=0)), TypeError, r"Unknown device 0"),
        (dict(run=dict(resume=True)), ValueError, r"resume=True needs checkpoint_file, the file to resume from"),
        (dict(run=dict(gpus=2)), ValueError, r"Unknown run settings \['gpus'\]; RunConfig takes \['device', 'progress'"),
        (dict(run="cpu"), TypeError, r"run must be a trajinfer\.RunConfig, a dict of its settings or None; got str"),
    ],
)
def test_bad_parameters_name_the_parameter_value_and_allowed_values(params, error, match):
    est = tj.ActionMatching(**merged(FAST, **params))
    with pytest.raises(error, match=match):
        est.fit(_snapshots())
    assert "dynamics_" not in vars(est) and not hasattr(est, "potential_")  # refused before any training


def test_fit_and_from_potential_use_the_same_checks():
    with pytest.raises(TypeError, match=r"n_iter must be a positive integer or 'auto', got '5' of type str"):
        tj.ActionMatching(**{**FAST, "n_iter": "5"}).fit(_snapshots())

    class Zero(torch.nn.Module):
        def forward(self, x, t):
            return 0 * x.sum(1) + 0 * t

    with pytest.raises(TypeError, match="lr must be a positive number"):
        tj.ActionMatching.from_potential(Zero(), dim=2, device="cpu", lr="0.1")


@pytest.mark.parametrize(
    "params",
    [
        dict(hidden_dims=[8], run=dict(checkpoint_every=np.int64(5)), lr=np.float32(1e-3), weight_decay=0),
        dict(grad_clip=None, ema_decay=None, run=dict(device=torch.device("cpu")), hidden_dims=np.array([8, 8])),
        dict(run=tj.RunConfig(device="cpu", progress=False, grad_accumulation=np.int64(2))),
    ],
    ids=["list-numpy-scalars", "none-device-array", "run-config"],
)
def test_accepted_parameter_values(params):
    est = tj.ActionMatching(**merged(FAST, n_iter=2, **params)).fit(_snapshots())
    assert est.n_iter_ == 2 and est.loss_curve_.shape == (2,) and np.isfinite(est.loss_curve_).all()
    assert est.device_ == torch.device("cpu")
    widths = params.get("hidden_dims", FAST["hidden_dims"])
    assert est.hidden_dims_ == tuple(int(w) for w in widths) and est.potential_.config["hidden_dims"] == [int(w) for w in widths]
