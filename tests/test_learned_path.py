"""The learned interpolation (``interpolation="learned"``) against ground truth.

A Gaussian translated at constant speed: the least-action path between its snapshots is the
Gaussian itself moving rigidly, while the starting path (the linear interpolation of
independent draws) narrows to 1/√2 of the spread at mid-interval. A population that stays in
place while its mass doubles: the path should stay in place and the growth rate be ln 2.

Measured (seeds 0, 1, 2; 600 iterations; the fit is a min-max game, so its spread is wide):
translated Gaussian, mean standard deviation at mid-interval 0.88-0.96 (starting path 0.71,
truth 1), mean velocity along the motion 2.03-2.21 (truth 2), RMS velocity error 0.26-0.70;
growing population, RMS velocity 0.07-0.19 and mean growth rate 0.67-0.73 per unit time (truth
ln 2 = 0.69). The tolerances sit about halfway between the worst measurement and a failure:
a path that did not learn (0.71), a velocity off by a fifth, a growth rate off by 15%.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import trajinfer as tj
from trajinfer.costs import QuadraticCost
from trajinfer.losses import ActionMatchingLoss
from trajinfer.networks import MLPPotential
from trajinfer.time_sampling import make_time_proposal

SPEED = 2.0


def _translated(seed: int, n: int = 400) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, 2)) + np.array([SPEED * k, 0.0]) for k in range(3)]


def test_learned_path_is_the_snapshots_at_their_times():
    snaps = _translated(0, n=50)
    path = tj.SnapshotPath(snaps, [0.0, 1.0, 2.0], interpolation="learned", smoothing=0.0)
    cells = {tuple(row) for row in path.data.numpy().round(6)}
    for tau in (0.0, 0.5, 1.0):
        x = path.sample(torch.full((64,), tau), torch.Generator().manual_seed(1))
        assert not x.requires_grad
        assert {tuple(row) for row in x.numpy().round(6)} <= cells


def test_path_objective_gradient_matches_finite_differences():
    torch.manual_seed(0)
    path = tj.SnapshotPath(_translated(0, n=64), [0.0, 1.0, 2.0], interpolation="learned", smoothing=0.0)
    for p in path.correction.net[-1].parameters():  # away from the zero start, so the correction matters
        torch.nn.init.normal_(p, std=0.3)
    potential = MLPPotential(2, (16, 16), "silu")
    proposal = make_time_proposal("quasi-uniform")

    def objective() -> torch.Tensor:
        return ActionMatchingLoss(method="am", cost=QuadraticCost()).path_objective(
            potential, path, batch_size=128, proposal=proposal, generator=torch.Generator().manual_seed(3),
        )

    weight = path.correction.net[0].weight
    grad = torch.autograd.grad(objective(), weight)[0]
    direction = torch.randn_like(weight)
    eps = 1e-3
    with torch.no_grad():
        weight += eps * direction
        up = float(objective())
        weight -= 2 * eps * direction
        down = float(objective())
        weight += eps * direction
    assert float((grad * direction).sum()) == pytest.approx((up - down) / (2 * eps), rel=0.05)


def test_learned_path_moves_a_translated_gaussian_rigidly():
    path = tj.SnapshotPath(_translated(0), [0.0, 1.0, 2.0], interpolation="learned", smoothing=0.0)
    half_way = torch.full((4000,), 0.25)  # user time 0.5
    start = path.sample(half_way, torch.Generator().manual_seed(0))
    model = tj.ActionMatching(method="am", n_iter=600, seed=0, run=dict(progress=False)).fit(path)
    x = path.sample(half_way, torch.Generator().manual_seed(0))
    assert float(start.std(0).mean()) < 0.75  # independent pairs narrow the path half way
    assert float(x.std(0).mean()) > 0.8
    assert x.mean(0).numpy() == pytest.approx([SPEED * 0.5, 0.0], abs=0.3)
    rng = np.random.default_rng(9)
    t = rng.choice([0.5, 1.0, 1.5], size=600)
    cells = rng.normal(size=(600, 2)) + np.outer(SPEED * t, [1.0, 0.0])
    v = model.velocity(cells, t)
    assert v.mean(0) == pytest.approx([SPEED, 0.0], abs=0.4)
    assert math.sqrt(((v - [SPEED, 0.0]) ** 2).sum(1).mean()) < 1.0


def test_unbalanced_learned_path_keeps_a_growing_population_in_place():
    rng = np.random.default_rng(0)
    times = [0.0, 0.5, 1.0]
    snaps = [rng.normal(size=(400, 2)) for _ in times]
    path = tj.SnapshotPath(snaps, times, interpolation="learned", smoothing=0.0, masses=[2.0**t for t in times])
    model = tj.ActionMatching(method="uam", n_iter=600, seed=0, run=dict(progress=False)).fit(path)
    probe = rng.normal(size=(500, 2))
    t = np.full(len(probe), 0.5)
    assert math.sqrt((model.velocity(probe, t) ** 2).sum(1).mean()) < 0.4
    assert float(model.growth(probe, t).mean()) == pytest.approx(math.log(2.0), rel=0.15)


def test_fit_accepts_the_learned_interpolation():
    import anndata as ad

    snaps = _translated(0, n=40)
    adata = ad.AnnData(np.concatenate(snaps).astype(np.float32))
    adata.obs["day"] = np.repeat([0.0, 1.0, 2.0], 40)
    model = tj.fit(adata, "day", use_rep="X", interpolation="learned", n_iter=20, progress=False)
    assert adata.uns["tj"]["params"]["interpolation"] == "learned"
    assert np.isfinite(model.velocity(snaps[0], 0.0)).all()
