"""The AnnData front end: tj.fit, simulate/push, fate, growth, decoding, and bad input."""

from __future__ import annotations

import dataclasses

import anndata
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import trajinfer as tj
from trajinfer._neighbors import NeighborIndex, NeighborKernel

FAST = dict(n_iter=150, lr=3e-3, hidden_dims=(32, 32), batch_size=128, progress=False, device="cpu")


def _drifting(times=(0.0, 1.0, 2.0), n=60, d=3, seed=0) -> AnnData:
    """Gaussian clouds translating along the first axis by one unit per time unit."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n, d)) * 0.3 + np.eye(d)[0] * t for t in times])
    obs = pd.DataFrame({"day": np.repeat(times, n)}, index=[f"cell{i}" for i in range(len(X))])
    return AnnData(X=X.astype(np.float32), obs=obs)


def _snapshot(adata: AnnData) -> dict:
    return {
        "obs": list(adata.obs.columns), "obsm": sorted(adata.obsm.keys()), "uns": sorted(adata.uns.keys()),
        "X": np.array(adata.X, copy=True), "varm": sorted(adata.varm.keys()),
    }


def _assert_unchanged(adata: AnnData, before: dict) -> None:
    after = _snapshot(adata)
    for key in ("obs", "obsm", "uns", "varm"):
        assert after[key] == before[key], key
    np.testing.assert_array_equal(after["X"], before["X"])


def test_fit_writes_velocity_uns_and_copy_leaves_input_alone():
    adata = _drifting()
    before = _snapshot(adata)
    model, annotated = tj.fit(adata, "day", method="am", interpolation="ot", copy=True, **FAST)
    _assert_unchanged(adata, before)
    assert annotated.obsm["tj_velocity"].shape == (adata.n_obs, 3)
    uns = annotated.uns["tj"]
    assert uns["use_rep"] == "X" and uns["time_key"] == "day"
    assert uns["params"]["pairing"] == "full"  # "auto" pairs these small snapshots as a whole
    assert len(uns["loss_curve"]) == FAST["n_iter"]
    np.testing.assert_allclose(uns["t_range"], [0.0, 2.0])
    # on the OT path the true velocity is the drift, +1 per time unit on the first axis; a
    # 150-iteration fit gets the direction and most of the magnitude
    assert np.mean(annotated.obsm["tj_velocity"][:, 0]) > 0.7
    in_place = tj.fit(adata, "day", method="am", key_added="run", **FAST)
    assert "run_velocity" in adata.obsm and in_place.metadata_["key_added"] == "run"


def test_time_spacing_is_preserved_for_numeric_and_range_labels():
    adata = _drifting(times=(0.0, 3.0, 10.0))
    adata.obs["day_cat"] = pd.Categorical(adata.obs["day"].map(lambda v: f"{int(v)}"), categories=["0", "3", "10"], ordered=True)
    model = tj.fit(adata, "day_cat", method="am", **FAST)
    assert model.t_range_ == (0.0, 10.0)
    assert model.metadata_["time_values"] == [0.0, 3.0, 10.0]
    ranges = tj.pp.time_labels(AnnData(obs=pd.DataFrame({"d": ["0-3", "6-9", "24-27"]})), "d")
    assert list(ranges.mapping.values()) == [1.5, 7.5, 25.5]
    ordered_words = AnnData(obs=pd.DataFrame({"s": pd.Categorical(["late", "early", "mid"], categories=["early", "mid", "late"], ordered=True)}))
    with pytest.warns(UserWarning, match="EQUALLY SPACED"):
        assert tj.pp.time_labels(ordered_words, "s").values.tolist() == [2.0, 0.0, 1.0]


def _times(labels) -> dict:
    return tj.pp.time_labels(AnnData(obs=pd.DataFrame({"d": labels}, index=[str(i) for i in range(len(labels))])), "d").mapping


@pytest.mark.parametrize(
    "labels, expected",
    [
        (["day0", "day3", "day7", "day10", "day14"], [0.0, 3.0, 7.0, 10.0, 14.0]),
        (["D7", "D0", "D3"], [0.0, 3.0, 7.0]),
        (["E8.5", "E10.5", "E9.5"], [8.5, 9.5, 10.5]),
        (["12h", "0h", "6h"], [0.0, 6.0, 12.0]),
        (["day 0-3", "day 6 to 9", "Day 24-27"], [1.5, 7.5, 25.5]),
        (pd.Categorical(["day14", "day0", "day3"], categories=["day0", "day3", "day14"], ordered=True), [0.0, 3.0, 14.0]),
    ],
    ids=["day", "D", "E-stage", "hours", "ranges-with-words", "ordered-with-numbers"],
)
def test_time_labels_read_numbers_in_words(labels, expected):
    assert list(_times(labels).values()) == expected


def test_time_labels_intervals_use_midpoints_and_ordered_words_warn():
    binned = pd.cut(np.array([0.5, 1.5, 4.0, 9.0, 9.5]), bins=[0, 1, 2, 5, 10])
    assert list(_times(binned).values()) == [0.5, 1.5, 3.5, 7.5]
    ordered = pd.Categorical(["early", "mid", "late"], categories=["early", "mid", "late"], ordered=True)
    with pytest.warns(UserWarning, match="EQUALLY SPACED"):
        assert list(_times(ordered).values()) == [0.0, 1.0, 2.0]
    mixed = pd.Categorical(["E18.5", "P0", "P3"], categories=["E18.5", "P0", "P3"], ordered=True)
    with pytest.warns(UserWarning, match="one unit"):  # embryonic and postnatal days are different units
        assert list(_times(mixed).values()) == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="mix units"):
        _times(["E18.5", "P0"])
    with pytest.raises(ValueError, match="ordered categorical"):
        _times(["batch1_day3", "batch1_day4"])  # two numbers: not read as a time


def test_eam_default_sigma_is_data_driven():
    adata = _drifting()
    model = tj.fit(adata, "day", method="eam", **FAST)
    X = adata.X
    expected = tj.tl.default_sigma(X.astype(float), adata.obs["day"].to_numpy())
    assert model.sigma == pytest.approx(expected)
    # clouds of std 0.3 per feature, unit spacing: sigma = 0.1 * 0.3
    assert expected == pytest.approx(0.03, rel=0.15)
    assert adata.uns["tj"]["params"]["sigma"] == pytest.approx(expected)


def test_simulate_push_and_backward():
    adata = _drifting()
    model = tj.fit(adata, "day", method="am", **dict(FAST, n_iter=400))
    traj = tj.tl.simulate(adata, model, from_time=0.0, to_time=2.0, n_steps=20)
    assert traj.X.shape == (21, 60, 3)
    assert 1.2 < traj.X[-1][:, 0].mean() < 2.8  # true mean 2.0; a 400-iteration fit lands near it
    pushed = tj.tl.push(adata, model, 0.0, 1.0)
    assert pushed.n_obs == 60 and np.allclose(pushed.obs["weight"], 1.0)
    assert pushed.obs["source"].iloc[0] == "cell0"
    back = tj.tl.simulate(adata, model, from_time=2.0, to_time=0.0, n_steps=20)
    assert back.X[-1][:, 0].mean() < back.X[0][:, 0].mean() - 1.0
    rk4 = tj.tl.simulate(adata, model, 0.0, 2.0, n_steps=5, solver="rk4")
    with pytest.warns(FutureWarning, match="solver"):
        old = tj.tl.simulate(adata, model, 0.0, 2.0, n_steps=5, method="rk4")
    np.testing.assert_array_equal(old.X, rk4.X)


def test_fate_tables_are_normalised_and_follow_the_branches():
    rng = np.random.default_rng(0)
    n = 80
    side = np.where(rng.random(2 * n) < 0.5, -1.0, 1.0)
    early = np.column_stack([side[:n] * 1.0, rng.normal(size=n) * 0.2])
    late = np.column_stack([side[n:] * 3.0, rng.normal(size=n) * 0.2])
    X = np.concatenate([early, late]) + rng.normal(size=(2 * n, 2)) * 0.1
    obs = pd.DataFrame({"t": np.repeat([0.0, 1.0], n), "side": np.where(side > 0, "right", "left")})
    obs.index = obs.index.astype(str)
    adata = AnnData(X=X.astype(np.float32), obs=obs)
    model = tj.fit(adata, "t", method="am", interpolation="ot", **dict(FAST, n_iter=400))
    result = tj.tl.fate(adata, model, 0.0, 1.0, cluster_key="side")
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0)
    np.testing.assert_allclose(result.transition.sum(axis=1), 1.0)
    # cells on each side stay on their side: the transition matrix is diagonal-dominant
    assert result.transition.loc["left", "left"] > 0.8 and result.transition.loc["right", "right"] > 0.8


def test_uam_growth_written_and_summarised():
    adata = _drifting()
    model = tj.fit(adata, "day", method="uam", masses=[1.0, 2.0, 4.0], **FAST)
    assert "tj_growth" in adata.obs
    rates = tj.tl.growth_rates(adata, model)
    assert rates.shape == (adata.n_obs,)
    # population doubles per time unit: mean growth rate near log 2 = 0.69 per unit (loose: short fit)
    assert 0.2 < rates.mean() < 1.5
    adata.obs["cluster"] = np.where(adata.X[:, 1] > 0, "a", "b")
    table = tj.tl.growth_rates(adata, model, cluster_key="cluster")
    assert set(table.index) == {"a", "b"} and table.shape[1] == 3
    with pytest.raises(ValueError, match="uam"):
        tj.tl.growth_rates(adata, tj.fit(adata, "day", method="am", key_added="x", **FAST))


def test_pca_fallback_and_decode_round_trip():
    rng = np.random.default_rng(1)
    n, genes = 90, 60
    X = rng.normal(size=(n, genes)) + np.repeat([0.0, 1.0, 2.0], 30)[:, None] * rng.normal(size=genes)
    adata = AnnData(X=X.astype(np.float32), obs=pd.DataFrame({"day": np.repeat([0, 1, 2], 30)}, index=[str(i) for i in range(n)]))
    with pytest.warns(UserWarning, match="PCA"):
        model = tj.fit(adata, "day", method="am", n_comps=5, **FAST)
    assert adata.obsm["X_pca"].shape == (n, 5) and model.metadata_["use_rep"] == "X_pca"
    full = tj.pp.pca(adata.copy(), n_comps=genes, inplace=False)
    decoded = tj.tl.decode(AnnData(X=X, varm={"PCs": full["varm"]}, uns={"pca": full["uns"]}), full["obsm"])
    assert isinstance(decoded, AnnData) and list(decoded.var_names) == list(adata.var_names)
    np.testing.assert_allclose(decoded.X, X, atol=1e-3)  # all components: exact up to float32 rounding
    np.testing.assert_allclose(decoded.obsm["X_pca"], full["obsm"], atol=1e-6)
    traj = tj.tl.simulate(adata, model, 0, 2, n_steps=5)
    paths = tj.tl.decode(adata, traj)
    assert paths.shape == (6 * 30, genes)
    assert paths.obs["step"].tolist() == np.repeat(np.arange(6), 30).tolist()
    np.testing.assert_allclose(paths.obs["time"].to_numpy()[-30:], 2.0)
    np.testing.assert_allclose(paths.obsm["X_pca"][-30:], traj.X[-1], atol=1e-6)
    assert tj.tl.decode(adata, traj.X).shape == (6 * 30, genes)

    # a PCA representation with loadings: push returns cells in gene space, positions in obsm
    pushed = tj.tl.push(adata, model, 0, 2, n_steps=5)
    assert pushed.shape == (30, genes) and list(pushed.var_names) == list(adata.var_names)
    np.testing.assert_allclose(pushed.X, tj.tl.decode(adata, pushed.obsm["X_pca"]).X, atol=1e-5)
    assert pushed.obs["source"].iloc[0] == "0" and np.allclose(pushed.obs["weight"], 1.0)


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda a: None, KeyError, "no column 'missing'"),
        (lambda a: a.obs.__setitem__("day", np.r_[[5.0], a.obs["day"].to_numpy()[1:]]), ValueError, "1 sample"),
        (lambda a: a.obs.__setitem__("day", 0.0), ValueError, "two distinct time points"),
        (lambda a: a.X.__setitem__((0, 0), np.nan), ValueError, "NaN or Inf"),
        (lambda a: a.obs.__setitem__("day", pd.Categorical(np.where(a.obs["day"] > 0, "b", "a"))), ValueError, "ordered categorical"),
    ],
    ids=["missing-time-key", "single-cell-time", "one-time-point", "nan", "unorderable"],
)
def test_bad_input_names_the_fix_and_leaves_adata_unchanged(mutate, error, match):
    adata = _drifting()
    mutate(adata)
    before = _snapshot(adata)
    time_key = "missing" if match.startswith("no column") else "day"
    with pytest.raises(error, match=match):
        tj.fit(adata, time_key, method="am", **FAST)
    _assert_unchanged(adata, before)


def test_missing_representation_and_time_outside_range():
    adata = _drifting()
    with pytest.raises(KeyError, match="use_rep"):
        tj.fit(adata, "day", use_rep="X_umap", **FAST)
    model = tj.fit(adata, "day", method="am", **FAST)
    with pytest.raises(ValueError, match="outside the fitted time range"):
        tj.tl.simulate(adata, model, from_time=0.0, to_time=7.0)
    with pytest.raises(ValueError, match="Unknown time label"):
        tj.tl.simulate(adata, model, from_time="day9")


def test_dyngen_through_a_scanpy_pipeline(shared_data):
    sc = pytest.importorskip("scanpy")
    adata = tj.datasets.dyngen(shared_data)  # X holds log2(1 + counts): no normalize_total / log1p
    sc.pp.pca(adata, n_comps=10)
    model = tj.fit(adata, "time_bin", method="eam", **FAST)
    assert adata.obsm["tj_velocity"].shape == (adata.n_obs, 10)
    assert model.metadata_["use_rep"] == "X_pca" and len(model.metadata_["time_values"]) == 5
    assert np.all(np.isfinite(adata.obsm["tj_velocity"]))


@pytest.mark.slow
def test_embryoid_body_one_step_beats_no_move(shared_data):
    """Train on val, push test cells one step: W1 well below the no-move baseline.

    No-move W1 on the test split is 1.59 1.43 0.85 1.76 (k = 1..4), the finite-sample floor
    .60 .69 .72 .76. A 600-iteration OT-path fit reaches about .75-.85 at k = 1, 2, 4; the test
    asks for a 25% improvement at those steps (k = 3 moves little, so only no-worse there).
    """
    adata = tj.datasets.embryoid_body(shared_data, split="both")
    train = adata[adata.obs["split"] == "val"].copy()
    test = adata[adata.obs["split"] == "test"]
    model = tj.fit(train, "time", method="eam", interpolation="ot", n_iter=600, hidden_dims=(64, 64), batch_size=256, progress=False, device="cpu")
    X, t = test.obsm["X_pca"], test.obs["time"].to_numpy()
    for k in range(1, 5):
        source, target = X[t == k - 1], X[t == k]
        pushed = model.simulate(source, k - 1, k, n_steps=20, seed=k).X[-1]
        w1_model, w1_still = tj.metrics.w1(pushed, target), tj.metrics.w1(source, target)
        limit = w1_still * (1.05 if k == 3 else 0.75)
        assert w1_model < limit, (k, w1_model, w1_still)


@pytest.mark.parametrize("method", ["am", "eam"])
def test_fit_record_is_the_same_on_the_model_in_uns_and_after_saving(method, tmp_path):
    adata = _drifting(times=(0.0, 3.0, 10.0))
    model = tj.fit(adata, "day", method=method, interpolation="ot", key_added="am1", **dict(FAST, n_iter=30))
    record = tj.tl.fit_record(model)
    assert record == tj.tl.FitRecord(
        time_key="day", time_labels=("0.0", "3.0", "10.0"), time_values=(0.0, 3.0, 10.0), use_rep="X", n_comps=3,
        interpolation="ot", sigma=model.sigma, key_added="am1",
    )
    assert (record.sigma is None) == (method == "am")
    assert tj.tl.fit_record(adata, key="am1") == record
    assert tj.tl.fit_record(record) is record
    assert tj.tl.FitRecord.from_dict(record.to_dict()) == record
    assert model.metadata_ == record.to_dict() and model.metadata_["time_values"] == [0.0, 3.0, 10.0]
    adata.write_h5ad(tmp_path / "fitted.h5ad")
    assert tj.tl.fit_record(anndata.read_h5ad(tmp_path / "fitted.h5ad"), key="am1") == record
    model.save(tmp_path / "model.pt")
    assert tj.tl.fit_record(tj.load(tmp_path / "model.pt", device="cpu")) == record
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.time_key = "other"
    with pytest.raises(ValueError, match=r"adata.uns\['tj'\] holds no record of tj.fit"):
        tj.tl.fit_record(adata)
    on_arrays = tj.ActionMatching(method="am", n_iter=5, hidden_dims=(8,), run=dict(device="cpu", progress=False))
    on_arrays.fit(tj.SnapshotPath(adata.X, adata.obs["day"].to_numpy()))
    with pytest.raises(ValueError, match="not fitted with tj.fit on an AnnData"):
        tj.tl.fit_record(on_arrays)


def test_record_label_time_reads_labels_and_numbers():
    record = tj.tl.FitRecord(
        time_key="stage", time_labels=("day0", "day3"), time_values=(0.0, 3.0), use_rep="X_pca", n_comps=2,
        interpolation="ot", sigma=None, key_added="tj",
    )
    assert record.label_time("day3") == 3.0 and record.label_time(1.5) == 1.5 and record.label_time("2.5") == 2.5
    with pytest.raises(ValueError, match=r"Unknown time label 'day9'; known labels: \['day0', 'day3'\]"):
        record.label_time("day9")


def test_cells_at_is_public_and_matches_labels_then_numbers():
    adata = _drifting(times=(0.0, 3.0, 10.0))
    adata.obs["stage"] = pd.Categorical(adata.obs["day"].map(lambda v: f"day{int(v)}"), categories=["day0", "day3", "day10"], ordered=True)
    numeric = tj.fit(adata, "day", method="am", key_added="numeric", **dict(FAST, n_iter=20))
    named = tj.fit(adata, "stage", method="am", key_added="named", **dict(FAST, n_iter=20))
    at_three = adata.obs["day"].to_numpy() == 3.0
    assert "cells_at" in tj.tl.__all__
    np.testing.assert_array_equal(tj.tl.cells_at(adata, numeric, "3.0"), at_three)
    np.testing.assert_array_equal(tj.tl.cells_at(adata, numeric, 3), at_three)  # "3" is no label: the time 3.0
    np.testing.assert_array_equal(tj.tl.cells_at(adata, tj.tl.fit_record(named), "day3"), at_three)
    with pytest.raises(ValueError, match="No cells with day == 5.0"):
        tj.tl.cells_at(adata, numeric, 5.0)
    with pytest.raises(ValueError, match="Unknown time label 'day9'"):
        tj.tl.cells_at(adata, named, "day9")


@pytest.mark.filterwarnings("ignore::trajinfer.tl._support.OffSupportWarning")
def test_push_fate_and_pull_read_the_representation_once(monkeypatch):
    adata = _drifting()
    adata.obs["half"] = np.where(adata.X[:, 1] > 0, "up", "down")
    model = tj.fit(adata, "day", method="eam", **dict(FAST, n_iter=20))
    calls = {"representation": 0, "index": 0}
    representation = tj.tl.FitRecord.representation

    def counted_representation(self, data):
        calls["representation"] += 1
        return representation(self, data)

    class CountedNeighbors(NeighborIndex):
        def __init__(self, reference, **kwargs):
            calls["index"] += 1
            super().__init__(reference, **kwargs)

    monkeypatch.setattr(tj.tl.FitRecord, "representation", counted_representation)
    monkeypatch.setattr(tj.tl._support, "NeighborIndex", CountedNeighbors)
    tj.tl.push(adata, model, 0.0, 1.0, n_steps=5)
    assert calls == {"representation": 1, "index": 1}
    # fate measures the support with the kernels it reads fates from: one per time point of its
    # chain (where the cells of the step before land, and their own neighbourhood), however many repeats
    monkeypatch.setattr(tj.tl._fate, "NeighborKernel", type("CountedKernel", (NeighborKernel,), {
        "__init__": lambda self, reference, k: calls.__setitem__("index", calls["index"] + 1) or NeighborKernel.__init__(self, reference, k),
    }))
    calls.update(representation=0, index=0)
    tj.tl.fate(adata, model, 0.0, 2.0, cluster_key="half", n_repeats=3, n_steps=5)
    assert calls == {"representation": 1, "index": 3}  # time points 0, 1, 2
    calls.update(representation=0, index=0)
    tj.tl.pull(adata, model, 2.0, 0.0, cluster_key="half", n_repeats=2, n_steps=5)
    assert calls["representation"] == 1
