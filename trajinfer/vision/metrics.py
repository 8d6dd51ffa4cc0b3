"""Evaluation of image models: ODE sampling, bits per dimension, Fréchet distances.

Likelihoods use the continuous change of variables (paper eq. 9): along ``dx/dtau = v(x, tau)``,

    log q_1(x) = log q_0(x(0)) − ∫_0^1 div v(x(tau), tau) dtau,

integrated backward from the data at ``tau = 1`` with a fixed-step solver; the divergence is
exact (``d`` backward passes, small images) or Hutchinson's ``εᵀ (∂v/∂x) ε`` with one set of
Rademacher probes held fixed along each trajectory (FFJORD), an unbiased estimate of the
log-density.

Bits per dimension of quantised data use uniform dequantisation: with pixels on a grid of
spacing ``Δ`` (``bin_width``) and the model trained on ``x + Δ(u − ½)``, ``u ~ U[0, 1)^d``,
``log P(x) ≥ E_u[log p(x + Δ(u − ½))] + d log Δ``, so

    BPD = −(log p(y) + d log Δ) / (d log 2),   y = x + Δ(u − ½),

an upper bound on the discrete code length (e.g. ``Δ = 2/255`` for 8-bit images in [-1, 1]
adds ``log2(127.5) ≈ 6.99`` bits).

FID needs the Inception-v3 weights, which are never downloaded here: :func:`inception_fid` uses
torchmetrics' maintained implementation when both the package and cached weights are present
and returns ``None`` otherwise. The fallback is a Fréchet distance on the penultimate features
of a small CNN trained on the same data (:class:`FeatureClassifier`); its values are on their
own scale, are reported under names such as ``"FD-digits-classifier"`` and are not comparable to
FID.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import linalg
from torch import nn
from torch.nn import functional as F

from .._deprecation import UNSET, renamed_keyword
from .._progress import progress_bar

__all__ = [
    "INCEPTION_WEIGHTS", "ODE_METHODS", "ODE_SOLVERS", "FeatureClassifier", "Field", "bits_per_dim", "classifier_accuracy",
    "classifier_fd", "classifier_features", "classifier_score", "dequantize", "frechet_distance",
    "inception_fid", "inception_weights_available", "log_likelihood", "module_field", "n_function_evaluations",
    "ode_sample", "potential_field", "rotation_labels", "train_feature_classifier",
]

logger = logging.getLogger(__name__)

# field(x (n, d), tau (n,)) -> velocity (n, d), differentiable with respect to x
Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Fixed-step ODE solvers of :func:`ode_sample` and :func:`log_likelihood`.
ODE_SOLVERS = ("euler", "midpoint", "rk4")
#: Former name of :data:`ODE_SOLVERS`, kept for one release.
ODE_METHODS = ODE_SOLVERS
_STAGES = {"euler": 1, "midpoint": 2, "rk4": 4}
INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"


def potential_field(potential: nn.Module, create_graph: bool = True) -> Field:
    """Velocity ``∇_x s(x, tau)`` of a potential module.

    With ``create_graph`` the velocity keeps a graph to ``x`` (needed for divergences); without
    it, evaluation is cheaper (sampling).
    """

    def field(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            return torch.autograd.grad(potential(x, tau).sum(), x, create_graph=create_graph)[0]

    return field


def module_field(network: nn.Module) -> Field:
    """Velocity given directly by a network ``v(x, tau)`` (flow matching)."""

    def field(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return network(x, tau)

    return field


def _step(
    rate: Callable[[torch.Tensor, torch.Tensor], Any], x: torch.Tensor, tau: float, dt: float, solver: str
) -> Any:
    """One explicit step of a (possibly tuple-valued) ODE; returns the increment(s)."""
    n = x.shape[0]

    def at(offset: float) -> torch.Tensor:
        return torch.full((n,), tau + offset, device=x.device, dtype=x.dtype)

    def add(state: Any, k: Any, h: float) -> Any:
        return state + h * k

    if solver == "euler":
        return rate(x, at(0.0))
    if solver == "midpoint":
        k1 = rate(x, at(0.0))
        return rate(add(x, k1[0] if isinstance(k1, tuple) else k1, dt / 2), at(dt / 2))
    k1 = rate(x, at(0.0))
    first = (lambda k: k[0]) if isinstance(k1, tuple) else (lambda k: k)
    k2 = rate(add(x, first(k1), dt / 2), at(dt / 2))
    k3 = rate(add(x, first(k2), dt / 2), at(dt / 2))
    k4 = rate(add(x, first(k3), dt), at(dt))
    if isinstance(k1, tuple):
        return tuple((a + 2 * b + 2 * c + d) / 6 for a, b, c, d in zip(k1, k2, k3, k4))
    return (k1 + 2 * k2 + 2 * k3 + k4) / 6


def ode_sample(
    field: Field,
    x0: torch.Tensor,
    *,
    tau_start: float = 0.0,
    tau_end: float = 1.0,
    n_steps: int = 100,
    solver: str = "rk4",
    batch_size: int = 500,
    progress: bool = False,
    method: Any = UNSET,
) -> torch.Tensor:
    """Integrate ``dx/dtau = v(x, tau)`` from ``tau_start`` to ``tau_end`` with a fixed-step solver.

    Parameters
    ----------
    field
        Velocity field (see :func:`potential_field`, :func:`module_field`).
    x0
        Start states (n, d).
    tau_start, tau_end
        Internal times; ``tau_end < tau_start`` integrates backward.
    n_steps
        Number of steps; the number of field evaluations is ``n_steps`` times 1 (euler),
        2 (midpoint) or 4 (rk4), see :func:`n_function_evaluations`.
    solver
        ``"euler"``, ``"midpoint"`` or ``"rk4"``.
    batch_size
        States integrated at once.
    progress
        Show a progress bar over batches.
    method
        Deprecated name of ``solver``.

    Returns
    -------
    torch.Tensor
        End states (n, d), detached.
    """
    solver = renamed_keyword(solver, method, function="ode_sample", old="method", new="solver")
    _check_solver(solver, n_steps)
    dt = (tau_end - tau_start) / n_steps
    out = []
    for lo in progress_bar(range(0, x0.shape[0], batch_size), show=progress, desc="sample", leave=False):
        x = x0[lo : lo + batch_size].detach()
        for k in range(n_steps):
            x = (x + dt * _step(lambda y, t: field(y, t).detach(), x, tau_start + k * dt, dt, solver)).detach()
        out.append(x)
    return torch.cat(out)


def n_function_evaluations(solver: str | None = None, n_steps: int | None = None, *, method: Any = UNSET) -> int:
    """Field evaluations of a fixed-step solve.

    Parameters
    ----------
    solver
        ``"euler"`` (1 per step), ``"midpoint"`` (2) or ``"rk4"`` (4); required (the default
        only lets the deprecated ``method`` stand in for it).
    n_steps
        Number of steps; required.
    method
        Deprecated name of ``solver``.

    Returns
    -------
    int
    """
    solver = renamed_keyword(solver, method, function="n_function_evaluations", old="method", new="solver")
    _check_solver(solver, n_steps)
    return _STAGES[solver] * n_steps


def _check_solver(solver: str | None, n_steps: int | None) -> None:
    """Raise ``ValueError`` for an unknown solver or a step count that is not a positive integer."""
    if solver not in ODE_SOLVERS:
        raise ValueError(f"Unknown solver {solver!r}; choose one of {ODE_SOLVERS}.")
    if not (isinstance(n_steps, (int, np.integer)) and n_steps >= 1):
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}.")


def _divergence(v: torch.Tensor, x: torch.Tensor, probes: torch.Tensor | None) -> torch.Tensor:
    """Exact trace of ``∂v/∂x`` (``probes=None``) or the Hutchinson estimate with ``probes`` (k, n, d)."""
    if probes is None:
        rows = [torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1])]
        return torch.stack(rows, dim=1).sum(dim=1)
    total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    for k, eps in enumerate(probes):
        jvp = torch.autograd.grad(v, x, grad_outputs=eps, retain_graph=k < len(probes) - 1)[0]
        total = total + (jvp * eps).sum(dim=1)
    return total / len(probes)


def log_likelihood(
    field: Field,
    x: torch.Tensor,
    log_prior: Callable[[torch.Tensor], torch.Tensor],
    *,
    n_steps: int = 50,
    solver: str = "rk4",
    divergence: str = "hutchinson",
    n_probes: int = 1,
    generator: torch.Generator | None = None,
    batch_size: int = 250,
    progress: bool = False,
    method: Any = UNSET,
) -> torch.Tensor:
    """Log-density ``log q_1(x)`` of a flow from ``q_0`` by the change of variables.

    Parameters
    ----------
    field
        Velocity field, differentiable with respect to ``x``.
    x
        Points at ``tau = 1`` (n, d).
    log_prior
        ``log q_0`` on a batch (n, d) -> (n,).
    n_steps, solver
        Steps and fixed-step solver (``"euler"``, ``"midpoint"`` or ``"rk4"``) of the
        integration from ``tau = 1`` to ``tau = 0``.
    divergence
        ``"exact"`` or ``"hutchinson"`` (Rademacher probes fixed along each trajectory).
    n_probes
        Probes per sample for ``"hutchinson"``.
    generator
        Random generator for the probes.
    batch_size
        Points processed at once.
    progress
        Show a progress bar over batches.
    method
        Deprecated name of ``solver``.

    Returns
    -------
    torch.Tensor
        ``log q_1(x)``, shape (n,), float64, on the CPU.
    """
    solver = renamed_keyword(solver, method, function="log_likelihood", old="method", new="solver")
    _check_solver(solver, n_steps)
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}.")
    dt = -1.0 / n_steps
    results = []
    for lo in progress_bar(range(0, x.shape[0], batch_size), show=progress, desc="likelihood", leave=False):
        y = x[lo : lo + batch_size].detach()
        probes = None
        if divergence == "hutchinson":
            probes = torch.randint(0, 2, (n_probes, *y.shape), generator=generator, device=y.device).to(y.dtype) * 2 - 1

        def rate(z: torch.Tensor, tau: torch.Tensor, probes: torch.Tensor | None = probes) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                v = field(z, tau)
                div = _divergence(v, z, probes)
            return v.detach(), div.detach()

        integral = torch.zeros(y.shape[0], device=y.device, dtype=torch.float64)
        for k in range(n_steps):
            dy, ddiv = _step(rate, y, 1.0 + k * dt, dt, solver)
            y = y + dt * dy
            integral = integral + dt * ddiv.double()
        # integral = ∫_1^0 div v dtau = −∫_0^1 div v dtau
        results.append((log_prior(y).double() + integral).cpu())
    return torch.cat(results)


def bits_per_dim(log_density: torch.Tensor | np.ndarray, dim: int, bin_width: float | None = None) -> np.ndarray:
    """Bits per dimension ``−(log p + d log Δ)/(d log 2)`` from continuous log-densities.

    Parameters
    ----------
    log_density
        ``log p(y)`` of dequantised points (n,).
    dim
        Number of dimensions ``d``.
    bin_width
        Quantisation step ``Δ`` in the units of ``y``; ``None`` reports the continuous density
        (no discretisation term).
    """
    log_density = np.asarray(log_density.cpu() if isinstance(log_density, torch.Tensor) else log_density, dtype=float)
    offset = 0.0 if bin_width is None else dim * math.log(bin_width)
    return -(log_density + offset) / (dim * math.log(2))


def dequantize(x: torch.Tensor, bin_width: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x + Δ(u − ½)`` with ``u ~ U[0, 1)``: uniform dequantisation of grid-valued data."""
    return x + bin_width * (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 0.5)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples).

    ``|μ_a − μ_b|² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2})``, the formula behind FID.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError("Need two 2-D feature arrays with the same number of columns and at least 2 rows each.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(a.shape[1])
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = np.real(covmean)
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))
    return max(value, 0.0)


class FeatureClassifier(nn.Module):
    """Small CNN whose penultimate activations serve as features for a Fréchet distance.

    Three 3×3 convolutions (the last two strided), global average pooling to ``width`` features
    and a linear classifier. Works for any image size.
    """

    def __init__(self, image_shape: tuple[int, int, int], n_classes: int, width: int = 64):
        super().__init__()
        c = int(image_shape[0])
        self.image_shape = tuple(int(s) for s in image_shape)
        self.body = nn.Sequential(
            nn.Conv2d(c, width // 2, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(width, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (n, width) of images (n, C, H, W) or flat (n, C*H*W)."""
        return self.body(x.reshape(-1, *self.image_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def rotation_labels(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Augment images with their 90° rotations; the label becomes ``4 * label + k``.

    A self-supervised task giving the feature classifier something to learn on unlabelled
    photographs (orientation cues) besides the source label.
    """
    rotated = [np.rot90(images, k, axes=(2, 3)) for k in range(4)]
    new_labels = [4 * labels + k for k in range(4)]
    return np.ascontiguousarray(np.concatenate(rotated)), np.concatenate(new_labels)


def train_feature_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n_epochs: int = 20,
    batch_size: int = 128,
    lr: float = 2e-3,
    width: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` by cross-entropy with Adam.

    Parameters
    ----------
    images
        (N, C, H, W) in [-1, 1].
    labels
        Integer labels (N,).
    n_epochs, batch_size, lr
        Optimisation settings.
    width
        Feature dimension.
    seed
        Seed of the initialisation and the batch order.
    device
        Where to train.
    progress
        Show a progress bar over epochs.
    """
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if images.ndim != 4 or labels.shape != images.shape[:1]:
        raise ValueError("images must be (N, C, H, W) with one label per image.")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FeatureClassifier(images.shape[1:], int(labels.max()) + 1, width).to(device)
    x_all = torch.as_tensor(images, device=device)
    y_all = torch.as_tensor(labels, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in progress_bar(range(n_epochs), show=progress, desc="classifier", leave=False):
        order = torch.randperm(len(x_all), generator=generator).to(device)
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval().requires_grad_(False)


@torch.no_grad()
def classifier_features(model: FeatureClassifier, images: Any, batch_size: int = 1000) -> np.ndarray:
    """Features of ``images`` ((n, C, H, W) or flat) under a trained classifier, shape (n, width)."""
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).reshape(-1, *model.image_shape)
    return np.concatenate([model.features(x[lo : lo + batch_size].to(device)).cpu().numpy() for lo in range(0, len(x), batch_size)])


@torch.no_grad()
def classifier_accuracy(model: FeatureClassifier, images: Any, labels: np.ndarray) -> float:
    """Share of ``images`` classified as ``labels``."""
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(images, dtype=np.float32), device=device).reshape(-1, *model.image_shape)
    return float((model(x).argmax(1).cpu().numpy() == np.asarray(labels)).mean())


def classifier_fd(model: FeatureClassifier, real: Any, generated: Any) -> float:
    """Fréchet distance between classifier features of real and generated images."""
    return frechet_distance(classifier_features(model, real), classifier_features(model, generated))


@torch.no_grad()
def classifier_score(model: FeatureClassifier, images: Any, batch_size: int = 1000) -> float:
    """Inception-score analogue ``exp E_x KL(p(y|x) || p(y))`` under a trained classifier.

    Between 1 and the number of classes; on its own scale, not comparable with the Inception Score.
    """
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).reshape(-1, *model.image_shape)
    probs = torch.cat([F.softmax(model(x[lo : lo + batch_size].to(device)), dim=1).cpu() for lo in range(0, len(x), batch_size)]).double()
    marginal = probs.mean(0, keepdim=True)
    kl = (probs * (torch.log(probs + 1e-12) - torch.log(marginal + 1e-12))).sum(1)
    return float(torch.exp(kl.mean()))


def inception_weights_available() -> bool:
    """Whether the Inception-v3 FID weights are in the torch hub cache and torchmetrics imports."""
    if not (Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS).is_file():
        return False
    try:
        importlib.import_module("torchmetrics.image.fid")
    except Exception as err:  # a missing package, or one built against another torch
        logger.info("torchmetrics' FID is unavailable (%s).", err)
        return False
    return True


def inception_fid(real: Any, generated: Any, device: str | torch.device = "cpu", batch_size: int = 100) -> float | None:
    """FID with torchmetrics' Inception-v3 features, or ``None`` when the weights are unavailable.

    Images are (n, C, H, W) in [-1, 1]; grayscale images are repeated to three channels.
    Nothing is downloaded: the weights must already be in the torch hub cache.
    """
    if not inception_weights_available():
        logger.info("Inception-v3 FID weights not available; skipping FID.")
        return None
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=2048).to(device)
    for images, is_real in ((real, True), (generated, False)):
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        for lo in range(0, len(x), batch_size):
            chunk = ((x[lo : lo + batch_size].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            metric.update(chunk.to(device), real=is_real)
    return float(metric.compute())
