"""The synthetic atlas (``tj.datasets.synthetic_atlas``) and the atlas benchmark's smoke run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_benchmark

import trajinfer as tj


@pytest.fixture(scope="module")
def atlas():
    return tj.datasets.synthetic_atlas(6000, seed=3)


def test_shapes_and_keys(atlas):
    assert atlas.shape == (6000, 200)
    assert atlas.X.dtype == np.float32
    assert atlas.obsm["X_pca"].shape == (6000, 50) and atlas.obsm["X_pca"].dtype == np.float32
    assert atlas.obsm["velocity_true"].shape == (6000, 50)
    assert atlas.varm["PCs"].shape == (200, 50)
    assert sorted(np.unique(atlas.obs["time"])) == list(np.arange(20.0))
    assert atlas.obs_names.is_unique
    small = tj.datasets.synthetic_atlas(300, n_times=6, n_pcs=10, n_genes=12, seed=1)
    assert small.shape == (300, 12) and small.obsm["X_pca"].shape == (300, 10)


def test_x_pca_is_the_projection_of_the_genes(atlas):
    centred = atlas.X - atlas.uns["pca"]["mean"]
    np.testing.assert_allclose(centred @ atlas.varm["PCs"], atlas.obsm["X_pca"], atol=1e-4)
    decoded = tj.tl.decode(atlas, atlas.obsm["X_pca"][:50])
    np.testing.assert_allclose(decoded.X, atlas.X[:50], atol=1e-4)


def test_branches_and_fates(atlas):
    assert set(atlas.obs["fate"]) == {"A", "B1", "B2"}
    assert set(atlas.obs["branch"]) == {"trunk", "A", "B", "B1", "B2"}
    times = atlas.obs["time"].to_numpy()
    branch = atlas.obs["branch"].astype(str).to_numpy()
    assert set(branch[times == 0]) == {"trunk"} and set(branch[times == 19]) == {"A", "B1", "B2"}
    # a cell on a branch ends in a fate of that branch
    fate = atlas.obs["fate"].astype(str).to_numpy()
    assert set(fate[branch == "B"]) <= {"B1", "B2"} and set(fate[branch == "A"]) == {"A"}
    # the lineages separate: at the last time point the fates are far apart in X_pca
    last = atlas.obsm["X_pca"][times == 19]
    centres = {f: last[fate[times == 19] == f].mean(0) for f in ("A", "B1", "B2")}
    spread = np.sqrt(np.mean(np.var(last[fate[times == 19] == "A"], axis=0)))
    assert min(np.linalg.norm(centres[a] - centres[b]) for a, b in (("A", "B1"), ("A", "B2"), ("B1", "B2"))) > 3 * spread


def test_unequal_counts_and_growth(atlas):
    counts = np.asarray(atlas.uns["atlas"]["cells_per_time"])
    assert counts.sum() == atlas.n_obs and len(counts) == 20
    assert counts.max() > 1.5 * counts.min()
    np.testing.assert_array_equal(counts, atlas.obs["time"].value_counts().sort_index().to_numpy())
    times = atlas.obs["time"].to_numpy()
    share = [np.mean(atlas.obs["fate"].to_numpy()[times == t] == "B2") for t in range(20)]
    assert np.mean(share[-3:]) > 1.8 * np.mean(share[:5])  # B2 grows fourfold from its birth
    assert counts[-3:].sum() > counts[:3].sum()


def test_true_velocity_moves_the_group_means(atlas):
    """Per lineage, the mean position moves between time points as the mean true velocity says."""
    times = atlas.obs["time"].to_numpy()
    fate = atlas.obs["fate"].astype(str).to_numpy()
    X, V = atlas.obsm["X_pca"][:, :8], atlas.obsm["velocity_true"][:, :8]
    moved, predicted = [], []
    for f in ("A", "B1", "B2"):
        for t in range(19):
            now, nxt = (times == t) & (fate == f), (times == t + 1) & (fate == f)
            moved.append(X[nxt].mean(0) - X[now].mean(0))
            predicted.append(0.5 * (V[now].mean(0) + V[nxt].mean(0)))
    moved, predicted = np.concatenate(moved), np.concatenate(predicted)
    assert np.corrcoef(moved, predicted)[0, 1] > 0.9
    assert np.all(atlas.obsm["velocity_true"][:, 8:] == 0)


def test_determinism_by_seed():
    a, b = tj.datasets.synthetic_atlas(500, seed=7), tj.datasets.synthetic_atlas(500, seed=7)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.obs["fate"], b.obs["fate"])
    c = tj.datasets.synthetic_atlas(500, seed=8)
    assert not np.array_equal(a.obsm["X_pca"], c.obsm["X_pca"])


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_cells"):
        tj.datasets.synthetic_atlas(10)
    with pytest.raises(ValueError, match="n_genes"):
        tj.datasets.synthetic_atlas(1000, n_genes=10)
    with pytest.raises(TypeError, match="seed"):
        tj.datasets.synthetic_atlas(1000, seed=1.5)


def test_atlas_benchmark_quick(tmp_path):
    atlas_bench = load_benchmark("atlas")
    atlas_bench.main(["--quick", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "atlas.json").read_text())
    assert {"command", "date", "git_commit", "machine", "torch"} <= set(payload["provenance"])
    assert "--quick" in payload["provenance"]["command"]
    assert payload["provenance"]["machine"]["load_average_at_start"] is not None
    assert payload["moscot"]["status"].startswith("not run")
    (size,) = payload["sizes"]
    assert "error" not in size, size.get("error")
    assert set(size["stages"]) == set(atlas_bench.STAGES)
    for name, rec in size["stages"].items():
        if "skipped" in rec:
            assert name == "cellrank_kernel"
            continue
        assert "error" not in rec, (name, rec["error"])
        assert rec["seconds"] > 0 and "peak_increase_mb" in rec and "cpu_seconds" in rec
    accuracy = size["accuracy"]
    assert accuracy["holdout"]["w1_model"] > 0 and 0 <= accuracy["fate_auroc"]["mean"] <= 1
    assert 0.5 < size["truth"]["fate_auroc_oracle"]["mean"] <= 1
    md = (tmp_path / "atlas.md").read_text()
    assert "trajinfer `fit`" in md and "trajinfer (defaults)" in md
    assert (tmp_path / "atlas.png").stat().st_size > 0
