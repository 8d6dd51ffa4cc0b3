"""The checks a fit runs on itself."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import trajinfer as tj
from trajinfer.diagnostics import FitWarning, fit_diagnostics, report_fit, transport_check


def _moving_clouds() -> tj.SnapshotPath:
    rng = np.random.default_rng(0)
    return tj.SnapshotPath([rng.normal(loc=[2.0 * k, 0.0], scale=0.3, size=(120, 2)) for k in range(3)], [0.0, 1.0, 2.0])


def test_transport_check_passes_a_fitted_model_and_flags_one_moving_the_wrong_way(caplog):
    path = _moving_clouds()
    model = tj.ActionMatching("am", n_iter=300, hidden_dims=(32, 32), run=dict(progress=False)).fit(path)
    # the clouds move 4 units; a fitted model lands near the last one
    assert model.diagnostics_["status"] == "ok" and model.diagnostics_["fit_time"] == model.fit_time_
    assert model.diagnostics_["transport_ratio"] < 0.3 and model.diagnostics_["warnings"] == []
    dynamics = model.dynamics_
    with torch.no_grad():  # the opposite action: every velocity reversed
        last = [m for m in dynamics.potential.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.neg_()
        last.bias.neg_()
    check = transport_check(dynamics, path, torch.Generator().manual_seed(0))
    assert check["transport_ratio"] > 1.5, check
    report = fit_diagnostics(
        dynamics, path, losses=model.loss_curve_, fit_time=model.fit_time_, lr=model.lr_, loss_scale=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert report["transport_ratio"] == pytest.approx(check["transport_ratio"], rel=0.5)
    assert any("farther from the last snapshot" in note for note in report["warnings"])
    with caplog.at_level(logging.INFO, logger="trajinfer.diagnostics"), pytest.warns(FitWarning, match="farther from the last snapshot"):
        report_fit(report, method="am", n_iter=model.n_iter_)
    assert "Fitted am in" in caplog.text and "300 iterations" in caplog.text


def test_diagnostics_name_an_unfinished_fit_and_its_learning_rate():
    # a loss curve still falling steeply at the end, with gradients that pointed one way
    path = _moving_clouds()
    dynamics = tj.ActionMatching("am", n_iter=20, hidden_dims=(16,), run=dict(progress=False)).fit(path).dynamics_
    losses = np.linspace(10.0, 1.0, 200)
    report = fit_diagnostics(
        dynamics, path, losses=losses, fit_time=1.5, lr=0.25, loss_scale=1.0, gradient_signal=40.0,
        generator=torch.Generator().manual_seed(0), status="diverged",
    )
    assert report["status"] == "diverged" and report["fit_time"] == 1.5 and report["gradient_signal"] == 40.0
    assert report["final_loss"] == pytest.approx(losses[-10:].mean())
    notes = " | ".join(report["warnings"])
    assert "diverged and was stopped" in notes and "(lr=0.25) or n_iter (n_iter=200)" in notes and "still moved" in notes
