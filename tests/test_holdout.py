"""Leave-one-time-point-out validation and the well-posed mixture on separated snapshots."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import trajinfer as tj


def _course(sizes=(150, 120, 150, 130), spacing=1.5, seed=0) -> ad.AnnData:
    """Gaussian clouds moving along a line, one per time point, with no overlap."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(loc=[spacing * k, 0.5 * k], scale=0.2, size=(n, 2)) for k, n in enumerate(sizes)])
    times = np.repeat(np.arange(len(sizes), dtype=float), sizes)
    return ad.AnnData(X.astype(np.float32), obs=pd.DataFrame({"day": times}, index=[f"c{i}" for i in range(len(X))]))


def test_holdout_table_beats_no_move():
    adata = _course()
    table = tj.tl.holdout(adata, "day", method="eam", n_iter=300, hidden_dims=(32, 32), progress=False)
    assert list(table["held_out"]) == [1.0, 2.0]
    assert {"w1_model", "w1_no_move", "w1_interpolation", "n_cells", "fit_time", "gradient_signal", "fit_warnings"} <= set(table.columns)
    assert np.isfinite(table["gradient_signal"]).all() and table["fit_warnings"].map(lambda w: isinstance(w, str)).all()
    # the clouds move 1.58 per step; a model that learned the motion lands near the held-out cloud
    assert (table["w1_model"] < 0.4 * table["w1_no_move"]).all()
    assert (table["w1_interpolation"] < 0.4 * table["w1_no_move"]).all()
    with pytest.raises(ValueError, match="interior"):
        tj.tl.holdout(adata, "day", held_out=[0.0])


def test_holdout_draws_no_more_interpolated_cells_than_it_compares(monkeypatch):
    # the interpolation baseline is scored on max_cells cells: drawing one per held-out cell
    # would pair tens of thousands of samples at once on an atlas
    drawn = []
    sample = tj.SnapshotPath.sample
    monkeypatch.setattr(tj.SnapshotPath, "sample", lambda self, tau, generator=None: drawn.append(len(tau)) or sample(self, tau, generator))
    table = tj.tl.holdout(_course(), "day", held_out=[1.0], max_cells=50, method="eam", n_iter=20, hidden_dims=(16,), progress=False)
    assert table["n_cells"].tolist() == [120] and drawn[-1] == 50


@pytest.mark.parametrize("lr", [1e-3, 1e-2])
def test_mixture_loss_is_bounded_on_well_separated_snapshots(lr):
    """The plain mixture (1 − λ)A + λB of clouds 15 standard deviations apart has an unbounded
    loss (on the Quick-start example it ran to −1.6e4 and pushed cells 385 units away); the transported, smoothed mixture
    must settle and move the cells to the next cloud at any learning rate."""
    adata = _course(sizes=(200, 120, 160), spacing=3.0)
    X, day = adata.X, adata.obs["day"].to_numpy()
    path = tj.SnapshotPath(X, day, interpolation="mixture")
    assert float(path.bandwidths.max()) > 0  # unequal sizes: the copies differ and are smoothed
    est = tj.ActionMatching("am", n_iter=600, lr=lr, hidden_dims=(64, 64), run=dict(progress=False)).fit(path)
    assert est.diagnostics_["warnings"] == []
    # loss of a bounded problem: about minus the kinetic energy of the motion (½·3.04²·2²·2 ≈ 37)
    assert -100 < est.diagnostics_["final_loss"] < 0
    pushed = est.simulate(X[day == 0], 0.0, 2.0, n_steps=50).X[-1]
    no_move = tj.metrics.w1(X[day == 0], X[day == 2])
    assert tj.metrics.w1(pushed, X[day == 2]) < no_move / 10


def test_off_support_pushes_are_measured_and_warned():
    """A model whose velocities are far too large pushes cells off the data: push, fate and
    decode measure it and warn."""
    adata = _course(sizes=(80, 80, 80), spacing=1.0)
    model = tj.fit(adata, "day", method="am", n_iter=200, hidden_dims=(32, 32), progress=False)
    with _no_warning():
        pushed = tj.tl.push(adata, model, 0.0, 1.0)
    assert pushed.uns["push"]["off_support_fraction"] < 0.1
    with torch.no_grad():  # inflate the action tenfold: every velocity ×10
        last = model.potential_.net[-1]
        last.weight.mul_(10.0)
        last.bias.mul_(10.0)
    with pytest.warns(tj.tl._support.OffSupportWarning, match="landed more than"):
        pushed = tj.tl.push(adata, model, 0.0, 2.0)
    assert pushed.uns["push"]["off_support_fraction"] > 0.5
    assert (pushed.obs["support_ratio"] > 3).mean() > 0.5
    adata.obs["blob"] = pd.Categorical(np.where(np.asarray(adata.X)[:, 1] > 0.5, "up", "down"))
    with pytest.warns(tj.tl._support.OffSupportWarning, match="extrapolation"):
        fates = tj.tl.fate(adata, model, 0.0, 2.0, cluster_key="blob")
    assert fates.off_support_fraction > 0.5


def _no_warning():
    import warnings
    from contextlib import contextmanager

    @contextmanager
    def guard():
        with warnings.catch_warnings():
            warnings.simplefilter("error", tj.tl._support.OffSupportWarning)
            yield

    return guard()
