"""Embryoid body scRNA-seq time course (Moon et al. 2019) in the NLSB/TrajectoryNet layouts."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ._download import DownloadError, cache_dir, download

__all__ = ["DAY_LABELS", "EB_FILE", "EB_SHA256", "EB_URL", "NLSB_FILES", "SPLITS", "embryoid_body"]

logger = logging.getLogger(__name__)

EB_FILE = "eb_velocity_v5.npz"
EB_URL = "https://github.com/KrishnaswamyLab/TrajectoryNet/raw/master/data/eb_velocity_v5.npz"
# No checksum is published with the file, so downloads of it are not verified.
EB_SHA256: str | None = None
NLSB_FILES = {"val": "nlsb_val_rna.npz", "test": "nlsb_test_rna.npz"}
SPLITS = ("val", "test", "both")
DAY_LABELS = ("0-3", "6-9", "12-15", "18-21", "24-27")
_FULL_KEYS = ("pcs", "sample_labels")
_NLSB_KEYS = ("X", "ts")


def embryoid_body(
    path: str | Path | None = None, split: str | None = None, n_comps: int = 5, standardize: bool = True
) -> ad.AnnData:
    """Embryoid body differentiation over 27 days, 5 time labels, in 100 raw PCs.

    Two inputs are understood: NLSB's split files ``nlsb_val_rna.npz`` / ``nlsb_test_rna.npz``
    (keys ``X``, ``ts``, ``v``, ``idx``), and TrajectoryNet's full ``eb_velocity_v5.npz``
    (keys ``pcs``, ``sample_labels``, optionally ``pcs_delta``, ``phate``). Following the NLSB
    protocol, a :class:`~sklearn.preprocessing.StandardScaler` is fitted over all 100 PCs on
    the training cells (the val split; all cells of the full file), every cell is transformed
    with it and the first ``n_comps`` columns are kept.

    Parameters
    ----------
    path
        A directory holding the files, or one of them. ``None`` looks in
        :func:`~trajinfer.datasets.cache_dir` and downloads ``eb_velocity_v5.npz`` there
        (from :data:`EB_URL`) when no data file is found.
    split
        NLSB split files only: ``"val"`` (the training cells), ``"test"`` or ``"both"``
        (concatenated, with ``obs["split"]``). ``None`` reads the full file when present,
        else both splits, else the split named by a single file passed as ``path``.
    n_comps
        Number of standardised PCs kept in ``obsm["X_pca"]``.
    standardize
        Standardise before keeping ``n_comps`` columns; otherwise keep the raw PCs.

    Returns
    -------
    anndata.AnnData
        ``X`` the raw PCs (float32); ``obsm["X_pca"]`` (float32, ``n_comps`` columns),
        ``obsm["X_pca_raw"]`` (the raw PCs); the file's velocities as ``obsm["reference_velocity_pca"]`` /
        ``obsm["reference_velocity_pca_raw"]`` (named apart from ``velocity_pca``, where a fit writes its own)
        and ``obsm["X_phate"]`` when the file has them; ``obs["time"]`` (float label 0 .. 4),
        ``obs["day"]`` (ordered categorical of day ranges), ``obs["eb_index"]`` (row in the full
        file), ``obs["split"]`` (split files); the scaler in ``uns["embryoid_body"]``.

    Raises
    ------
    FileNotFoundError
        If the data files are missing and cannot be downloaded.
    ValueError
        On a bad ``split`` or ``n_comps``, or a file without the expected arrays.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None; got {split!r}.")
    if isinstance(n_comps, bool) or not isinstance(n_comps, (int, np.integer)) or n_comps < 1:
        raise ValueError(f"n_comps must be a positive integer; got {n_comps!r}.")
    files, keep = _locate(path, split, standardize)
    parts = {name: _read(file) for name, file in files.items()}
    return _build(parts, keep, n_comps=n_comps, standardize=standardize)


def _locate(path: str | Path | None, split: str | None, standardize: bool) -> tuple[dict[str, Path], list[str]]:
    """Files to read (by part name: "val", "test" or "all") and the parts to return."""
    if path is None:
        directory = cache_dir()
        if _has_any_file(directory):
            return _locate_in_directory(directory, split, standardize)
        if split is not None:
            raise FileNotFoundError(
                f"The NLSB split files {list(NLSB_FILES.values())} are not in {directory} and cannot be "
                "downloaded; put them there (or set $TRAJINFER_DATA) or pass path=."
            )
        return {"all": _fetch_full(directory)}, ["all"]
    path = Path(path)
    if path.is_dir():
        return _locate_in_directory(path, split, standardize)
    if not path.is_file():
        raise FileNotFoundError(f"No such file or directory: {path}. Pass the data directory or a data file.")
    if _kind(path) == "full":
        if split is not None:
            raise ValueError(f"split={split!r} applies to the NLSB split files only; {path} is the full data set.")
        return {"all": path}, ["all"]
    part = split or _split_from_name(path)
    if part == "both":
        return _locate_in_directory(path.parent, split, standardize)
    files = {part: path}
    if part == "test" and standardize:
        fix = (
            "the test split is standardised with the scaler fitted on the val split; "
            "put it there or pass standardize=False"
        )
        files["val"] = _require(path.parent / NLSB_FILES["val"], fix)
    return files, [part]


def _locate_in_directory(directory: Path, split: str | None, standardize: bool) -> tuple[dict[str, Path], list[str]]:
    """Files in ``directory``: the full file for ``split=None`` when present, else the split files."""
    if split is None and (directory / EB_FILE).is_file():
        return {"all": directory / EB_FILE}, ["all"]
    if split is None and not any((directory / name).is_file() for name in NLSB_FILES.values()):
        raise FileNotFoundError(
            f"No embryoid body data in {directory}: expected {EB_FILE} or {list(NLSB_FILES.values())}. "
            "Put the files there or pass path=."
        )
    keep = ["val", "test"] if split in (None, "both") else [split]
    needed = set(keep) | ({"val"} if standardize else set())
    fix = (
        f"split={split!r} reads {' and '.join(keep)}, and the val split (the training set) fits the scaler; "
        "put the file there, pass split= to read one split, or standardize=False for the test split alone"
    )
    files = {part: _require(directory / NLSB_FILES[part], fix) for part in ("val", "test") if part in needed}
    return files, keep


def _fetch_full(directory: Path) -> Path:
    """Download the full data set into ``directory``."""
    logger.info("Downloading %s from %s into %s", EB_FILE, EB_URL, directory)
    try:
        return download(EB_URL, directory / EB_FILE, EB_SHA256)
    except DownloadError as err:
        raise FileNotFoundError(
            f"Embryoid body data not found in {directory} and the download failed ({err}). Download "
            f"{EB_URL} yourself and pass path= (the file or its directory), or put it in {directory}."
        ) from err


def _has_any_file(directory: Path) -> bool:
    """Whether ``directory`` holds the full file or any NLSB split file."""
    return any((directory / name).is_file() for name in (EB_FILE, *NLSB_FILES.values()))


def _require(file: Path, fix: str) -> Path:
    """``file`` if it exists, else a FileNotFoundError saying why it is needed and how to proceed."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: {fix}.")
    return file


def _split_from_name(file: Path) -> str:
    """The NLSB split ("val" or "test") named in a file name."""
    found = [part for part in NLSB_FILES if part in file.stem.lower()]
    if len(found) != 1:
        raise ValueError(f"Cannot tell the split of {file.name} from its name; pass split='val' or split='test'.")
    return found[0]


def _kind(file: Path) -> str:
    """``"full"`` for TrajectoryNet's full file, ``"nlsb"`` for an NLSB split file."""
    with _open_npz(file) as data:
        keys = set(data.files)
    if set(_FULL_KEYS) <= keys:
        return "full"
    if set(_NLSB_KEYS) <= keys:
        return "nlsb"
    raise ValueError(
        f"{file} has arrays {sorted(keys)}; expected {list(_NLSB_KEYS)} (NLSB split file) "
        f"or {list(_FULL_KEYS)} ({EB_FILE})."
    )


def _open_npz(file: Path) -> Any:
    """Open an ``.npz`` archive, with a clear error for anything else."""
    try:
        return np.load(file, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{file} is not a readable .npz archive ({err}).") from err


def _read(file: Path) -> dict[str, np.ndarray]:
    """Arrays ``X`` (raw PCs), ``label`` (0 .. 4), ``index`` and, when present, ``v``, ``phate``."""
    if _kind(file) == "full":
        names = {"X": "pcs", "label": "sample_labels", "v": "pcs_delta", "phate": "phate"}
    else:
        names = {"X": "X", "label": "ts", "v": "v", "index": "idx"}
    with _open_npz(file) as data:
        keys = set(data.files)
        arrays = {name: _array(data, key, file) for name, key in names.items() if key in keys}
    arrays["X"] = np.asarray(arrays["X"], dtype=np.float64)
    n = arrays["X"].shape[0] if arrays["X"].ndim == 2 else -1
    if n < 1 or not np.isfinite(arrays["X"]).all():
        raise ValueError(f"{file}: the PCs must be a finite 2-D array with at least one row.")
    for name, value in arrays.items():
        if len(value) != n:
            raise ValueError(f"{file}: {names[name]!r} has {len(value)} rows but the PCs have {n}.")
    arrays["label"] = _label_codes(arrays["label"], file)
    arrays.setdefault("index", np.arange(n))
    return arrays


def _array(data: Any, key: str, file: Path) -> np.ndarray:
    """One array of an open archive, with a clear error for pickled object arrays."""
    try:
        return data[key]
    except ValueError as err:
        raise ValueError(f"{file}: array {key!r} holds Python objects, which are not loaded.") from err


def _label_codes(labels: np.ndarray, file: Path) -> np.ndarray:
    """Time labels as integers 0 .. 4 (numeric labels as they are, text labels in sorted order)."""
    if np.issubdtype(labels.dtype, np.number):
        codes = np.asarray(labels, dtype=np.float64)
        if not (np.isin(codes, np.arange(len(DAY_LABELS))).all()):
            raise ValueError(f"{file}: time labels must be 0 .. {len(DAY_LABELS) - 1}; got {np.unique(codes)}.")
        return codes.astype(np.int64)
    values, codes = np.unique(labels.astype(str), return_inverse=True)
    if len(values) != len(DAY_LABELS):
        raise ValueError(f"{file}: expected {len(DAY_LABELS)} distinct time labels; got {list(values)}.")
    logger.info("Mapping time labels %s to 0 .. %d", list(values), len(values) - 1)
    return codes.astype(np.int64)


def _build(
    parts: dict[str, dict[str, np.ndarray]], keep: list[str], *, n_comps: int, standardize: bool
) -> ad.AnnData:
    """Concatenate the kept parts, standardise with the scaler fitted on the training part."""
    kept = [parts[name] for name in keep]
    X = np.concatenate([part["X"] for part in kept])
    if n_comps > X.shape[1]:
        raise ValueError(f"n_comps={n_comps} exceeds the {X.shape[1]} PCs in the data; choose a smaller n_comps.")
    fit_on = "all" if "all" in parts else "val"
    info: dict[str, Any] = {"n_comps": n_comps, "standardized": standardize, "scaler_fit_on": fit_on}
    scale = np.ones(X.shape[1])
    Z = X
    if standardize:
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(parts[fit_on]["X"])
        Z, scale = scaler.transform(X), scaler.scale_
        info.update(scaler_mean=scaler.mean_, scaler_scale=scaler.scale_)

    labels = np.concatenate([part["label"] for part in kept])
    index = np.concatenate([part["index"] for part in kept])
    adata = ad.AnnData(X.astype(np.float32))
    adata.obs_names = [f"eb{i}" for i in index]
    adata.var_names = [f"PC{j + 1}" for j in range(X.shape[1])]
    adata.obs["time"] = labels.astype(float)
    adata.obs["day"] = pd.Categorical.from_codes(labels, categories=list(DAY_LABELS), ordered=True)
    adata.obs["eb_index"] = index.astype(np.int64)
    if keep != ["all"]:
        split = np.repeat(keep, [len(part["label"]) for part in kept])
        adata.obs["split"] = pd.Categorical(split, categories=keep)
    adata.obsm["X_pca"] = Z[:, :n_comps].astype(np.float32)
    adata.obsm["X_pca_raw"] = X
    if all("v" in part for part in kept):
        V = np.concatenate([part["v"] for part in kept]).astype(np.float64)
        adata.obsm["reference_velocity_pca_raw"] = V
        adata.obsm["reference_velocity_pca"] = (V / scale)[:, :n_comps].astype(np.float32)
    if all("phate" in part for part in kept):
        adata.obsm["X_phate"] = np.concatenate([part["phate"] for part in kept]).astype(np.float32)
    adata.uns["embryoid_body"] = info
    return adata
