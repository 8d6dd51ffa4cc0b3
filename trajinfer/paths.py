"""Marginal paths ``q_t``: what the Action Matching loss samples from.

A path maps a batch of internal times ``tau`` in [0, 1] (one per sample) to one sample of
``q_tau`` per row. Internal time is the user's time rescaled,
``tau = (t - t_range[0]) / (t_range[1] - t_range[0])``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import ot
import torch

from ._validation import as_float_tensor

INTERPOLATIONS = ("mixture", "ot", "sb")
PAIRINGS = ("auto", "full", "minibatch")
SINKHORN_MAX_ITER = 200
# "auto" pairing couples whole snapshots when each plan has at most this many entries
# (2000 x 2000 cells: a 32 MB cost matrix and about a second of network simplex)
FULL_PAIRING_MAX_ENTRIES = 4_000_000


class MarginalPath:
    """Base class of marginal paths.

    Subclasses set ``dim`` and ``t_range`` (user time units) and implement :meth:`sample`.
    """

    dim: int
    t_range: tuple[float, float]
    device: torch.device = torch.device("cpu")

    def sample(self, tau: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One sample of ``q_tau`` per entry of ``tau`` (shape (B,)) -> (B, dim)."""
        raise NotImplementedError

    def mass(self, tau: torch.Tensor) -> torch.Tensor:
        """Total mass of ``q_tau`` (1 for normalised paths); used by unbalanced methods."""
        return torch.ones_like(tau)

    def to(self, device: torch.device) -> MarginalPath:
        """Move the path's data to ``device`` (in place) and return it."""
        self.device = torch.device(device)
        return self

    @property
    def duration(self) -> float:
        """Length of the time interval in user units."""
        return float(self.t_range[1] - self.t_range[0])

    def to_user_time(self, tau: torch.Tensor) -> torch.Tensor:
        """Map internal times ``tau`` in [0, 1] to the user's time units."""
        return self.t_range[0] + tau * self.duration


class CallablePath(MarginalPath):
    """A path given by a function ``f(t: Tensor[B]) -> Tensor[B, d]`` of the user's time.

    Parameters
    ----------
    fn
        Draws one sample of ``q_t`` for each entry of ``t``.
    t_range
        Start and end of the time interval, in the same units as ``fn``'s argument.
    mass_fn
        Optional total mass ``m(t)`` of an unnormalised path (unbalanced methods).
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], Any],
        t_range: tuple[float, float] = (0.0, 1.0),
        mass_fn: Callable[[torch.Tensor], Any] | None = None,
    ):
        if not callable(fn):
            raise TypeError("fn must be callable as fn(t: Tensor[B]) -> Tensor[B, d].")
        t0, t1 = float(t_range[0]), float(t_range[1])
        if not t1 > t0:
            raise ValueError(f"t_range must be increasing, got {t_range}.")
        self.fn = fn
        self.mass_fn = mass_fn
        self.t_range = (t0, t1)
        probe = self._call(torch.tensor([t0, t1]))
        self.dim = probe.shape[1]

    def _call(self, t_user: torch.Tensor) -> torch.Tensor:
        out = self.fn(t_user)
        out = out if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))
        if out.ndim != 2 or out.shape[0] != t_user.shape[0]:
            raise ValueError(
                f"The path callable must return shape (B, d) for B={t_user.shape[0]} times; "
                f"got {tuple(out.shape)}."
            )
        return out.to(device=self.device, dtype=torch.float32)

    def sample(self, tau: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._call(self.to_user_time(tau))

    def mass(self, tau: torch.Tensor) -> torch.Tensor:
        if self.mass_fn is None:
            return torch.ones_like(tau)
        return torch.as_tensor(self.mass_fn(self.to_user_time(tau)), dtype=tau.dtype, device=tau.device)


class SnapshotPath(MarginalPath):
    """A path through snapshots observed at a few times.

    Parameters
    ----------
    X
        Either an array of shape (n, d) with ``times`` giving each row's time, or a list of
        arrays (one per time point) with ``times`` giving one time per array.
    times
        Numeric times, in the user's units (spacing is preserved).
    interpolation
        ``"mixture"``: between snapshots k and k+1, draw from snapshot k with probability
        1 − λ and from k+1 otherwise (the paper's choice). ``"ot"``: pair the two snapshots by exact
        optimal transport and interpolate linearly (displacement path). ``"sb"``: pair by
        entropic OT with ε = σ²Δt and add Brownian-bridge noise (Schrödinger-bridge path; needs
        ``sigma``).
    pairing
        How ``"ot"`` and ``"sb"`` couple consecutive snapshots. ``"full"``: one plan between all
        cells of the two snapshots, computed once, from which pairs are drawn: the path is the
        OT (or SB) interpolation between the snapshots themselves. ``"minibatch"``: a new plan
        between the samples of each minibatch (time and memory independent of the number of
        cells, but a noisier, blurred coupling). ``"auto"``: ``"full"`` when every plan has at
        most 4·10⁶ entries (2000 × 2000 cells), else ``"minibatch"``.
    sigma
        Diffusion coefficient in user units (``"sb"`` only).
    smoothing
        Standard deviation of Gaussian noise added to every sample (0 for none).
    masses
        Relative total mass (population size) at each time point, for unbalanced methods;
        interpolated linearly in time. Default: all ones.
    min_cells
        Fewest samples allowed at a time point.
    """

    def __init__(
        self,
        X: Any,
        times: Sequence[float] | np.ndarray,
        *,
        interpolation: str = "mixture",
        pairing: str = "auto",
        sigma: float | None = None,
        smoothing: float = 0.0,
        masses: Sequence[float] | None = None,
        min_cells: int = 2,
    ):
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"Unknown interpolation {interpolation!r}; choose one of {INTERPOLATIONS}.")
        if pairing not in PAIRINGS:
            raise ValueError(f"Unknown pairing {pairing!r}; choose one of {PAIRINGS}.")
        if interpolation == "sb" and not (sigma is not None and sigma > 0):
            raise ValueError("interpolation='sb' needs a positive sigma (the diffusion coefficient).")
        if smoothing < 0:
            raise ValueError(f"smoothing must be non-negative, got {smoothing}.")
        snapshots, labels = _split_snapshots(X, times)
        for label, snap in zip(labels, snapshots):
            if snap.shape[0] < min_cells:
                raise ValueError(
                    f"Time point {label:g} has {snap.shape[0]} sample(s); at least {min_cells} are needed. "
                    "Drop or merge that time point."
                )
        self.interpolation = interpolation
        self.sigma = None if sigma is None else float(sigma)
        self.smoothing = float(smoothing)
        self.times = np.asarray(labels, dtype=np.float64)
        self.t_range = (float(self.times[0]), float(self.times[-1]))
        self.dim = snapshots[0].shape[1]
        self.counts = torch.tensor([s.shape[0] for s in snapshots])
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.data = torch.cat(snapshots, dim=0)
        del snapshots  # one copy of the cells: the snapshots are views into ``data``
        self.taus = torch.as_tensor((self.times - self.times[0]) / (self.times[-1] - self.times[0]), dtype=torch.float32)
        if masses is None:
            masses = np.ones(len(labels))
        masses = np.asarray(masses, dtype=np.float64)
        if masses.shape != (len(labels),) or not np.all(masses > 0):
            raise ValueError(f"masses must hold one positive value per time point ({len(labels)}).")
        self.masses = torch.as_tensor(masses, dtype=torch.float32)
        self.pairing = self._resolve_pairing(pairing)
        self._plans = self._full_plans() if self.pairing == "full" else []

    def _resolve_pairing(self, pairing: str) -> str:
        if self.interpolation == "mixture":
            return "none"
        if pairing != "auto":
            return pairing
        largest = max(int(self.counts[k]) * int(self.counts[k + 1]) for k in range(self.n_times - 1))
        return "full" if largest <= FULL_PAIRING_MAX_ENTRIES else "minibatch"

    def _full_plans(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each pair of consecutive snapshots, the flat indices of the plan's support and
        the cumulative sum of its normalised weights there."""
        plans = []
        for k in range(self.n_times - 1):
            plan = self._plan(self.snapshot(k), self.snapshot(k + 1), k).ravel()
            support = np.flatnonzero(plan > 0)
            cdf = np.cumsum(plan[support])
            plans.append((torch.as_tensor(support, device=self.device), torch.as_tensor(cdf / cdf[-1], device=self.device)))
        return plans

    def to(self, device: torch.device) -> SnapshotPath:
        self.device = torch.device(device)
        self.data = self.data.to(self.device)
        for name in ("counts", "offsets", "taus", "masses"):
            setattr(self, name, getattr(self, name).to(self.device))
        self._plans = [(support.to(self.device), cdf.to(self.device)) for support, cdf in self._plans]
        return self

    @property
    def n_times(self) -> int:
        """Number of time points (snapshots)."""
        return len(self.times)

    @property
    def snapshots(self) -> list[torch.Tensor]:
        """The samples of each time point (views into one tensor of all samples)."""
        return [self.snapshot(k) for k in range(self.n_times)]

    def snapshot(self, k: int) -> torch.Tensor:
        """All samples at the k-th time point."""
        start = int(self.offsets[k])
        return self.data[start : start + int(self.counts[k])]

    def _interval(self, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = torch.searchsorted(self.taus, tau.contiguous(), right=True) - 1
        k = k.clamp(0, self.n_times - 2)
        lam = (tau - self.taus[k]) / (self.taus[k + 1] - self.taus[k])
        return k, lam.clamp(0.0, 1.0)

    def _draw(self, which: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(which.shape, generator=generator, device=self.device)
        idx = self.offsets[which] + (u * self.counts[which]).long().clamp_max(self.counts[which] - 1)
        return self.data[idx]

    def sample(self, tau: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        tau = tau.to(self.device)
        k, lam = self._interval(tau)
        if self.interpolation == "mixture":
            upper = torch.rand(tau.shape, generator=generator, device=self.device) < lam
            x = self._draw(k + upper.long(), generator)
        else:
            x = self._sample_coupled(k, lam, generator)
        if self.smoothing > 0:
            x = x + self.smoothing * torch.randn(x.shape, generator=generator, device=self.device)
        return x

    def _sample_coupled(self, k: torch.Tensor, lam: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x = torch.empty(k.shape[0], self.dim, device=self.device)
        for interval in torch.unique(k).tolist():
            rows = torch.nonzero(k == interval).flatten()
            if self.pairing == "full":
                source, target = self._draw_pairs(interval, rows.shape[0], generator)
            else:
                source = self._draw(torch.full_like(rows, interval), generator)
                target = self._draw(torch.full_like(rows, interval + 1), generator)
                target = target[self._pair(source, target, interval, generator)]
            lam_i = lam[rows, None]
            x_rows = (1 - lam_i) * source + lam_i * target
            if self.interpolation == "sb":
                dt = float(self.times[interval + 1] - self.times[interval])
                std = self.sigma * torch.sqrt(lam_i * (1 - lam_i) * dt)
                x_rows = x_rows + std * torch.randn(x_rows.shape, generator=generator, device=self.device)
            x[rows] = x_rows
        return x

    def _draw_pairs(self, interval: int, n: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` (source, target) pairs drawn from the full plan of snapshots ``interval`` and ``interval + 1``."""
        support, cdf = self._plans[interval]
        u = torch.rand(n, generator=generator, device=self.device, dtype=cdf.dtype)
        flat = support[torch.searchsorted(cdf, u).clamp_max(support.shape[0] - 1)]
        n_target = int(self.counts[interval + 1])
        return self.snapshot(interval)[flat // n_target], self.snapshot(interval + 1)[flat % n_target]

    def _pair(self, source: torch.Tensor, target: torch.Tensor, interval: int, generator: torch.Generator | None) -> torch.Tensor:
        """Index into ``target`` (a minibatch as large as ``source``) for each row of ``source``:
        the exact OT assignment, or a draw from each row of the entropic plan."""
        if source.shape[0] == 1:
            return torch.zeros(1, dtype=torch.long, device=self.device)
        plan = self._plan(source, target, interval)
        if self.interpolation == "ot":
            return torch.as_tensor(plan.argmax(axis=1), device=self.device)
        plan = torch.as_tensor(np.maximum(plan, 0.0), dtype=torch.float32, device=self.device)
        return torch.multinomial(plan + 1e-30, 1, generator=generator).flatten()

    def _plan(self, source: torch.Tensor, target: torch.Tensor, interval: int) -> np.ndarray:
        """Transport plan with uniform marginals for the cost ½|x − y|²: exact (``"ot"``) or
        entropic with ε = σ²Δt (``"sb"``)."""
        a = source.detach().double().cpu().numpy()
        b = target.detach().double().cpu().numpy()
        cost = 0.5 * ot.dist(a, b, metric="sqeuclidean")
        wa, wb = np.full(a.shape[0], 1.0 / a.shape[0]), np.full(b.shape[0], 1.0 / b.shape[0])
        if self.interpolation == "ot":
            return ot.emd(wa, wb, cost, numItermax=10_000_000)
        dt = float(self.times[interval + 1] - self.times[interval])
        # Minibatch pairs are drawn row by row, so each source sample keeps its exact weight and
        # the column marginal only needs to be approximate: a capped number of log-domain
        # iterations bounds the cost per step when ε is small against the costs. The full plan
        # is computed once and gets ten times as many iterations.
        max_iter = SINKHORN_MAX_ITER if self.pairing == "minibatch" else 10 * SINKHORN_MAX_ITER
        return ot.sinkhorn(wa, wb, cost, reg=self.sigma**2 * dt, method="sinkhorn_log", numItermax=max_iter, stopThr=1e-6, warn=False)

    def mass(self, tau: torch.Tensor) -> torch.Tensor:
        k, lam = self._interval(tau.to(self.device))
        return (1 - lam) * self.masses[k] + lam * self.masses[k + 1]


def _split_snapshots(X: Any, times: Any) -> tuple[list[torch.Tensor], list[float]]:
    """Group samples by time into sorted snapshots, validating shapes and values."""
    if isinstance(X, (list, tuple)):
        if len(X) != len(times):
            raise ValueError(f"Got {len(X)} snapshot arrays but {len(times)} times.")
        arrays = [as_float_tensor(x, name=f"snapshot {i}") for i, x in enumerate(X)]
        labels = [_as_number(t) for t in times]
        order = np.argsort(labels)
        if len(set(labels)) != len(labels):
            raise ValueError("Snapshot times must be distinct.")
        snapshots, labels = [arrays[i] for i in order], [labels[i] for i in order]
    else:
        data = as_float_tensor(X, name="X")
        labels_per_row = np.asarray(times)
        if labels_per_row.shape != (data.shape[0],):
            raise ValueError(f"times must have one entry per row of X ({data.shape[0]}); got shape {labels_per_row.shape}.")
        try:
            labels_per_row = labels_per_row.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                "times must be numeric; map ordered labels to numbers first (tj.fit does this for "
                "ordered categorical AnnData columns)."
            ) from err
        if not np.all(np.isfinite(labels_per_row)):
            raise ValueError("times contain NaN or Inf.")
        labels = sorted(np.unique(labels_per_row).tolist())
        snapshots = [data[torch.as_tensor(labels_per_row == label)] for label in labels]
    if len(snapshots) < 2:
        raise ValueError(f"At least two distinct time points are needed; got {len(snapshots)}.")
    dims = {s.shape[1] for s in snapshots}
    if len(dims) != 1:
        raise ValueError(f"All snapshots must have the same number of features; got {sorted(dims)}.")
    return snapshots, labels


def _as_number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"Time {value!r} is not numeric.") from err
    if not np.isfinite(number):
        raise ValueError("times contain NaN or Inf.")
    return number
