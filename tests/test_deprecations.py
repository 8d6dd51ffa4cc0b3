"""Deprecated spellings still work for one release: each warns with a FutureWarning naming the
replacement and gives exactly what the replacement gives."""

from __future__ import annotations

import numpy as np
import pytest

import trajinfer as tj

FAST = dict(method="am", hidden_dims=(16, 16), n_iter=15, batch_size=32, seed=0, run=dict(device="cpu", progress=False))


def _snapshots() -> tj.SnapshotPath:
    rng = np.random.default_rng(0)
    return tj.SnapshotPath([rng.normal(size=(60, 2)), rng.normal(size=(60, 2)) + [2.0, 0.0]], [0.0, 1.0])


@pytest.fixture(scope="module")
def fitted() -> tj.ActionMatching:
    return tj.ActionMatching(**FAST).fit(_snapshots())


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(25, 2)).astype(np.float32)


def test_fit_n_iter_warns_and_runs_that_many_iterations():
    est = tj.ActionMatching(**FAST)
    with pytest.warns(FutureWarning, match=r"fit\(path, n_iter=\.\.\.\) is deprecated .*est\.set_params\(n_iter=\.\.\.\)\.fit\(path\)"):
        est.fit(_snapshots(), n_iter=3)
    assert est.n_iter_ == 3 and est.loss_curve_.shape == (3,)
    assert est.n_iter == 15  # the parameter is untouched
    # the same fit as with the parameter set
    same = tj.ActionMatching(**{**FAST, "n_iter": 3}).fit(_snapshots())
    np.testing.assert_array_equal(est.loss_curve_, same.loss_curve_)


def test_simulate_method_warns_and_equals_solver(fitted, X):
    with pytest.warns(FutureWarning, match=r"simulate\(method=\.\.\.\) is deprecated .*simulate\(solver='rk4'\)"):
        old = fitted.simulate(X, 0.0, 1.0, n_steps=4, method="rk4")
    new = fitted.simulate(X, 0.0, 1.0, n_steps=4, solver="rk4")
    np.testing.assert_array_equal(old.X, new.X)
    # rk4 is not euler: the keyword took effect
    assert not np.array_equal(new.X, fitted.simulate(X, 0.0, 1.0, n_steps=4, solver="euler").X)
    with pytest.warns(FutureWarning, match=r"simulate\(method=\.\.\.\) is deprecated"):
        on_dynamics = fitted.dynamics_.simulate(X, 0.0, 1.0, n_steps=4, method="rk4", progress=False)
    np.testing.assert_array_equal(on_dynamics.X, new.X)


def test_log_likelihood_method_warns_and_equals_solver(fitted, X):
    def log_q0(x):
        return -0.5 * (x**2).sum(1)

    with pytest.warns(FutureWarning, match=r"log_likelihood\(method=\.\.\.\) is deprecated .*log_likelihood\(solver='euler'\)"):
        old = fitted.log_likelihood(X, log_q0, n_steps=5, method="euler")
    new = fitted.log_likelihood(X, log_q0, n_steps=5, solver="euler")
    np.testing.assert_array_equal(old, new)
    assert not np.array_equal(new, fitted.log_likelihood(X, log_q0, n_steps=5, solver="rk4"))


def test_simulate_options_after_t_end_are_keyword_only(fitted, X):
    with pytest.raises(TypeError, match="positional"):
        fitted.simulate(X, 0.0, 1.0, 10)
    with pytest.raises(TypeError, match="positional"):
        fitted.dynamics_.simulate(X, 0.0, 1.0, 10)
