"""The record of a :func:`trajinfer.tl.fit`: how a model's coordinates and times map to an AnnData."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from anndata import AnnData

from ..estimator import ActionMatching
from ..pp import representation

__all__ = ["FitRecord", "cells_at", "find_record", "fit_record", "write_record"]


@dataclass(frozen=True)
class FitRecord:
    """What :func:`trajinfer.tl.fit` records about the AnnData a model was fitted on.

    :func:`fit_record` reads it from the model (``model.metadata_``) or from the data
    (``adata.uns[key_added]``); both hold :meth:`to_dict`.

    Attributes
    ----------
    time_key
        ``obs`` column with each cell's time label.
    time_labels
        The time labels as strings, in time order.
    time_values
        The numeric time of each label, in the model's time units.
    use_rep
        The representation the model was fitted in: ``"X"`` or an ``obsm`` key.
    n_comps
        Columns of the representation used (the first ``n_comps``).
    interpolation
        The marginal path between snapshots (``"mixture"``, ``"ot"`` or ``"sb"``).
    sigma
        The diffusion coefficient of the path and of the entropic methods (``None`` when
        neither uses one).
    key_added
        Prefix of the results written to the AnnData.
    """

    time_key: str
    time_labels: tuple[str, ...]
    time_values: tuple[float, ...]
    use_rep: str
    n_comps: int
    interpolation: str
    sigma: float | None
    key_added: str

    def label_time(self, label: Any) -> float:
        """Numeric time of a time label; a number (or numeric string) that is not a label is its own time.

        Raises
        ------
        ValueError
            If ``label`` is neither a time label nor a number.
        """
        name = str(label)
        if name in self.time_labels:
            return self.time_values[self.time_labels.index(name)]
        try:
            return float(label)
        except (TypeError, ValueError):
            raise ValueError(f"Unknown time label {label!r}; known labels: {list(self.time_labels)}.") from None

    def representation(self, adata: AnnData) -> np.ndarray:
        """The cells of ``adata`` in the fitted representation, shape (n_obs, n_comps)."""
        X, _, _ = representation(adata, self.use_rep, self.n_comps)
        return X

    def to_dict(self) -> dict[str, Any]:
        """The record as plain values (lists, strings, numbers, ``None``) for a model file or ``uns``."""
        return {**asdict(self), "time_labels": list(self.time_labels), "time_values": list(self.time_values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitRecord:
        """The record stored by :meth:`to_dict`, also after an ``.h5ad`` round trip (arrays, NumPy scalars).

        Other entries of ``data`` (such as the training curve in ``uns``) are ignored; a missing
        ``sigma`` reads as ``None`` (``.h5ad`` writers may drop ``None`` values).
        """
        sigma = data.get("sigma")
        return cls(
            time_key=str(data["time_key"]),
            time_labels=tuple(str(label) for label in data["time_labels"]),
            time_values=tuple(float(value) for value in data["time_values"]),
            use_rep=str(data["use_rep"]),
            n_comps=int(data["n_comps"]),
            interpolation=str(data["interpolation"]),
            sigma=None if sigma is None else float(sigma),
            key_added=str(data["key_added"]),
        )


_REQUIRED = frozenset(field.name for field in fields(FitRecord)) - {"sigma"}


def find_record(model_or_adata: ActionMatching | AnnData | FitRecord, *, key: str = "tj") -> FitRecord | None:
    """The :class:`FitRecord` of a model or of ``adata.uns[key]``, or ``None`` where there is none."""
    if isinstance(model_or_adata, FitRecord):
        return model_or_adata
    if isinstance(model_or_adata, AnnData):
        data = model_or_adata.uns.get(key)
    else:
        data = getattr(model_or_adata, "metadata_", None)
    if not isinstance(data, Mapping) or not _REQUIRED <= data.keys():
        return None
    return FitRecord.from_dict(data)


def fit_record(model_or_adata: ActionMatching | AnnData | FitRecord, *, key: str = "tj") -> FitRecord:
    """The record of a :func:`trajinfer.tl.fit`: time key, label ↔ time mapping, representation.

    Parameters
    ----------
    model_or_adata
        A model returned by :func:`trajinfer.tl.fit` (or loaded from its file), an AnnData it
        annotated, or a :class:`FitRecord` (returned as it is).
    key
        For an AnnData: the ``key_added`` of the fit, whose record is ``uns[key]``.

    Returns
    -------
    FitRecord

    Raises
    ------
    ValueError
        If the model was not fitted with :func:`trajinfer.tl.fit` on an AnnData, or ``adata.uns``
        has no record under ``key``.
    """
    record = find_record(model_or_adata, key=key)
    if record is not None:
        return record
    if isinstance(model_or_adata, AnnData):
        raise ValueError(f"adata.uns[{key!r}] holds no record of tj.fit; fit with tj.fit(adata, ..., key_added={key!r}) first.")
    raise ValueError("This model was not fitted with tj.fit on an AnnData; use model.simulate on arrays instead.")


def write_record(model: ActionMatching, adata: AnnData, record: FitRecord, **entries: Any) -> None:
    """Store ``record`` as ``model.metadata_`` and, with ``entries``, as ``adata.uns[record.key_added]``."""
    model.metadata_ = record.to_dict()
    adata.uns[record.key_added] = {**entries, **record.to_dict()}


def cells_at(adata: AnnData, model_or_record: ActionMatching | FitRecord, label: Any) -> np.ndarray:
    """Which cells of ``adata`` were observed at a time label of a fit.

    Parameters
    ----------
    adata
        The cells, with the fit's time column in ``obs``.
    model_or_record
        A model from :func:`trajinfer.tl.fit` or its :class:`FitRecord`.
    label
        A time label (``"day3"``, ``3.0``); a number that is not spelled as a label matches the
        cells at that numeric time (``3`` matches the label ``"3.0"``).

    Returns
    -------
    numpy.ndarray
        Boolean mask over the cells, shape (n_obs,).

    Raises
    ------
    ValueError
        If no cell was observed at ``label``, or ``label`` is neither a time label nor a number.
    """
    record = fit_record(model_or_record)
    column = adata.obs[record.time_key]
    mask = (column.astype(str) == str(label)).to_numpy()
    if not mask.any():
        numeric = record.label_time(label)
        try:
            mask = np.isclose(column.to_numpy(dtype=float), numeric)
        except (TypeError, ValueError):
            mask = np.zeros(adata.n_obs, dtype=bool)
    if not mask.any():
        raise ValueError(f"No cells with {record.time_key} == {label!r}; known labels: {list(record.time_labels)}.")
    return mask
