"""Plots of snapshots, simulated trajectories, learned velocity fields, gene trends, growth and training.

Every single-panel function draws into ``ax`` when given (else into a new figure) and returns
the :class:`matplotlib.axes.Axes`; multi-panel functions return the
:class:`matplotlib.figure.Figure`. Nothing here fits a model: pass a fitted
:class:`~trajinfer.ActionMatching`, its :class:`~trajinfer.Trajectories`, or an AnnData
annotated by :func:`trajinfer.fit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import CenteredNorm
from matplotlib.figure import Figure
from scipy.spatial import cKDTree

from ._docs import doc_params
from ._neighbors import NeighborKernel, basis_key, project_velocity
from .estimator import ActionMatching
from .tl import FitRecord, GeneTrends, cells_at, embed, fit_record
from .trajectories import Trajectories

__all__ = ["gene_trends", "growth", "loss", "marginals", "trajectories", "velocity_stream"]

_BACKGROUND = "0.85"
_LINE_COLOR = "0.15"


# ---------------------------------------------------------------------- helpers
def _new_ax(ax: Axes | None, figsize: tuple[float, float] = (5.5, 4.5)) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _point_size(n: int) -> float:
    """Marker area that keeps a scatter of ``n`` points readable."""
    return float(np.clip(3000.0 / max(n, 1), 2.0, 30.0))


def _find_record(model_or_adata: ActionMatching | AnnData, key: str = "tj") -> FitRecord | None:
    """The record of a :func:`trajinfer.fit` on the model or in ``adata.uns[key]``; ``None`` where there is none."""
    try:
        return fit_record(model_or_adata, key=key)
    except ValueError:  # not fitted with tj.fit: the plots fall back to their defaults
        return None


def _default_basis(adata: AnnData, record: FitRecord | None) -> str:
    if record is not None:
        return record.use_rep
    return "X_pca" if "X_pca" in adata.obsm else "X"


def _basis_matrix(adata: AnnData, basis: str) -> np.ndarray:
    """Rows of ``adata`` in ``basis``: ``"X"``, an ``obsm`` key, or a scanpy name like ``"pca"``."""
    name = basis_key(adata, basis)
    if name == "X":
        X = adata.X
        return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=float)
    return np.asarray(adata.obsm[name], dtype=float)


def _components(X: np.ndarray, components: Sequence[int], what: str) -> np.ndarray:
    i, j = (int(c) for c in components)
    if max(i, j) >= X.shape[-1]:
        raise ValueError(f"components={tuple(components)} but {what} has {X.shape[-1]} columns.")
    return X[..., [i, j]]


def _axis_labels(ax: Axes, basis: str | None, components: Sequence[int]) -> None:
    name = "dim" if basis in (None, "X") else str(basis).removeprefix("X_").upper()
    ax.set_xlabel(f"{name} {int(components[0]) + 1}")
    ax.set_ylabel(f"{name} {int(components[1]) + 1}")


def _color_values(data: Any, color: Any, time_key: str | None) -> tuple[Any, str | None]:
    """Per-row colour values (an array or a ``pd.Categorical``) and their label (``None`` for a uniform colour)."""
    if isinstance(data, AnnData):
        column = time_key if color is None else color
        if isinstance(column, str):
            if column not in data.obs:
                raise KeyError(f"adata.obs has no column {column!r}; pass time_key= or color= with an obs column.")
            return data.obs[column].values, column
    if color is None:
        return None, None
    values = np.asarray(color)
    if len(values) != (data.n_obs if isinstance(data, AnnData) else len(data)):
        raise ValueError("color must have one value per cell.")
    return values, None


def _scatter_colored(ax: Axes, xy: np.ndarray, values: Any, label: str | None, cmap: str, size: float) -> list[Any]:
    """Scatter ``xy`` coloured by ``values``: a colorbar for numbers; for categories, the legend
    handles returned (one per category, ``[]`` otherwise)."""
    if values is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, color=_BACKGROUND, linewidths=0, rasterized=True)
        return []
    if pd.api.types.is_numeric_dtype(values) and not isinstance(values.dtype, pd.CategoricalDtype):
        points = ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(values, dtype=float), s=size, cmap=cmap, linewidths=0, rasterized=True)
        ax.figure.colorbar(points, ax=ax, label=label or "time", shrink=0.85)
        return []
    categories = pd.Categorical(values) if isinstance(values.dtype, pd.CategoricalDtype) else pd.Categorical(values, categories=_natural(values))
    palette = sns.color_palette("tab10" if len(categories.categories) <= 10 else "husl", len(categories.categories))
    handles = []
    for code, name in enumerate(categories.categories):
        rows = categories.codes == code
        handles.append(ax.scatter(xy[rows, 0], xy[rows, 1], s=size, color=palette[code], linewidths=0, label=str(name), rasterized=True))
    return handles


# ---------------------------------------------------------------- trajectories
@doc_params()
def trajectories(
    data: AnnData | np.ndarray | None,
    traj: Trajectories | np.ndarray,
    *,
    time_key: str | None = None,
    color: str | np.ndarray | None = None,
    basis: str | None = None,
    components: Sequence[int] = (0, 1),
    n_trajectories: int | None = 50,
    seed: int = 0,
    cmap: str = "viridis",
    size: float | None = None,
    model: ActionMatching | None = None,
    key: str = "tj",
    ax: Axes | None = None,
) -> Axes:
    """Snapshots coloured by time with simulated trajectories drawn over them.

    Parameters
    ----------
    data
        The observed cells: an AnnData (coordinates from ``basis``), an array (n, d) in the
        trajectories' space, or ``None`` to draw the trajectories alone.
    traj
        :class:`~trajinfer.Trajectories` or positions of shape (T, n, d): in the fitted
        representation for an AnnData, else in the space of ``data``.
    time_key
        ``obs`` column of an AnnData used for colours when ``color`` is not given (default:
        the time key of the fit, see ``model``, else ``"time"``).
    color
        An ``obs`` column (AnnData) or one value per cell. Numbers get the continuous ``cmap``
        and a colorbar; categories get a legend.
    basis
        ``"X"``, an ``obsm`` key (``"X_pca"``, ``"X_umap"``) or a scanpy basis name
        (``"umap"``). Default: the representation of the fit (see ``model``), else ``"X_pca"``
        when present, else ``"X"``. On any other basis (an
        embedding such as UMAP) the simulated positions are mapped into it by kNN kernel
        regression from the representation to the embedding coordinates
        (:func:`trajinfer.tl.embed`): each point is drawn at the Gaussian-weighted mean
        embedding position of its 30 nearest observed cells in the representation. Points
        farther than 1.5 neighbourhood radii from every observed cell have no place in the
        embedding and are not drawn: the line breaks where a path leaves the data.
    components
        The two columns of the basis to plot, 0-based.
    n_trajectories
        Number of trajectories drawn, chosen at random with ``seed`` (``None`` draws all).
    seed
        Seed of that choice.
    cmap
        Colormap of numeric colours.
    size
        Marker area of the cells (default scales with their number).
    model
        A model from :func:`trajinfer.fit`, for an AnnData it did not annotate (such as held-out
        cells): its :func:`~trajinfer.tl.fit_record` gives the default ``time_key`` and ``basis``.
        Default: the record of the fit in ``uns[key]``.
    {key_uns}
    {ax}

    Returns
    -------
    matplotlib.axes.Axes
        One thin line per drawn trajectory (``ax.lines``), a hollow circle at each start and a
        dot at each end, named in the legend (with the categories of the cells, if any). For
        unbalanced models the end dots are sized by the final weights.
    """
    positions = traj.X if isinstance(traj, Trajectories) else np.asarray(traj, dtype=float)
    if positions.ndim != 3:
        raise ValueError(f"traj must be a Trajectories or an array (T, n, d); got shape {positions.shape}.")
    ax = _new_ax(ax)
    if isinstance(data, AnnData):
        record = _find_record(data, key=key) if model is None else fit_record(model)
        rep = _default_basis(data, record)
        basis = rep if basis is None else basis_key(data, basis)
        cells = _components(_basis_matrix(data, basis), components, f"basis {basis!r}")
        if basis != rep:
            positions = embed(data, positions, basis=basis, use_rep=rep, key=key, reach=1.5)
        if time_key is None:
            time_key = "time" if record is None else record.time_key
    elif data is not None:
        cells = _components(np.asarray(data, dtype=float), components, "data")
    categories, label = [], None
    if data is not None:
        values, label = _color_values(data, color, time_key)
        categories = _scatter_colored(ax, cells, values, label, cmap, _point_size(len(cells)) if size is None else size)

    paths = _components(positions, components, "traj")
    n = paths.shape[1]
    chosen = np.arange(n) if n_trajectories is None or n_trajectories >= n else np.sort(
        np.random.default_rng(seed).choice(n, size=int(n_trajectories), replace=False)
    )
    paths = paths[:, chosen]
    ax.plot(paths[:, :, 0], paths[:, :, 1], color=_LINE_COLOR, linewidth=0.7, alpha=0.7)
    end_size = np.full(len(chosen), 14.0)
    if isinstance(traj, Trajectories) and np.ptp(traj.log_weights[-1]) > 1e-6:
        final = traj.weights[-1][chosen] * n
        end_size = 14.0 * np.clip(final, 0.1, 10.0)
    ax.scatter(paths[0, :, 0], paths[0, :, 1], s=16, facecolors="white", edgecolors=_LINE_COLOR, linewidths=0.8, zorder=3)
    ax.scatter(paths[-1, :, 0], paths[-1, :, 1], s=end_size, color=_LINE_COLOR, linewidths=0, zorder=3)
    _path_legend(ax, categories, label)
    _axis_labels(ax, basis if isinstance(data, AnnData) else None, components)
    if isinstance(traj, Trajectories):
        ax.set_title(f"Simulated trajectories, t = {traj.times[0]:g} → {traj.times[-1]:g}")
    else:
        ax.set_title("Simulated trajectories")
    return ax


def _natural(values: Any) -> list[Any]:
    """The distinct ``values`` sorted as numbers when they all read as numbers ("2" before "10"), else as text."""
    distinct = sorted(pd.unique(np.asarray(values)).tolist(), key=str)
    try:
        return sorted(distinct, key=float)
    except (TypeError, ValueError):
        return distinct


def _path_legend(ax: Axes, categories: list[Any], title: str | None) -> None:
    """One legend: the cells' categories under their title, then the start and end markers."""
    from matplotlib.lines import Line2D

    start_handle = Line2D([], [], linestyle="none", marker="o", markersize=5, markerfacecolor="white",
                          markeredgecolor=_LINE_COLOR, markeredgewidth=0.8)
    end_handle = Line2D([], [], linestyle="none", marker="o", markersize=5, color=_LINE_COLOR)
    handles = [*categories, start_handle, end_handle]
    labels = [h.get_label() for h in categories] + ["path start", "path end"]
    ax.legend(handles, labels, title=title if categories else None, markerscale=1.0, fontsize="small", frameon=False, loc="best")
    for handle in ax.get_legend().legend_handles[: len(categories)]:
        handle.set_sizes([30.0])  # category markers as large as the path markers, whatever the cells' size


# ------------------------------------------------------------- velocity field
@doc_params()
def velocity_stream(
    model: ActionMatching,
    data: AnnData | np.ndarray,
    t: float | str,
    *,
    basis: str | None = None,
    components: Sequence[int] = (0, 1),
    grid_size: int = 40,
    mask_far: bool = True,
    density: float = 1.2,
    cmap: str = "magma_r",
    ax: Axes | None = None,
) -> Axes:
    """Streamlines of the learned velocity ``∇s_t`` at time ``t`` on a 2-D grid.

    In the fitted representation (the default), the model is evaluated on a
    ``grid_size × grid_size`` grid spanning the cells in the two chosen ``components``. For
    data of more than two dimensions the other coordinates of every grid point are fixed at
    the mean of the reference cells (for an AnnData, the cells of the observed time point
    closest to ``t``; for an array, all rows): the plot is the slice of the field through that
    mean, not a projection of cell velocities.

    On another ``basis`` (an embedding such as UMAP) there is no grid to evaluate the model
    on. Instead the velocity of each reference cell at time ``t`` is projected into the
    embedding (as :func:`trajinfer.tl.velocity_embedding` does: the displacement of the kNN
    kernel regression from the representation to the embedding along the velocity), and the
    grid holds the Gaussian-weighted mean of these projections over the reference cells,
    with a width of one grid step.

    Grid points farther than three grid steps from every cell (on an embedding: every
    reference cell) are left blank (``mask_far``), so the field is not shown where the model
    extrapolates.

    Parameters
    ----------
    model
        A fitted :class:`~trajinfer.ActionMatching`.
    data
        An AnnData fitted with :func:`trajinfer.fit` (the fitted representation is used) or an
        array (n, d) in the model's space.
    t
        Time in the model's units, or a time label of the fitted AnnData.
    basis
        An AnnData's ``obsm`` key or scanpy basis name to draw on (default: the fitted
        representation).
    components
        The two coordinates spanning the grid, 0-based.
    grid_size
        Grid points per axis.
    mask_far
        Blank the field far from the data.
    density
        Streamline density (:meth:`matplotlib.axes.Axes.streamplot`).
    cmap
        Colormap of the speed.
    {ax}

    Returns
    -------
    matplotlib.axes.Axes
        Cells as a grey background (the reference cells darker) and the streamlines coloured by
        speed, with a colorbar.
    """
    record = _find_record(model)
    time, X, reference = _stream_inputs(record, data, t)
    rep = record.use_rep if isinstance(data, AnnData) else None
    if basis is not None and not isinstance(data, AnnData):
        raise ValueError("basis= needs an AnnData with the embedding in obsm; an array is drawn in its own coordinates.")
    basis = rep if basis is None else basis_key(data, basis)
    if basis == rep:
        xy, support, (gx, gy), (U, V) = _slice_field(model, X, reference, time, components, grid_size)
    else:
        xy, support, (gx, gy), (U, V) = _embedded_field(model, X, reference, time, _basis_matrix(data, basis), components, grid_size)
    GX, GY = np.meshgrid(gx, gy)
    if mask_far:
        step = max(gx[1] - gx[0], gy[1] - gy[0])
        far = (cKDTree(support).query(np.column_stack([GX.ravel(), GY.ravel()]))[0] > 3.0 * step).reshape(GX.shape)
        U, V = np.ma.masked_where(far, U), np.ma.masked_where(far, V)
    speed = np.ma.sqrt(U**2 + V**2)

    ax = _new_ax(ax)
    size = _point_size(len(xy))
    ax.scatter(xy[~reference, 0], xy[~reference, 1], s=size, color="0.88", linewidths=0, rasterized=True)
    ax.scatter(xy[reference, 0], xy[reference, 1], s=size, color="0.55", linewidths=0, rasterized=True)
    stream = ax.streamplot(gx, gy, U, V, color=speed, cmap=cmap, density=density, linewidth=1.0, arrowsize=0.9)
    ax.figure.colorbar(stream.lines, ax=ax, label="speed", shrink=0.85)
    _axis_labels(ax, basis, components)
    ax.set_title(f"Learned velocity at t = {time:g}")
    return ax


def _grid(xy: np.ndarray, grid_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Evenly spaced grid axes spanning ``xy``, widened by a twentieth of its range on each side."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = 0.05 * (hi - lo)
    return np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid_size), np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid_size)


def _slice_field(
    model: ActionMatching, X: np.ndarray, reference: np.ndarray, time: float, components: Sequence[int], grid_size: int
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Cells, masking support, grid axes and the field on the slice through the reference mean."""
    xy = _components(X, components, "the representation")
    i, j = (int(c) for c in components)
    gx, gy = _grid(xy, grid_size)
    GX, GY = np.meshgrid(gx, gy)
    grid = np.tile(X[reference].mean(axis=0), (GX.size, 1))
    grid[:, i], grid[:, j] = GX.ravel(), GY.ravel()
    velocity = np.asarray(model.velocity(grid, np.full(len(grid), time)))
    return xy, xy, (gx, gy), (velocity[:, i].reshape(GX.shape), velocity[:, j].reshape(GX.shape))


def _embedded_field(
    model: ActionMatching, X: np.ndarray, reference: np.ndarray, time: float, embedding: np.ndarray,
    components: Sequence[int], grid_size: int,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Cells, masking support, grid axes and the reference cells' projected velocities gridded."""
    xy = _components(embedding, components, "the basis")
    velocity = np.asarray(model.velocity(X[reference], np.full(int(reference.sum()), time)))
    projected = _components(project_velocity(NeighborKernel(X, 30), embedding, X[reference], velocity), components, "the basis")
    gx, gy = _grid(xy, grid_size)
    GX, GY = np.meshgrid(gx, gy)
    support = xy[reference]
    weights = NeighborKernel(support, 30).weights(np.column_stack([GX.ravel(), GY.ravel()]), bandwidth=max(gx[1] - gx[0], gy[1] - gy[0]))
    field = np.asarray(weights @ projected)
    return xy, support, (gx, gy), (field[:, 0].reshape(GX.shape), field[:, 1].reshape(GX.shape))


def _stream_inputs(record: FitRecord | None, data: AnnData | np.ndarray, t: float | str) -> tuple[float, np.ndarray, np.ndarray]:
    """Numeric time, the cells in the model's space, and the mask of reference cells."""
    if record is not None:
        time = record.label_time(t)
    else:
        try:
            time = float(t)
        except (TypeError, ValueError):
            raise ValueError(f"Unknown time {t!r}: the model has no time labels (not fitted with tj.fit); pass a number.") from None
    if not isinstance(data, AnnData):
        X = np.asarray(data, dtype=float)
        return time, X, np.ones(len(X), dtype=bool)
    if record is None:
        raise ValueError("This model was not fitted with tj.fit on an AnnData; pass the cells as an array instead.")
    X = record.representation(data)
    if record.time_key not in data.obs:
        return time, X, np.ones(len(X), dtype=bool)
    nearest = int(np.argmin(np.abs(np.asarray(record.time_values) - time)))
    return time, X, cells_at(data, record, record.time_labels[nearest])


# ---------------------------------------------------------------------- growth
@doc_params()
def growth(
    adata: AnnData,
    key: str = "tj_growth",
    *,
    basis: str | None = None,
    components: Sequence[int] = (0, 1),
    cmap: str = "RdBu_r",
    size: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Cells coloured by growth rate, with a diverging colormap centred at 0.

    Parameters
    ----------
    adata
        Data annotated by :func:`trajinfer.fit` with ``method="uam"`` or ``"ueam"``.
    key
        ``obs`` column holding the growth rate (per time unit).
    basis, components
        Coordinates as in :func:`trajectories` (default: the fitted representation).
    cmap
        Diverging colormap: red for expanding (positive), blue for shrinking (negative).
    size
        Marker area (default scales with the number of cells).
    {ax}

    Returns
    -------
    matplotlib.axes.Axes
    """
    if key not in adata.obs:
        raise KeyError(f"adata.obs has no column {key!r}; fit with method='uam' or 'ueam' to get growth rates.")
    fitted_key = key.removesuffix("_growth")
    basis = _default_basis(adata, _find_record(adata, key=fitted_key)) if basis is None else basis
    xy = _components(_basis_matrix(adata, basis), components, f"basis {basis!r}")
    rates = adata.obs[key].to_numpy(dtype=float)
    order = np.argsort(np.abs(rates))  # strongest rates on top
    ax = _new_ax(ax)
    points = ax.scatter(
        xy[order, 0], xy[order, 1], c=rates[order], cmap=cmap, norm=CenteredNorm(0.0),
        s=_point_size(len(xy)) if size is None else size, linewidths=0, rasterized=True,
    )
    ax.figure.colorbar(points, ax=ax, label="growth rate (per time unit)", shrink=0.85)
    _axis_labels(ax, basis, components)
    ax.set_title("Growth rate (red: expanding, blue: shrinking)")
    return ax


# ------------------------------------------------------------------- marginals
def marginals(
    observed: np.ndarray | Mapping[Any, np.ndarray],
    simulated: np.ndarray | Trajectories | Mapping[Any, np.ndarray],
    weights: np.ndarray | Mapping[Any, np.ndarray] | None = None,
    *,
    components: Sequence[int] = (0, 1),
    ncols: int = 4,
    ax: Axes | None = None,
) -> Axes | Figure:
    """Per-component densities of observed against simulated cells.

    Each component gets its own colour; observed cells are solid filled curves, simulated
    cells dashed. Densities are Gaussian KDEs (:func:`seaborn.kdeplot`); simulated cells can
    carry weights (unbalanced models).

    Parameters
    ----------
    observed
        Observed cells (n, d) at one time, or a dict ``{time: array}`` for several.
    simulated
        Simulated cells (m, d), or a dict ``{time: array}`` with the same keys, or (with a dict
        ``observed``) a :class:`~trajinfer.Trajectories` read at the stored time closest to
        each key, with its weights.
    weights
        Weights of the simulated cells: an array (m,), or a dict like ``simulated``.
    components
        Columns to compare, 0-based.
    ncols
        Panels per row for several time points.
    ax
        Axes for a single time point.

    Returns
    -------
    matplotlib.axes.Axes or matplotlib.figure.Figure
        The Axes for one time point; a Figure with one panel per time for dicts.
    """
    if not isinstance(observed, Mapping):
        if isinstance(simulated, (Mapping, Trajectories)):
            raise TypeError("With one observed array, simulated must be an array too.")
        ax = _new_ax(ax, figsize=(5.0, 3.8))
        _marginal_panel(ax, np.asarray(observed, float), np.asarray(simulated, float), weights, components)
        ax.legend(fontsize="small", frameon=False)
        ax.set_title("Observed vs simulated marginals")
        return ax
    if ax is not None:
        raise ValueError("Several time points draw one panel each: leave ax=None and use the returned Figure.")
    times = list(observed)
    ncols = max(1, min(ncols, len(times)))
    nrows = -(-len(times) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False, layout="constrained")
    for panel, time in zip(axes.ravel(), times):
        if isinstance(simulated, Trajectories):
            sim, w = simulated.at(float(time))
        else:
            if time not in simulated:
                raise KeyError(f"simulated has no entry for time {time!r}.")
            sim, w = simulated[time], None if weights is None else weights.get(time)
        _marginal_panel(panel, np.asarray(observed[time], float), np.asarray(sim, float), w, components)
        panel.set_title(f"t = {time:g}" if isinstance(time, (int, float, np.number)) else f"t = {time}")
    for panel in axes.ravel()[len(times):]:
        panel.set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False, fontsize="small")
    fig.suptitle("Observed vs simulated marginals")
    return fig


def _marginal_panel(ax: Axes, observed: np.ndarray, simulated: np.ndarray, weights: Any, components: Sequence[int]) -> None:
    palette = sns.color_palette("tab10", len(components))
    w = None if weights is None else np.asarray(weights, dtype=float)
    for color, c in zip(palette, components):
        c = int(c)
        if c >= observed.shape[1] or c >= simulated.shape[1]:
            raise ValueError(f"Component {c} is out of range for data of {min(observed.shape[1], simulated.shape[1])} columns.")
        sns.kdeplot(x=observed[:, c], ax=ax, color=color, fill=True, alpha=0.15, linewidth=1.5, label=f"observed, dim {c + 1}")
        sns.kdeplot(x=simulated[:, c], weights=w, ax=ax, color=color, linestyle="--", linewidth=1.5, label=f"simulated, dim {c + 1}")
    ax.set_xlabel("value")
    ax.set_ylabel("density")


# ----------------------------------------------------------------- gene trends
def gene_trends(
    trends: GeneTrends,
    genes: str | Sequence[str] | None = None,
    *,
    fates: Sequence[str] | None = None,
    band: bool = True,
    ncols: int = 3,
    ax: Axes | None = None,
) -> Axes | Figure:
    """Expression of genes along simulated trajectories, one line per fate, with bands.

    Parameters
    ----------
    trends
        The result of :func:`trajinfer.tl.gene_trends`.
    genes
        Genes to draw (default: all of ``trends``), one panel each.
    fates
        Fates to draw (default: all reached), in the order of ``trends.fates``; each keeps its
        colour whichever are drawn.
    band
        Shade the band between the lower and upper quantiles across the simulated cells of a
        fate.
    ncols
        Panels per row for several genes.
    ax
        Axes for a single gene (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes or matplotlib.figure.Figure
        The Axes for one gene; a Figure with one panel per gene for several. The mean
        expression over the simulated cells of each fate is a line against time (the data's
        units; the observed time points are the ticks), the band spans the quantiles; the
        legend gives each fate's share of the simulated cells.
    """
    genes = list(trends.genes) if genes is None else [genes] if isinstance(genes, str) else list(genes)
    unknown = [gene for gene in genes if gene not in trends.genes]
    if unknown:
        raise KeyError(f"Genes {unknown} are not in the trends; they hold {trends.genes}.")
    asked = list(trends.fates) if fates is None else [str(fate) for fate in fates]
    unreached = [fate for fate in asked if fate not in trends.fates]
    if unreached:
        raise KeyError(f"Fates {unreached} were not reached; the trends hold {trends.fates}.")
    chosen = [fate for fate in trends.fates if fate in asked]
    palette = dict(zip(trends.fates, sns.color_palette("tab10" if len(trends.fates) <= 10 else "husl", len(trends.fates))))
    if len(genes) == 1:
        ax = _new_ax(ax, figsize=(5.0, 3.6))
        _trend_panel(ax, trends, genes[0], chosen, palette, band)
        ax.legend(title=f"fate ({trends.cluster_key})", fontsize="small", frameon=False, loc="best")
        return ax
    if ax is not None:
        raise ValueError("Several genes draw one panel each: leave ax=None and use the returned Figure.")
    ncols = max(1, min(ncols, len(genes)))
    nrows = -(-len(genes) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.8 * ncols, 3.0 * nrows + 0.6), squeeze=False, layout="constrained")
    for panel, gene in zip(axes.ravel(), genes):
        _trend_panel(panel, trends, gene, chosen, palette, band)
    for panel in axes.ravel()[len(genes):]:
        panel.set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, title=f"fate ({trends.cluster_key})", loc="outside lower center", ncols=min(len(labels), 5),
               frameon=False, fontsize="small")
    return fig


def _trend_panel(ax: Axes, trends: GeneTrends, gene: str, fates: list[str], palette: dict[str, Any], band: bool) -> None:
    table = trends.table[trends.table["gene"] == gene]
    for fate in fates:
        rows = table[table["fate"] == fate]
        color = palette[fate]
        ax.plot(rows["time"], rows["mean"], color=color, linewidth=2.0, label=f"{fate} ({100 * trends.fractions[fate]:.0f}%)")
        if band:
            ax.fill_between(rows["time"], rows["lower"], rows["upper"], color=color, alpha=0.18, linewidth=0)
    if trends.observed_times:
        labels, values = list(trends.observed_times), list(trends.observed_times.values())
        ax.set_xticks(values, labels, rotation=30 if max(len(label) for label in labels) > 4 else 0)
    ax.set_xlabel(trends.time_key)
    ax.set_ylabel(f"expression ({trends.expression})")
    ax.set_title(gene)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)


# ------------------------------------------------------------------------ loss
@doc_params()
def loss(
    model_or_adata: ActionMatching | AnnData | np.ndarray,
    *,
    smooth: int | None = None,
    key: str = "tj",
    ax: Axes | None = None,
) -> Axes:
    """Training loss per iteration with its moving average.

    Parameters
    ----------
    model_or_adata
        A fitted :class:`~trajinfer.ActionMatching`, an AnnData annotated by
        :func:`trajinfer.fit` (``uns[key]["loss_curve"]``) or the loss values themselves.
    smooth
        Width of the moving average in iterations (default: a twentieth of the iterations, at
        least 1; 1 draws the raw curve only).
    {key_uns}
    {ax}

    Returns
    -------
    matplotlib.axes.Axes
        The raw curve (light) and the moving average (dark). Action Matching losses can be
        negative: only their decrease is meaningful.
    """
    if isinstance(model_or_adata, ActionMatching):
        curve = getattr(model_or_adata, "loss_curve_", None)
        if curve is None:
            raise ValueError("The model is not fitted: no loss curve.")
    elif isinstance(model_or_adata, AnnData):
        if key not in model_or_adata.uns or "loss_curve" not in model_or_adata.uns[key]:
            raise KeyError(f"adata.uns has no {key!r} entry with a loss curve; fit with tj.fit(..., key_added={key!r}).")
        curve = model_or_adata.uns[key]["loss_curve"]
    else:
        curve = model_or_adata
    curve = np.asarray(curve, dtype=float).ravel()
    if curve.size == 0:
        raise ValueError("The loss curve is empty.")
    window = max(1, curve.size // 20) if smooth is None else int(smooth)
    if window < 1:
        raise ValueError(f"smooth must be a positive integer, got {smooth!r}.")
    window = min(window, curve.size)
    ax = _new_ax(ax, figsize=(5.5, 3.5))
    iterations = np.arange(1, curve.size + 1)
    if window == 1:
        ax.plot(iterations, curve, color="C0", linewidth=1.2, label="loss")
    else:
        average = np.convolve(curve, np.ones(window) / window, mode="valid")
        ax.plot(iterations, curve, color="C0", alpha=0.3, linewidth=0.8, label="loss")
        ax.plot(iterations[window - 1 :], average, color="C0", linewidth=1.8, label=f"moving average ({window})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("Training loss")
    ax.legend(frameon=False, fontsize="small")
    return ax
