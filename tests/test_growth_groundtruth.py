"""Unbalanced Action Matching recovers known growth: two static clusters, one doubling per
unit time and one halving, with zero drift (the true action is constant on each cluster,
s = δ² g, so the drift ∇s vanishes there) and, for ueAM, known diffusion.

Measured with these settings (128×3 network, 1000 iterations, seed 0): time-averaged growth
over truth 0.985 (doubling) and 0.965 (halving) for uAM, 0.984 and 0.958 for ueAM; individual
times 0.84-1.08; simulated relative mass within 0.6% of the truth at t = 0.5, 1, 1.5, 2. The
tolerances (10% on the time-averaged rates, 5% on the mass curve) are the issue's targets,
2.4x and 8x the worst measured errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import trajinfer as tj

LN2 = math.log(2.0)
CENTRES = torch.tensor([[-3.0, 0.0], [3.0, 0.0]])
SD0, SIGMA, T = 0.5, 0.3, 2.0
TIMES = (0.0, 0.5, 1.0, 1.5, 2.0)


def _weights(t: torch.Tensor) -> torch.Tensor:
    return torch.stack([0.5 * torch.exp(LN2 * t), 0.5 * torch.exp(-LN2 * t)], 1)


def _mass(t: torch.Tensor) -> torch.Tensor:
    return _weights(t).sum(1)


def _sd(t: torch.Tensor | float, sigma: float) -> torch.Tensor:
    return torch.sqrt(SD0**2 + sigma**2 * torch.as_tensor(t))


def _sampler(sigma: float):
    def sample(t: torch.Tensor) -> torch.Tensor:
        w = _weights(t)
        which = (torch.rand(t.shape[0]) >= w[:, 0] / w.sum(1)).long()
        return CENTRES[which] + _sd(t, sigma)[:, None] * torch.randn(t.shape[0], 2)

    return sample


@pytest.fixture(scope="module", params=["uam", "ueam"])
def fitted(request) -> tuple[tj.ActionMatching, float]:
    method = request.param
    sigma = SIGMA if method == "ueam" else 0.0
    torch.manual_seed(0)  # the callable path draws from the global torch RNG
    est = tj.ActionMatching(
        method, sigma=sigma or None, n_iter=1000, hidden_dims=(128, 128, 128), lr=1e-3, seed=0, run=dict(progress=False),
    )
    return est.fit(tj.CallablePath(_sampler(sigma), t_range=(0.0, T), mass_fn=_mass)), sigma


@pytest.mark.slow
def test_per_cluster_growth_rates(fitted):
    est, sigma = fitted
    generator = torch.Generator().manual_seed(5)
    for centre, truth in zip(CENTRES, (LN2, -LN2)):
        rates = [
            float(est.growth((centre + _sd(t, sigma) * torch.randn(2000, 2, generator=generator)).numpy(), t).mean())
            for t in TIMES
        ]
        ratio = np.mean(rates) / truth
        print(f"\n[{est.method}] cluster at {centre.tolist()}: growth / truth by time {np.round(np.array(rates) / truth, 3)}")
        assert abs(ratio - 1) < 0.10


@pytest.mark.slow
def test_relative_mass_curve(fitted):
    est, sigma = fitted
    torch.manual_seed(1)
    x0 = _sampler(sigma)(torch.zeros(4000)).numpy()
    traj = est.simulate(x0, 0.0, T, n_steps=100, seed=0)
    for t in TIMES[1:]:
        step = int(round(t / T * 100))
        predicted = float(np.exp(traj.log_weights[step]).mean())
        truth = float(_mass(torch.tensor([t])) / _mass(torch.tensor([0.0])))
        # Monte-Carlo error of the mean weight over 4000 start samples is below 0.5%
        assert abs(predicted / truth - 1) < 0.05, (t, predicted, truth)
        assert np.isfinite(traj.log_weights[step]).all()
