"""Tests of the bundled data set loaders and the download helper."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import ot
import pandas as pd
import pytest

from trajinfer import datasets
from trajinfer.datasets import _download, _embryoid

# Finite-sample floor of the NLSB benchmark: W1(val_k, test_k) in the standardised 5-D space.
EB_W1_FLOOR = {1: 0.596, 2: 0.688, 3: 0.722, 4: 0.757}


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRAJINFER_DATA", str(cache))
    return cache


def _w1(x: np.ndarray, y: np.ndarray) -> float:
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    return float(ot.emd2(a, b, ot.dist(x.astype(np.float64), y.astype(np.float64), metric="euclidean")))


def _write_full_eb(file: Path, labels: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(labels)
    arrays = {
        "pcs": rng.normal(3.0, 2.0, (n, 10)),
        "sample_labels": labels,
        "pcs_delta": rng.normal(size=(n, 10)),
        "phate": rng.normal(size=(n, 2)),
    }
    np.savez(file, **arrays)
    return arrays


# --- petals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_times", [5, 10, 15])
def test_petals_labels_and_layout(n_times):
    adata = datasets.petals(n_times=n_times, n_per_time=40)
    assert adata.shape == (40 * n_times, 2)
    assert adata.X.dtype == np.float32
    counts = adata.obs["time"].value_counts().sort_index()
    np.testing.assert_array_equal(counts.index.to_numpy(), np.arange(n_times, dtype=float))
    assert (counts == 40).all()
    assert isinstance(adata.obs["petal"].dtype, pd.CategoricalDtype)
    assert set(adata.obs["petal"].cat.categories) == {"up", "right", "down", "left"}
    assert "X_pca" not in adata.obsm


def test_petals_deterministic_by_seed():
    first, again = datasets.petals(seed=3), datasets.petals(seed=3)
    np.testing.assert_array_equal(first.X, again.X)
    assert not np.allclose(first.X, datasets.petals(seed=4).X)
    from_generator = datasets.petals(seed=np.random.default_rng(3))
    np.testing.assert_array_equal(from_generator.X, datasets.petals(seed=np.random.default_rng(3)).X)


def test_petals_radius_grows_with_time():
    adata = datasets.petals(n_times=10)
    radius = pd.Series(np.linalg.norm(adata.X, axis=1)).groupby(adata.obs["time"].to_numpy()).mean()
    assert np.all(np.diff(radius.to_numpy()) > 0)
    assert radius.iloc[0] < 0.2 and radius.iloc[-1] > 0.85


def test_petals_branch_then_merge():
    adata = datasets.petals(n_times=5, n_per_time=400, noise=0.0)
    up = adata[adata.obs["petal"] == "up"]
    width = pd.Series(np.abs(up.X[:, 0])).groupby(up.obs["time"].to_numpy()).mean()
    assert width[2.0] > 2 * width[0.0] and width[2.0] > 2 * width[4.0]
    assert np.allclose(np.abs(up.X[:, 0]), 0.25 * (1 - np.abs(2 * up.X[:, 1] - 1)), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_times": 1}, "n_times"),
        ({"n_times": 2.5}, "n_times"),
        ({"n_times": True}, "n_times"),
        ({"n_per_time": 0}, "n_per_time"),
        ({"noise": -0.1}, "noise"),
    ],
)
def test_petals_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.petals(**kwargs)


def test_petals_rejects_bad_seed():
    with pytest.raises(TypeError, match="seed"):
        datasets.petals(seed="zero")


# --- dyngen -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dyngen_data(shared_data):
    return datasets.dyngen(shared_data)


def test_dyngen_shape_and_values(dyngen_data, shared_data):
    adata = dyngen_data
    assert adata.shape == (1000, 135)
    assert adata.X.dtype == np.float32 and np.isfinite(adata.X).all()
    assert adata.var_names[0] == "Burn1_TF1"
    raw = pd.read_csv(shared_data / "mioflow_dyngen_expression_bif.csv").to_numpy()
    np.testing.assert_allclose(adata.X, raw, rtol=1e-6)
    counts = adata.layers["counts"]
    np.testing.assert_array_equal(counts, np.round(counts))
    np.testing.assert_allclose(np.log2(1 + counts), adata.X, atol=1e-5)


def test_dyngen_obs_and_junk_line_dropped(dyngen_data):
    obs = dyngen_data.obs
    assert list(obs.index[:2]) == ["cell1", "cell2"] and obs.index[-1] == "cell1000"
    assert obs.index.is_unique and not obs.isna().any().any()
    assert {"sim_time", "simulation_i", "step_ix", "time_bin", "time"} <= set(obs.columns)
    assert sorted(obs["simulation_i"].unique()) == list(range(1, 11))
    assert obs["sim_time"].min() == 0 and obs["sim_time"].max() == 1000


def test_dyngen_time_bins_ordered(dyngen_data):
    obs = dyngen_data.obs
    assert obs["time_bin"].cat.ordered
    assert list(obs["time_bin"].cat.categories) == ["0-200", "200-400", "400-600", "600-800", "800-1000"]
    np.testing.assert_array_equal(obs["time"].to_numpy(), obs["time_bin"].cat.codes.to_numpy().astype(float))
    order = np.argsort(obs["sim_time"].to_numpy(), kind="stable")
    assert np.all(np.diff(obs["time"].to_numpy()[order]) >= 0)
    assert obs["time"].value_counts().sort_index().tolist() == [367, 208, 180, 131, 114]


def test_dyngen_two_paths_and_n_bins(shared_data):
    files = (shared_data / "mioflow_dyngen_expression_bif.csv", shared_data / "mioflow_dyngen_cell_info.csv")
    adata = datasets.dyngen(files, n_bins=3)
    assert adata.obs["time_bin"].cat.categories.size == 3
    assert set(adata.obs["time"]) == {0.0, 1.0, 2.0}


def _write_dyngen(directory: Path, expression: pd.DataFrame, index: bool) -> Path:
    directory.mkdir()
    info = "cell_id,step_ix,simulation_i,sim_time,,\nc1,1,1,0,,\nc2,2,1,5,,\nc3,3,2,10,,\n,,,,,a\n"
    (directory / "mioflow_dyngen_cell_info.csv").write_text(info)
    expression.to_csv(directory / "mioflow_dyngen_expression_bif.csv", index=index)
    return directory


def test_dyngen_joins_on_cell_id(tmp_path):
    expression = pd.DataFrame({"g1": [3.0, 1.0, 2.0], "g2": [0.0, 0.0, 1.0]}, index=["c3", "c1", "c2"])
    adata = datasets.dyngen(_write_dyngen(tmp_path / "d", expression, index=True), n_bins=2)
    assert list(adata.obs_names) == ["c1", "c2", "c3"]
    np.testing.assert_array_equal(adata[:, "g1"].X.ravel(), [1.0, 2.0, 3.0])
    assert adata.obs["time"].tolist() == [0.0, 0.0, 1.0]  # bins are right-closed, as pandas.cut


def test_dyngen_mismatched_files(tmp_path):
    expression = pd.DataFrame({"g1": [1.0, 2.0, 3.0]}, index=["c1", "c2", "c9"])
    with pytest.raises(ValueError, match="Cell ids"):
        datasets.dyngen(_write_dyngen(tmp_path / "ids", expression, index=True))
    with pytest.raises(ValueError, match="rows"):
        datasets.dyngen(_write_dyngen(tmp_path / "rows", pd.DataFrame({"g1": [1.0, 2.0]}), index=False))


def test_dyngen_missing_files(tmp_path, empty_cache):
    with pytest.raises(FileNotFoundError, match="mioflow_dyngen_expression_bif.csv"):
        datasets.dyngen(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(empty_cache)):
        datasets.dyngen()
    with pytest.raises(ValueError, match="n_bins"):
        datasets.dyngen(tmp_path, n_bins=0)


# --- embryoid body ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eb_both(shared_data):
    return datasets.embryoid_body(shared_data, split="both")


def test_eb_val_standardised(shared_data):
    adata = datasets.embryoid_body(shared_data, split="val")
    assert adata.shape == (1000, 100)
    assert adata.obs["time"].value_counts().sort_index().tolist() == [200] * 5
    Z = adata.obsm["X_pca"]
    assert Z.shape == (1000, 5) and Z.dtype == np.float32
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(Z.std(axis=0), 1, atol=1e-5)
    assert adata.obsm["X_pca_raw"].shape == (1000, 100)
    assert list(adata.obs["day"].cat.categories) == ["0-3", "6-9", "12-15", "18-21", "24-27"]
    assert adata.obs["day"].cat.ordered
    np.testing.assert_array_equal(adata.obs["day"].cat.codes, adata.obs["time"].astype(int))
    np.testing.assert_allclose(adata.uns["embryoid_body"]["scaler_mean"], adata.obsm["X_pca_raw"].mean(axis=0))


def test_eb_both_uses_val_scaler(eb_both):
    adata = eb_both
    assert adata.n_obs == 2750
    assert adata.obs["split"].value_counts().to_dict() == {"val": 1000, "test": 1750}
    info = adata.uns["embryoid_body"]
    val = (adata.obs["split"] == "val").to_numpy()
    np.testing.assert_allclose(info["scaler_mean"], adata.obsm["X_pca_raw"][val].mean(axis=0))
    expected = (adata.obsm["X_pca_raw"][~val] - info["scaler_mean"]) / info["scaler_scale"]
    np.testing.assert_allclose(adata.obsm["X_pca"][~val], expected[:, :5], atol=1e-5)
    assert adata.obs_names.is_unique


def test_eb_w1_floor(eb_both):
    Z, time = eb_both.obsm["X_pca"], eb_both.obs["time"].to_numpy()
    val = (eb_both.obs["split"] == "val").to_numpy()
    for k, floor in EB_W1_FLOOR.items():
        at_k = time == k
        assert _w1(Z[val & at_k], Z[~val & at_k]) == pytest.approx(floor, abs=0.01)


def test_eb_test_split_and_single_file(shared_data, eb_both):
    test = datasets.embryoid_body(shared_data, split="test")
    assert test.n_obs == 1750 and set(test.obs["split"]) == {"test"}
    np.testing.assert_array_equal(test.obsm["X_pca"], eb_both[eb_both.obs["split"] == "test"].obsm["X_pca"])
    val = datasets.embryoid_body(shared_data / "nlsb_val_rna.npz")
    np.testing.assert_array_equal(val.obsm["X_pca"], eb_both[eb_both.obs["split"] == "val"].obsm["X_pca"])
    assert datasets.embryoid_body(shared_data).n_obs == 2750


def test_eb_options(shared_data):
    raw = datasets.embryoid_body(shared_data, split="val", n_comps=3, standardize=False)
    np.testing.assert_allclose(raw.obsm["X_pca"], raw.obsm["X_pca_raw"][:, :3], rtol=1e-6)
    assert not raw.uns["embryoid_body"]["standardized"]


def test_eb_test_split_needs_val_scaler(tmp_path, shared_data):
    os.symlink(shared_data / "nlsb_test_rna.npz", tmp_path / "nlsb_test_rna.npz")
    with pytest.raises(FileNotFoundError, match="nlsb_val_rna.npz"):
        datasets.embryoid_body(tmp_path / "nlsb_test_rna.npz")
    assert datasets.embryoid_body(tmp_path, split="test", standardize=False).n_obs == 1750


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"split": "train"}, "split must be one of"), ({"n_comps": 0}, "n_comps"), ({"n_comps": 101}, "n_comps")],
)
def test_eb_rejects_bad_arguments(shared_data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.embryoid_body(shared_data, **kwargs)


def test_eb_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="eb_velocity_v5.npz"):
        datasets.embryoid_body(tmp_path)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="expected"):
        datasets.embryoid_body(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="No such file"):
        datasets.embryoid_body(tmp_path / "absent.npz")


def test_eb_full_file(tmp_path):
    labels = np.repeat(np.arange(5.0), 12)
    arrays = _write_full_eb(tmp_path / "eb_velocity_v5.npz", labels)
    adata = datasets.embryoid_body(tmp_path)
    assert adata.shape == (60, 10) and "split" not in adata.obs
    np.testing.assert_allclose(adata.obsm["X_pca"].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(adata.obsm["X_pca"].std(axis=0), 1, atol=1e-5)
    scale = arrays["pcs"].std(axis=0)
    np.testing.assert_allclose(adata.obsm["reference_velocity_pca"], (arrays["pcs_delta"] / scale)[:, :5], rtol=1e-5)
    assert "velocity_pca" not in adata.obsm  # the key a fit writes its velocities to
    assert adata.obsm["X_phate"].shape == (60, 2)
    np.testing.assert_array_equal(adata.obs["time"], labels)
    with pytest.raises(ValueError, match="NLSB split files only"):
        datasets.embryoid_body(tmp_path / "eb_velocity_v5.npz", split="val")


def test_eb_full_file_text_labels(tmp_path):
    labels = np.repeat(["Day 00-03", "Day 06-09", "Day 12-15", "Day 18-21", "Day 24-27"], 4)
    _write_full_eb(tmp_path / "eb.npz", labels)
    adata = datasets.embryoid_body(tmp_path / "eb.npz")
    np.testing.assert_array_equal(adata.obs["time"], np.repeat(np.arange(5.0), 4))


def test_eb_cache_and_download(tmp_path, empty_cache, monkeypatch):
    source = tmp_path / "published.npz"
    _write_full_eb(source, np.repeat(np.arange(5.0), 4))
    monkeypatch.setattr(_embryoid, "EB_URL", (tmp_path / "absent.npz").as_uri())
    with pytest.raises(FileNotFoundError, match="path="):
        datasets.embryoid_body()
    with pytest.raises(FileNotFoundError, match="cannot be downloaded"):
        datasets.embryoid_body(split="val")
    monkeypatch.setattr(_embryoid, "EB_URL", source.as_uri())
    monkeypatch.setattr(_embryoid, "EB_SHA256", _download.file_sha256(source))
    assert datasets.embryoid_body().n_obs == 20
    assert (empty_cache / "eb_velocity_v5.npz").read_bytes() == source.read_bytes()


# --- download helper --------------------------------------------------------------------------


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAJINFER_DATA", str(tmp_path))
    assert datasets.cache_dir() == tmp_path
    monkeypatch.delenv("TRAJINFER_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.cache_dir() == tmp_path / "home" / ".cache" / "trajinfer"


def test_download_file_url(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(3000))
    dest = tmp_path / "sub" / "copy.bin"
    out = _download.download(source.as_uri(), dest, _download.file_sha256(source), progress=False)
    assert out == dest and dest.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.bin"]


def test_download_checksum_mismatch(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload")
    dest = tmp_path / "out" / "copy.bin"
    with pytest.raises(_download.DownloadError, match="Checksum mismatch"):
        _download.download(source.as_uri(), dest, "0" * 64, progress=False)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_download_unreachable(tmp_path):
    dest = tmp_path / "copy.bin"
    with pytest.raises(_download.DownloadError, match="Could not download"):
        _download.download((tmp_path / "absent").as_uri(), dest, progress=False)
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_dyngen_records_its_log2_so_scanpy_warns_before_a_second_log(tmp_path, capfd):
    """X is log2(1 + counts): ``uns["log1p"]`` says so, as scanpy's own log1p would, and the counts stay in a layer."""
    counts = np.array([[0.0, 7.0], [3.0, 1.0], [2.0, 0.0]])
    expression = pd.DataFrame(np.log2(1.0 + counts), columns=["g1", "g2"], index=["c1", "c2", "c3"])
    adata = datasets.dyngen(_write_dyngen(tmp_path / "d", expression, index=True), n_bins=2)
    assert adata.uns["log1p"] == {"base": 2}
    np.testing.assert_array_equal(adata.layers["counts"], counts)
    sc = pytest.importorskip("scanpy")
    capfd.readouterr()
    sc.pp.log1p(adata.copy())
    assert "already log-transformed" in capfd.readouterr().err
