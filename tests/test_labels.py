"""Cluster labels in the order people read them (fate and pull tables), and legends that name what a plot draws."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import trajinfer as tj
from trajinfer.tl._utils import label_order

FAST = dict(method="am", interpolation="ot", n_iter=60, hidden_dims=(16, 16), batch_size=64, progress=False, device="cpu")
NUMBERS = ["0", "1", "2", "10", "12"]


@pytest.fixture(scope="module")
def fitted():
    """Two days of a 2-D cloud; cells labelled by which fifth of the first axis they are in, with numeric labels."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + [1.0, 0.0]])
    day = np.repeat([0.0, 1.0], 200)
    band = np.digitize(X[:, 0], np.quantile(X[:, 0], [0.2, 0.4, 0.6, 0.8]))
    obs = pd.DataFrame({"day": day, "cluster": np.array(NUMBERS)[band], "cluster_int": np.array([0, 1, 2, 10, 12])[band]},
                       index=[f"c{i}" for i in range(len(X))])
    adata = AnnData(X.astype(np.float32), obs=obs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tj.fit(adata, "day", **FAST)
    return adata, model


@pytest.mark.parametrize("key", ["cluster", "cluster_int"])
def test_fate_and_pull_tables_sort_numeric_labels_numerically(fitted, key):
    adata, model = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fates = tj.tl.fate(adata, model, 0.0, 1.0, cluster_key=key)
        ancestry = tj.tl.pull(adata, model, 1.0, 0.0, cluster_key=key)
    for table in (fates.probabilities.T, fates.transition, fates.transition.T, ancestry.probabilities.T, ancestry.transition,
                  ancestry.transition.T):
        assert list(table.index) == NUMBERS  # not 0, 1, 10, 12, 2
    np.testing.assert_allclose(fates.transition.sum(axis=1), 1.0)


def test_label_order_follows_categories_then_numbers_then_letters():
    adata = AnnData(np.zeros((4, 1), dtype=np.float32), obs=pd.DataFrame({
        "ordered": pd.Categorical(["late", "early", "mid", "late"], categories=["early", "mid", "late"]),
        "numbers": ["10", "2", "1.5", "2"],
        "words": ["b", "a", "c", "a"],
    }, index=list("abcd")))
    assert label_order(adata, "ordered", ["late", "early"]) == ["early", "late"]
    assert label_order(adata, "numbers", ["10", "2", "1.5"]) == ["1.5", "2", "10"]
    assert label_order(adata, "words", ["b", "a", "c"]) == ["a", "b", "c"]


@pytest.mark.parametrize("color", [None, "cluster"])
def test_trajectories_legend_names_the_start_and_end_markers(fitted, color):
    adata, model = fitted
    traj = tj.tl.simulate(adata, model, 0.0, 1.0, n_steps=5)
    ax = tj.pl.trajectories(adata, traj, color=color, n_trajectories=10)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[-2:] == ["path start", "path end"]
    if color == "cluster":  # the categories come first, under their title
        assert labels[:-2] == NUMBERS and ax.get_legend().get_title().get_text() == "cluster"
    plt.close("all")
