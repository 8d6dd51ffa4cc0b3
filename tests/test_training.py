"""The training loop: divergence rollback, runaway detection, schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import CLOUD_TIMES, FailingPath, drifting_clouds, same_weights, small_estimator
from torch import nn

import trajinfer as tj
from trajinfer.training import EARLY_STOP, DivergenceError, OptimizerSettings, TrainingLoop, lr_factor


def _snapshots() -> tuple[list[np.ndarray], list[float]]:
    rng = np.random.default_rng(0)
    times = [0.0, 1.0, 2.0]
    return [rng.normal(loc=[t, 0.0], scale=0.3, size=(100, 2)) for t in times], times


@pytest.mark.parametrize("lr", [1e6, 1e3])
def test_diverging_fit_keeps_finite_weights_of_sensible_size(lr):
    X, times = _snapshots()
    est = tj.ActionMatching("am", lr=lr, n_iter=400, hidden_dims=(32, 32), ema_decay=None, run=dict(progress=False))
    with pytest.raises(DivergenceError, match=r"lr=") as info:
        est.fit(tj.SnapshotPath(X, times, interpolation="ot"))
    assert info.value.iteration < 400
    assert est.diagnostics_["status"] == "diverged"
    v = est.velocity(X[0], 0.0)
    assert np.isfinite(v).all()
    # the snapshots move one unit per time unit; restored weights are those of a healthy fit
    assert np.sqrt((v**2).sum(1).mean()) < 100
    assert all(torch.isfinite(p).all() for p in est.potential_.parameters())


def test_runaway_loss_is_stopped_and_rolled_back():
    net = nn.Linear(1, 1)
    loop = TrainingLoop(net, OptimizerSettings(lr=1e-3, ema_decay=None), n_iter=1000, progress=False, rollback_every=10)
    seen = {}

    def step(it: int) -> torch.Tensor:
        loss = net.weight.sum() * 0 + (-1.0 if it < 150 else -(10.0 ** ((it - 150) / 5)))
        (net.weight.sum() * 1e-3).backward()
        seen[it] = net.weight.detach().clone()
        return loss.detach()

    with pytest.raises(DivergenceError) as info:
        loop.run(step)
    assert info.value.reason == "runaway loss"
    assert EARLY_STOP < info.value.iteration < 200
    kept = len(loop.losses) - 1  # the losses up to the restored state's own
    assert kept <= 150 and kept % 10 == 0  # a snapshot from before the run-away (loss −1 up to 150)
    assert torch.equal(net.weight.detach(), seen[kept])


def test_nan_gradient_restores_weights_moving_average_and_optimizer():
    net = nn.Linear(2, 1)
    loop = TrainingLoop(net, OptimizerSettings(lr=1e-2), n_iter=100, progress=False, rollback_every=5, loss_scale=10.0)

    def step(it: int) -> torch.Tensor:
        loss = net(torch.ones(4, 2)).pow(2).mean() * (math.nan if it == 23 else 1.0)
        loss.backward()
        return loss.detach()

    with pytest.raises(DivergenceError, match="non-finite"):
        loop.run(step)
    # the weights that gave the last finite loss (iteration 22), with their moving average and
    # optimiser state: the step that led to the NaN is undone
    assert len(loop.losses) == 23
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert all(torch.isfinite(a).all() for a in loop.ema)
    assert loop.scheduler.last_epoch == 22


def test_cosine_schedule_starts_at_the_full_rate():
    # no warm-up: the first step is taken at the peak rate, which decays to 1% along a cosine
    factor = lr_factor(OptimizerSettings(), n_iter=100)
    assert factor(0) == 1.0 and factor(100) == pytest.approx(0.01) and factor(500) == pytest.approx(0.01)
    assert factor(50) == pytest.approx(0.01 + 0.99 * 0.5) and factor(25) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.sqrt(0.5)))
    assert lr_factor(OptimizerSettings(lr_schedule="constant"), n_iter=100)(70) == 1.0
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        lr_factor(OptimizerSettings(lr_schedule="step"), n_iter=100)


def test_removed_warmup_setting_is_refused():
    with pytest.raises(TypeError, match="warmup"):
        OptimizerSettings(warmup=10)
    with pytest.raises(TypeError, match="snapshot_every"):  # renamed rollback_every
        TrainingLoop(nn.Linear(1, 1), OptimizerSettings(), n_iter=10, progress=False, snapshot_every=5)


def test_nonfinite_loss_keeps_the_last_good_weights():
    X = drifting_clouds()
    params = dict(lr_schedule="constant", n_iter=12)
    model = small_estimator(**params)
    with pytest.raises(FloatingPointError) as info:
        model.fit(FailingPath(X, CLOUD_TIMES, at=5))
    message = str(info.value)
    assert "iteration 5" in message and "lr=" in message and "sigma" in message and "data scale" in message
    assert model.n_iter_ == 5 and np.all(np.isfinite(model.loss_curve_))
    # the weights that gave the last finite loss are kept: those after 4 steps (the step to the
    # weights that met the failure is undone); their losses are the first 5 of a clean fit
    clean = small_estimator(**{**params, "n_iter": 5}).fit(tj.SnapshotPath(X, CLOUD_TIMES))
    np.testing.assert_array_equal(model.loss_curve_, clean.loss_curve_)
    four = small_estimator(**{**params, "n_iter": 4}).fit(tj.SnapshotPath(X, CLOUD_TIMES))
    assert same_weights(model.potential_, four.potential_)
    assert np.all(np.isfinite(model.velocity(X[0], 0.0)))


def test_absurd_learning_rate_raises_with_finite_weights():
    model = small_estimator(lr=1e6, grad_clip=None, n_iter=50)
    with pytest.raises(FloatingPointError, match=r"lr=1000000\.0.*sigma.*data scale"):
        model.fit(tj.SnapshotPath(drifting_clouds(), CLOUD_TIMES))
    assert 0 < model.n_iter_ < 50
    assert all(torch.isfinite(p).all() for p in model.potential_.parameters())


@pytest.mark.parametrize(("lr", "converged"), [(1e-1, True), (1e-4, False)])
def test_gradient_signal_tells_noise_around_a_minimum_from_an_unfinished_descent(lr, converged):
    # loss ½|w − c|² with Gaussian gradient noise of unit total variance, from w = 0 with
    # |c| = 3: at lr 1e-1 Adam reaches c in about 30 of the 500 steps and the last tenth's
    # gradients are noise (signal ~ 1, a chi-square over its mean: below 3 with near certainty);
    # at lr 1e-4 the weights move by at most 0.05, so every gradient is ≈ w − c ≈ −c plus noise
    # and the 50 summed gradients give a signal near 50 · 9 / (9 + 1) = 45
    torch.manual_seed(0)
    net = nn.Linear(10, 1, bias=False)
    nn.init.zeros_(net.weight)
    centre = torch.full((1, 10), 3.0 / math.sqrt(10))
    loop = TrainingLoop(net, OptimizerSettings(lr=lr, ema_decay=None, grad_clip=None), n_iter=500, progress=False)

    def step(it: int) -> torch.Tensor:
        residual = net.weight - centre
        loss = 0.5 * (residual**2).sum() + (net.weight * torch.randn(1, 10)).sum() / math.sqrt(10)
        loss.backward()
        return 0.5 * (residual.detach() ** 2).sum()

    loop.run(step)
    assert (loop.gradient_signal < 3.0) if converged else (loop.gradient_signal > 30.0)
