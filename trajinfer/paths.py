"""Marginal paths ``q_t``: what the Action Matching loss samples from.

A path maps a batch of internal times ``tau`` in [0, 1] (one per sample) to one sample of
``q_tau`` per row. Internal time is the user's time rescaled,
``tau = (t - t_range[0]) / (t_range[1] - t_range[0])``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from . import _defaults as defaults
from ._defaults import INTERPOLATIONS, PAIRINGS
from ._learned_path import PathCorrection, learned_interpolant
from ._validation import as_float_tensor

__all__ = ["CallablePath", "FULL_PAIRING_MAX_ENTRIES", "KDE_FACTOR", "MINIBATCH_PAIRING_MAX_ROWS", "MarginalPath", "SINKHORN_MAX_ITER", "SnapshotPath"]

SINKHORN_MAX_ITER = 200
# Minibatch pairing solves one assignment problem per this many samples of an interval at most:
# its cost is cubic and its memory quadratic in the rows, so a large draw is paired in blocks.
MINIBATCH_PAIRING_MAX_ROWS = 2048
# "auto" smoothing is at least this multiple of Scott's rule for a kernel density estimate of
# each snapshot (see SnapshotPath's notes)
KDE_FACTOR = 0.5
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

    def sample_triplet(self, tau: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The samples of one minibatch of the loss: rows of ``q_0``, ``q_1`` and ``q_tau``.

        The default draws the three independently, in one call of :meth:`sample`. A path
        built from coupled endpoints (an interpolant ``x_tau = f(x_0, x_1)``) may return the
        ``x_0``, ``x_1`` and ``x_tau`` of the same draw in each row: the boundary terms and the
        interior term then share their noise, which lowers the variance of the loss.

        Returns
        -------
        x0, x1, x_tau
            Each of shape (B, ...), for ``tau`` of shape (B,).
        """
        n = tau.shape[0]
        both = torch.cat([torch.zeros_like(tau), torch.ones_like(tau), tau])
        x = self.sample(both, generator)
        return x[:n], x[n : 2 * n], x[2 * n :]

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
        ``"mixture"``: between snapshots k and k+1, draw from a transported copy of snapshot
        k with probability 1 − λ and from a transported copy of snapshot k+1 otherwise. The copy
        of a cell of snapshot k is moved a fraction λ of the way to its barycentric image
        under the exact OT plan (the plan-weighted mean of the cells of k+1 it is coupled to),
        the copy of a cell of k+1 a fraction 1 − λ back to its image in k, and both copies
        are smoothed by a Gaussian kernel whose bandwidth is derived from the data (see Notes).
        At λ = 0 and 1 the path is exactly the snapshots. ``"ot"``: pair the two snapshots by
        exact optimal transport and interpolate linearly (displacement path). ``"sb"``: pair
        by entropic OT with ε = σ²Δt and add Brownian-bridge noise (Schrödinger-bridge path;
        needs ``sigma``). ``"learned"``: a path learned with the action through every time
        point (see Notes): it starts from the linear interpolation of independent draws of
        the two snapshots and a network shared by all intervals corrects it to the least
        action it can express.
    pairing
        How ``"ot"`` and ``"sb"`` couple consecutive snapshots. ``"full"``: one plan between all
        cells of the two snapshots, computed once, from which pairs are drawn: the path is the
        OT (or SB) interpolation between the snapshots themselves. ``"minibatch"``: a new plan
        between the samples of each minibatch (time and memory independent of the number of
        cells, but a noisier, blurred coupling; a draw larger than 2048 samples per interval is
        paired in blocks of 2048). ``"auto"``: ``"full"`` when every plan has at
        most 4·10⁶ entries (2000 × 2000 cells), else ``"minibatch"``.
    sigma
        Diffusion coefficient of the entropic method fitted on this path, in user units
        (required by ``"sb"``). It also sets part of the automatic smoothing: an entropic
        loss on unsmoothed snapshots is unbounded below (see Notes).
    smoothing
        Standard deviation of Gaussian noise added to every sample (0 for none), in the
        units of ``X``. ``"auto"`` (default): at each time point the largest of the
        snapshots' density-estimate bandwidth (one for the whole path), the mixture's kernel
        bandwidth and the entropic bandwidth (see Notes).
    masses
        Total mass (population size) at each time point, for unbalanced methods, relative to
        the first (they are divided by the first value); interpolated linearly in time.
        Default: all ones.
    min_cells
        Fewest samples allowed at a time point.

    Notes
    -----
    Why the mixture is transported and smoothed. A plain mixture ``(1 − λ)A + λB`` of two
    finite clouds makes the Action Matching loss unbounded below: an action flat on every
    sample and higher by ``M`` on ``B`` than on ``A`` costs nothing in the kinetic term and
    lowers the loss by ``M``. Mass must "teleport" from one component to the other, and the
    kinetic energy of doing so through a region of density ``ρ`` is of order ``1/ρ``. With
    components smoothed by a Gaussian kernel of standard deviation ``h``, the density midway
    between samples a distance ``δ`` apart is at least ``exp(−δ²/(8h²))`` of the kernel's
    peak, so the action is finite and bounded by a constant times ``exp(δ²/(8h²))``. The
    transported copies bring the two components to within the plan's splitting of cells of
    each other (they coincide when the plan is a permutation, e.g. equal-size snapshots), and
    the bandwidth is ``h_k = median(δ) / √8`` where ``δ`` is the distance from each copy at
    λ = ½ to the nearest copy of the other component: the midway density is then at least
    ``e^{-1}`` of the peak for half of the samples, and the action bounded by a few times the
    displacement energy. With ``pairing="minibatch"`` each minibatch is paired by an exact
    assignment, the copies coincide and the mixture is the minibatch OT path.

    Why every snapshot is smoothed as a density. A velocity fitted to a path through finitely
    many cells can follow each cell to its partner: between two samples of the same population
    it then moves cells by the difference of two random draws, a displacement of order the
    population's spread per dimension that no population makes. Smoothing the path with a
    Gaussian kernel of width ``h`` turns it into a path of kernel density estimates, and its
    velocity at ``x`` into the kernel-weighted average of the cells' velocities near ``x``: a
    kernel regression, whose variance falls and bias grows with ``h``. ``"auto"`` takes at
    least ``h = c s n^{-1/(d+4)}`` (Scott's rule with ``c = 0.5``: ``s`` the median over time
    points of the root mean square per-feature standard deviation of the cells, ``n`` the
    median number of cells per time point, ``d`` the dimension). As the cells thin out with
    the dimension the kernel widens: in 50 dimensions it averages over nearly half of the
    population's spread, in 5 over about a fifth. It is one width for the whole path: a
    kernel that widened over time would itself be a motion, every cell drifting outwards in
    every dimension. Blurring every marginal alike leaves the mean motion unbiased; the rates
    at which a spread grows or shrinks are damped by about ``s² / (s² + h²)``.

    The learned path. Between snapshots k and k + 1 a sample at fraction λ is
    ``(1 − λ) a + λ b + 4 λ (1 − λ) c_θ(τ, a, b)``, ``a`` and ``b`` independent draws of the
    two snapshots and ``c_θ`` one network for the whole path (``self.correction``). A fit
    trains it with the action, as Wasserstein Lagrangian Flows do: the action minimises the
    loss on the current path, whose minimum is minus the path's kinetic energy, and the path
    maximises the loss's interior term with the action held fixed, so it moves towards the
    least-action path through all the snapshots that the network can express. The kernel of
    the density smoothing is added to its samples as to the others'.

    Entropic methods need smoothing on every interpolation. The entropic loss contains
    ``σ²/2 Δs``; on a path made of finitely many points (the snapshots, their displacement
    interpolant) an action with a sharp peak at every sample has an arbitrarily negative
    Laplacian there at no kinetic cost, so the loss is unbounded below. Equivalently, the drift
    ``v + σ²/2 ∇log q`` of such a path is infinite. A Gaussian kernel of width ``h`` bounds
    the Fisher information of ``q`` by about ``d/h²``, hence the extra action by about
    ``σ⁴ d / (8h²)``. With ``h = σ√Δt / 2`` (the Brownian bridge's spread at mid-interval)
    this is ``σ² d / (2Δt)``, the energy scale of the diffusion itself.
    """

    def __init__(
        self,
        X: Any,
        times: Sequence[float] | np.ndarray,
        *,
        interpolation: str = defaults.INTERPOLATION,
        pairing: str = "auto",
        sigma: float | None = None,
        smoothing: float | str = "auto",
        masses: Sequence[float] | None = None,
        min_cells: int = 2,
    ):
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"Unknown interpolation {interpolation!r}; choose one of {INTERPOLATIONS}.")
        if pairing not in PAIRINGS:
            raise ValueError(f"Unknown pairing {pairing!r}; choose one of {PAIRINGS}.")
        if interpolation == "sb" and not (sigma is not None and sigma > 0):
            raise ValueError("interpolation='sb' needs a positive sigma (the diffusion coefficient).")
        if not (smoothing == "auto" or (isinstance(smoothing, (int, float)) and not isinstance(smoothing, bool) and smoothing >= 0)):
            raise ValueError(f"smoothing must be a non-negative number or 'auto', got {smoothing!r}.")
        snapshots, labels = _split_snapshots(X, times)
        for label, snap in zip(labels, snapshots):
            if snap.shape[0] < min_cells:
                raise ValueError(
                    f"Time point {label:g} has {snap.shape[0]} sample(s); at least {min_cells} are needed. "
                    "Drop or merge that time point."
                )
        self.interpolation = interpolation
        self.sigma = None if sigma is None else float(sigma)
        self._smoothing_param = smoothing
        self.times = np.asarray(labels, dtype=np.float64)
        self.t_range = (float(self.times[0]), float(self.times[-1]))
        self.dim = snapshots[0].shape[1]
        self.counts = torch.tensor([s.shape[0] for s in snapshots])
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.data = torch.cat(snapshots, dim=0)
        del snapshots  # one copy of the cells: the snapshots are views into ``data``
        self.taus = torch.as_tensor((self.times - self.times[0]) / (self.times[-1] - self.times[0]), dtype=torch.float32)
        self.steps = torch.as_tensor(np.diff(self.times), dtype=torch.float32)
        if masses is None:
            masses = np.ones(len(labels))
        masses = np.asarray(masses, dtype=np.float64)
        if masses.shape != (len(labels),) or not np.all(masses > 0):
            raise ValueError(f"masses must hold one positive value per time point ({len(labels)}).")
        self.masses = torch.as_tensor(masses / masses[0], dtype=torch.float32)
        self.pairing = self._resolve_pairing(pairing)
        self._plans = self._full_plans() if self.pairing == "full" and interpolation in ("ot", "sb") else None
        self.correction = PathCorrection(self.data) if interpolation == "learned" else None
        self._displacements = self._transport_displacements() if self.pairing == "full" and interpolation == "mixture" else None
        self.bandwidths = self._bandwidths(smoothing)

    def _resolve_pairing(self, pairing: str) -> str:
        if pairing != "auto":
            return pairing
        largest = max(int(self.counts[k]) * int(self.counts[k + 1]) for k in range(self.n_times - 1))
        return "full" if largest <= FULL_PAIRING_MAX_ENTRIES else "minibatch"

    def _full_plans(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The support of every interval's plan as one table: global indices of the source
        and target cells of each coupled pair, and the cumulative plan weight, offset by the
        interval's number (interval ``k``'s pairs have cumulative weights in (k, k + 1])."""
        sources, targets, cdfs = [], [], []
        for k in range(self.n_times - 1):
            plan = self._plan(self.snapshot(k), self.snapshot(k + 1), k)
            rows, cols = np.nonzero(plan > 0)
            weights = plan[rows, cols]
            sources.append(rows + int(self.offsets[k]))
            targets.append(cols + int(self.offsets[k + 1]))
            cdfs.append(k + np.cumsum(weights) / weights.sum())

        def as_tensor(parts: list[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(np.concatenate(parts), dtype=dtype, device=self.device)

        return as_tensor(sources, torch.long), as_tensor(targets, torch.long), as_tensor(cdfs, torch.float64)

    def _transport_displacements(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per cell, the displacement to its barycentric image in the next snapshot (forward)
        and in the previous one (backward), under the exact OT plan of each interval."""
        forward = torch.zeros_like(self.data)
        backward = torch.zeros_like(self.data)
        for k in range(self.n_times - 1):
            a, b = self.snapshot(k), self.snapshot(k + 1)
            plan = torch.as_tensor(self._plan(a, b, k), dtype=self.data.dtype)
            lo, hi = int(self.offsets[k]), int(self.offsets[k + 1])
            forward[lo : lo + a.shape[0]] = (plan @ b) / plan.sum(1, keepdim=True) - a
            backward[hi : hi + b.shape[0]] = (plan.T @ a) / plan.sum(0)[:, None] - b
        return forward, backward

    def _bandwidths(self, smoothing: float | str) -> torch.Tensor:
        """Kernel standard deviation at each time point, interpolated linearly in between.

        ``"auto"`` takes, at each time point, the largest need of the path there (see the
        class notes): the snapshots' density-estimate bandwidth, the mixture's bandwidth
        ``h_k`` of each adjacent interval, and with a diffusion coefficient ``σ`` the entropic
        bandwidth ``σ √Δt / 2`` of each adjacent interval (the Brownian bridge's spread at the
        middle of the interval). The bandwidth is then continuous in time (a jump would make
        the path discontinuous) and covers each interval's needs throughout it.
        """
        if smoothing != "auto":
            return torch.full((self.n_times,), float(smoothing))
        needs = torch.zeros(self.n_times - 1)
        if self.interpolation == "mixture" and self._displacements is not None:
            needs = torch.maximum(needs, self._mixture_bandwidths())
        if self.sigma is not None:
            needs = torch.maximum(needs, 0.5 * self.sigma * torch.sqrt(self.steps.cpu()))
        at_times = torch.maximum(torch.cat([needs[:1], needs]), torch.cat([needs, needs[-1:]]))
        return torch.maximum(at_times, self._density_bandwidths())

    def _density_bandwidths(self) -> torch.Tensor:
        """``KDE_FACTOR · s · n^{-1/(d+4)}``, one width for every time point (Scott's rule,
        scaled): ``s`` the median over time points of the root mean square per-feature standard
        deviation of the cells, ``n`` the median number of cells per time point."""
        spreads = [float(self.snapshot(k).cpu().double().var(0, unbiased=False).mean().sqrt()) for k in range(self.n_times)]
        width = KDE_FACTOR * float(np.median(spreads)) * float(self.counts.double().median()) ** (-1.0 / (self.dim + 4))
        return torch.full((self.n_times,), width)

    def _mixture_bandwidths(self) -> torch.Tensor:
        """``h_k = median(δ) / √8`` of each interval, ``δ`` the distance from each transported
        copy at λ = ½ to the nearest copy of the other component."""
        forward, backward = self._displacements
        widths = []
        for k in range(self.n_times - 1):
            lo, hi = int(self.offsets[k]), int(self.offsets[k + 1])
            a_half = self.snapshot(k) + 0.5 * forward[lo : lo + int(self.counts[k])]
            b_half = self.snapshot(k + 1) + 0.5 * backward[hi : hi + int(self.counts[k + 1])]
            gaps = torch.cat([torch.cdist(a_half, b_half).min(1).values, torch.cdist(b_half, a_half).min(1).values])
            widths.append(float(gaps.median()) / math.sqrt(8.0))
        return torch.tensor(widths)

    def to(self, device: torch.device) -> SnapshotPath:
        self.device = torch.device(device)
        self.data = self.data.to(self.device)
        for name in ("counts", "offsets", "taus", "steps", "masses", "bandwidths"):
            setattr(self, name, getattr(self, name).to(self.device))
        if self._plans is not None:
            self._plans = tuple(table.to(self.device) for table in self._plans)
        if self._displacements is not None:
            self._displacements = tuple(d.to(self.device) for d in self._displacements)
        if self.correction is not None:
            self.correction.to(self.device)
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

    def _draw_index(self, which: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(which.shape, generator=generator, device=self.device)
        return self.offsets[which] + (u * self.counts[which]).long().clamp_max(self.counts[which] - 1)

    def _draw(self, which: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return self.data[self._draw_index(which, generator)]

    def sample(self, tau: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():  # a learned path's network is trained through sample_differentiable only
            return self.sample_differentiable(tau, generator)

    def sample_differentiable(self, tau: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`sample`, keeping the graph to the parameters of a learned path's network."""
        tau = tau.to(self.device)
        k, lam = self._interval(tau)
        if self.interpolation == "mixture" and self._displacements is not None:
            x = self._sample_mixture(k, lam, generator)
        elif self.interpolation == "learned":
            x = self._sample_learned(tau, k, lam, generator)
        else:
            x = self._sample_coupled(k, lam, generator)
        bandwidth = (1 - lam) * self.bandwidths[k] + lam * self.bandwidths[k + 1]
        if bool((bandwidth > 0).any()):
            x = x + bandwidth[:, None] * torch.randn(x.shape, generator=generator, device=self.device)
        return x

    def _sample_mixture(self, k: torch.Tensor, lam: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        upper = torch.rand(k.shape, generator=generator, device=self.device) < lam
        idx = self._draw_index(k + upper.long(), generator)
        forward, backward = self._displacements
        shift = torch.where(upper[:, None], (1 - lam)[:, None] * backward[idx], lam[:, None] * forward[idx])
        return self.data[idx] + shift

    def _sample_learned(self, tau: torch.Tensor, k: torch.Tensor, lam: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        a, b = self._draw(k, generator), self._draw(k + 1, generator)
        return learned_interpolant(self.correction, tau, lam, a, b)

    def _sample_coupled(self, k: torch.Tensor, lam: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self._plans is not None:
            sources, targets, cdf = self._plans
            u = k.double() + torch.rand(k.shape, generator=generator, device=self.device, dtype=torch.float64)
            pair = torch.searchsorted(cdf, u).clamp_max(cdf.shape[0] - 1)
            source, target = self.data[sources[pair]], self.data[targets[pair]]
        else:
            source = torch.empty(k.shape[0], self.dim, device=self.device)
            target = torch.empty_like(source)
            # a time on a snapshot (the boundary terms' rows) is a plain draw of its cells: pairing
            # them would only make each minibatch's assignment problem larger
            on_snapshot = (lam == 0) | (lam == 1)
            if bool(on_snapshot.any()):
                rows = torch.nonzero(on_snapshot).flatten()
                source[rows] = target[rows] = self._draw(k[rows] + (lam[rows] == 1).long(), generator)
            for interval in torch.unique(k[~on_snapshot]).tolist():
                every = torch.nonzero((k == interval) & ~on_snapshot).flatten()
                for rows in torch.split(every, MINIBATCH_PAIRING_MAX_ROWS):  # one bounded assignment problem each
                    source[rows] = self._draw(torch.full_like(rows, interval), generator)
                    drawn = self._draw(torch.full_like(rows, interval + 1), generator)
                    target[rows] = drawn[self._pair(source[rows], drawn, interval, generator)]
        lam_ = lam[:, None]
        x = (1 - lam_) * source + lam_ * target
        if self.interpolation == "sb":
            std = self.sigma * torch.sqrt(lam_ * (1 - lam_) * self.steps[k][:, None])
            x = x + std * torch.randn(x.shape, generator=generator, device=self.device)
        return x

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
        import ot  # POT is imported where used: it costs seconds at import
        a = source.detach().double().cpu().numpy()
        b = target.detach().double().cpu().numpy()
        cost = 0.5 * ot.dist(a, b, metric="sqeuclidean")
        wa, wb = np.full(a.shape[0], 1.0 / a.shape[0]), np.full(b.shape[0], 1.0 / b.shape[0])
        if self.interpolation in ("ot", "mixture"):
            return ot.emd(wa, wb, cost, numItermax=10_000_000)
        dt = float(self.times[interval + 1] - self.times[interval])
        # Minibatch pairs are drawn row by row, so each source sample keeps its exact weight and
        # the column marginal only needs to be approximate: a capped number of log-domain
        # iterations bounds the cost per step when ε is small against the costs. The full plan
        # is computed once and gets ten times as many iterations.
        max_iter = SINKHORN_MAX_ITER if self.pairing == "minibatch" else 10 * SINKHORN_MAX_ITER
        return ot.sinkhorn(wa, wb, cost, reg=self.sigma**2 * dt, method="sinkhorn_log", numItermax=max_iter, stopThr=1e-6, warn=False)

    def with_diffusion(self, sigma: float) -> SnapshotPath:
        """This path for an entropic method with diffusion coefficient ``sigma``: a shallow copy
        (sharing the cells and plans) whose automatic smoothing includes the entropic bandwidth.
        With an explicit ``smoothing`` the copy keeps it."""
        path = copy.copy(self)
        path.sigma = float(sigma) if self.interpolation != "sb" or self.sigma is None else self.sigma
        path.bandwidths = path._bandwidths(self._smoothing_param).to(self.device)
        return path

    def length(self, max_cells: int = 1000, seed: int = 0) -> float:
        """Length of the path in the Wasserstein-2 sense: ``Σ_k W2(snapshot k, snapshot k+1)``
        (exact, on at most ``max_cells`` random cells per snapshot), in the units of ``X``."""
        import ot  # POT is imported where used: it costs seconds at import
        rng = np.random.default_rng(seed)

        def cells(k: int) -> np.ndarray:
            snap = self.snapshot(k).detach().cpu().double().numpy()
            return snap if len(snap) <= max_cells else snap[rng.choice(len(snap), max_cells, replace=False)]

        total = 0.0
        for k in range(self.n_times - 1):
            a, b = cells(k), cells(k + 1)
            cost = ot.dist(a, b, metric="sqeuclidean")
            total += math.sqrt(max(ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost, numItermax=10_000_000), 0.0))
        return total

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
