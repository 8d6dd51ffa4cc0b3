"""Gene trends along simulated trajectories and fate drivers, against a bifurcation with known gene programmes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from matplotlib.figure import Figure

import trajinfer as tj

FAST = dict(method="eam", n_iter=500, lr=1e-2, hidden_dims=(64, 64), batch_size=128, progress=False, device="cpu")
TIMES = (0.0, 1.0, 2.0)


def two_branches(n: int = 150, seed: int = 0) -> AnnData:
    """A root splitting into two branches; gene A rises on branch 1 only, B on branch 2 only, C on both.

    Latent state: progress ``x = t`` and branch offset ``y = ±0.8 t`` (noise 0.15); A = 2·max(y, 0),
    B = 2·max(-y, 0), C = x, and five noise genes. ``obs["branch"]`` is "1" or "2" (meaningless
    at t = 0, where the branches have not started); the fit runs in a 3-component PCA.
    """
    rng = np.random.default_rng(seed)
    t = np.repeat(TIMES, n)
    side = rng.choice([1.0, -1.0], size=t.size)
    x = t + 0.15 * rng.standard_normal(t.size)
    y = 0.8 * side * t + 0.15 * rng.standard_normal(t.size)
    genes = {"A": 2.0 * np.maximum(y, 0.0), "B": 2.0 * np.maximum(-y, 0.0), "C": x}
    genes.update({f"noise{i}": 0.3 * rng.standard_normal(t.size) for i in range(5)})
    expression = np.column_stack(list(genes.values())) + 0.05 * rng.standard_normal((t.size, len(genes)))
    obs = pd.DataFrame({"time": t, "branch": np.where(side > 0, "1", "2")}, index=[f"c{i}" for i in range(t.size)])
    adata = AnnData(expression.astype(np.float32), obs=obs, var=pd.DataFrame(index=list(genes)))
    tj.pp.pca(adata, n_comps=3)
    return adata


@pytest.fixture(scope="module")
def fitted():
    adata = two_branches()
    model = tj.fit(adata, "time", **FAST)
    return adata, model


def _rise(trends: tj.tl.GeneTrends, fate: str, gene: str) -> float:
    rows = trends.table[(trends.table["fate"] == fate) & (trends.table["gene"] == gene)]
    return float(rows["mean"].iloc[-1] - rows["mean"].iloc[0])


@pytest.mark.parametrize("decoder", ["knn", "pca"])
def test_gene_trends_rise_on_their_own_branch_only(fitted, decoder):
    adata, model = fitted
    trends = tj.tl.gene_trends(adata, model, ["A", "B", "C"], "branch", decoder=decoder, n_steps=30)
    assert trends.fates == ["1", "2"] and trends.genes == ["A", "B", "C"]
    assert 0.2 < trends.fractions["1"] < 0.8 and trends.fractions.sum() == pytest.approx(1.0)
    # on the data A reaches 2 * 0.8 * 2 = 3.2 at t = 2 on branch 1 and stays 0 on branch 2
    assert _rise(trends, "1", "A") > 2.0 and abs(_rise(trends, "2", "A")) < 0.6
    assert _rise(trends, "2", "B") > 2.0 and abs(_rise(trends, "1", "B")) < 0.6
    assert _rise(trends, "1", "C") > 1.2 and _rise(trends, "2", "C") > 1.2  # progress (2 on the data): both branches
    table = trends.table
    assert set(table.columns) >= {"fate", "gene", "time", "mean", "sd", "lower", "upper", "n_cells"}
    assert np.allclose(np.unique(table["time"])[[0, -1]], [0.0, 2.0]) and len(table) == 2 * 3 * 31
    assert (table["lower"] <= table["upper"]).all() and ((table["lower"] <= table["mean"]) | (table["upper"] >= table["mean"])).all()
    assert (table["sd"] >= 0).all() and trends.observed_times == {"0.0": 0.0, "1.0": 1.0, "2.0": 2.0}
    assert trends.expression == ("X" if decoder == "knn" else "decoded PCA")


def test_fate_drivers_put_each_branch_gene_first(fitted):
    adata, model = fitted
    fates = tj.tl.fate(adata, model, from_time=1.0, to_time=2.0, cluster_key="branch")
    drivers = tj.tl.fate_drivers(adata, fates)
    assert list(drivers.columns) == ["1", "2"] and list(drivers.index) == list(adata.var_names)
    assert drivers["1"].idxmax() == "A" and drivers["2"].idxmax() == "B"
    assert drivers.loc["A", "1"] > 0.8 and drivers.loc["B", "2"] > 0.8
    assert drivers.loc["C"].abs().max() < 0.3  # rises on both branches: no fate's gene
    same = tj.tl.fate_drivers(adata, fates.probabilities, genes=["A", "C"])
    np.testing.assert_allclose(same.to_numpy(), drivers.loc[["A", "C"]].to_numpy())
    with pytest.raises(KeyError, match="not in adata.obs_names"):
        tj.tl.fate_drivers(adata[:10], fates)


def test_gene_trends_checks_its_inputs(fitted):
    adata, model = fitted
    with pytest.raises(KeyError, match="Z"):
        tj.tl.gene_trends(adata, model, ["A", "Z"], "branch")
    with pytest.raises(ValueError, match="decoder"):
        tj.tl.gene_trends(adata, model, "A", "branch", decoder="mean")
    with pytest.raises(ValueError, match="layer needs decoder='knn'"):
        tj.tl.gene_trends(adata, model, "A", "branch", decoder="pca", layer="counts")
    with pytest.raises(KeyError, match="layers has no"):
        tj.tl.gene_trends(adata, model, "A", "branch", layer="counts")


def test_pl_gene_trends_draws_one_panel_per_gene_and_a_line_per_fate(fitted, tmp_path):
    adata, model = fitted
    trends = tj.tl.gene_trends(adata, model, ["A", "B", "C"], "branch", from_time=0.0, to_time=2.0, n_steps=20)
    fig = tj.pl.gene_trends(trends)
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["A", "B", "C"]
    assert all(len(ax.lines) == 2 and len(ax.collections) == 2 for ax in panels)  # mean lines and bands
    np.testing.assert_allclose(panels[0].lines[0].get_ydata(), trends.table.query("fate == '1' and gene == 'A'")["mean"])
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels[0].startswith("1 (") and labels[1].startswith("2 (")
    fig.savefig(tmp_path / "trends.png")
    ax = tj.pl.gene_trends(trends, "A", fates=["2"], band=False)
    assert len(ax.lines) == 1 and not ax.collections and ax.get_xlabel() == "time"
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["0.0", "1.0", "2.0"]
    with pytest.raises(KeyError, match="not reached"):
        tj.pl.gene_trends(trends, "A", fates=["3"])
    with pytest.raises(ValueError, match="one panel each"):
        tj.pl.gene_trends(trends, ["A", "B"], ax=ax)
    plt.close("all")
