"""The checks a fit runs on itself."""

from __future__ import annotations

import numpy as np
import torch

import trajinfer as tj
from trajinfer.diagnostics import fit_diagnostics, transport_check


def _moving_clouds() -> tj.SnapshotPath:
    rng = np.random.default_rng(0)
    return tj.SnapshotPath([rng.normal(loc=[2.0 * k, 0.0], scale=0.3, size=(120, 2)) for k in range(3)], [0.0, 1.0, 2.0])


def test_transport_check_passes_a_fitted_model_and_flags_one_moving_the_wrong_way():
    path = _moving_clouds()
    model = tj.ActionMatching("am", n_iter=300, hidden_dims=(32, 32), progress=False).fit(path)
    # the clouds move 4 units; a fitted model lands near the last one
    assert model.diagnostics_["transport_ratio"] < 0.3 and model.diagnostics_["warnings"] == []
    with torch.no_grad():  # the opposite action: every velocity reversed
        last = [m for m in model.potential_.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.neg_()
        last.bias.neg_()
    check = transport_check(model, path, torch.Generator().manual_seed(0))
    assert check["transport_ratio"] > 1.5, check
    report = fit_diagnostics(model, path, loss_scale=1.0, generator=torch.Generator().manual_seed(0))
    assert any("farther from the last snapshot" in note for note in report["warnings"])
