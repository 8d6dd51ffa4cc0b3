r"""Image interpolant paths ``x_tau = alpha_tau(x_0) + beta_tau(x_1)`` (paper Sec. 4.3, App. E.2).

Every path runs from a prior-like start at internal time ``tau = 0`` to the data at ``tau = 1``
(the Action Matching convention: ``q_0`` is where simulation starts). ``x_0`` is standard
normal noise (uniform angles on the torus), ``x_1`` a data image, and each call of
:meth:`InterpolantPath.sample` draws a fresh ``(x_0, x_1)`` pair per row. Images are flattened
channels-first, ``(B, C*H*W)``.

Coupled minibatches
-------------------
The loss needs, per row, samples of ``q_0``, ``q_1`` and ``q_tau``.
:meth:`InterpolantPath.sample_triplet` builds all three from one ``(x_0, x_1)`` draw, as the
authors do: the states at 0, 1 and ``tau`` of the same noise and image. Each is still a
sample of its marginal (the loss stays unbiased), but the boundary terms and the interior term
now share their noise: the time integral of ``∂_tau s`` along a row nearly cancels
``s(x_0, 0) - s(x_1, 1)`` of the same row, which lowers the variance of the loss.

Conditioning channels
---------------------
Super-resolution and colorization append the observation to the state as extra channels, held
fixed along the path: the low-resolution image (the kept pixel of each block, repeated over its
block) and the grayscale image. The state is then ``(B, (C + cond_channels)*H*W)``; the
potential (:class:`~trajinfer.vision.unet.UNetPotential` with ``cond_channels``) reads the
extra channels with their gradient stopped, so their velocity is exactly zero and they stay
the observation while the image channels are generated. :meth:`InterpolantPath.to_images`
drops them.

============================  =====================================================================
path                          ``x_tau``
============================  =====================================================================
:class:`LinearPath`           ``(1 - tau) x_0 + tau x_1``
:class:`VPSDEPath`            ``a(1 - tau) x_1 + b(1 - tau) x_0``, ``a(s) = exp(-B(s)/2)``,
                              ``b(s) = sqrt(1 - exp(-B(s)))``, ``B(s) = ∫_0^s β``, ``β(s) = 0.1 + 19.9 s``
:class:`SuperResolutionPath`  ``m x_1 + (1 - m)((1 - tau) x_0 + tau x_1)``, ``m`` keeps one pixel per 2×2 block
:class:`InpaintingPath`       same form, ``m`` is 1 outside a rectangular hole
:class:`ColorizationPath`     ``(1 - tau)(0.1 x_0 + gray(x_1)) + tau x_1``
:class:`TorusPath`            ``wrap(θ_1 - (1 - tau) wrap(θ_1 - x_0))``, ``θ_1 = (π/2) x_1``
============================  =====================================================================

Time weighting
--------------
With a weight ``ω(tau)`` the loss (see :mod:`trajinfer.losses`) is
``ω(0) E[s_0] - ω(1) E[s_1] + ∫ E[ω (½|∇s|² + ∂_tau s) + s ω'] dtau``. Since
``d/dtau (ω E[s]) = ω' E[s] + ω E[∂_tau s + <∇s, v>]`` for the path's velocity ``v = ∇s*``,

.. math::  L_\omega(s) = \tfrac12 \int_0^1 \omega(\tau)\, E|\nabla s_\tau - \nabla s^*_\tau|^2 \,d\tau - \tfrac12 \int_0^1 \omega(\tau)\, E|\nabla s^*_\tau|^2 \,d\tau

so ``ω(tau)`` is how much the velocity error at ``tau`` counts. Near the data end every path has
the local form ``x_tau ≈ a_tau x^i + b_tau ε`` around each training image ``x^i`` (paper
App. C), with noise scale ``b_tau -> 0`` as ``tau -> 1`` and a locally quadratic potential

.. math::  s^i_\tau(x) = \frac{\dot b_\tau}{2 b_\tau}\,|x - a_\tau x^i|^2 + \langle \dot a_\tau x^i, x\rangle

whose curvature ``ḃ/b`` diverges: ``s_1`` is singular on the data and the boundary term
``ω(1) E[s_1]`` ill-posed. Any weight with ``ω(1) = 0`` removes it. On the linear-type paths
(generation, inpainting, colorization, torus: ``a = tau``, ``b ∝ 1 - tau``) the velocity on
the path stays bounded, ``E|∇s*|² ≤ E|ẋ_tau|²`` (Jensen: ``∇s*`` is the conditional mean of
the velocity ``ẋ_tau`` of the interpolant), so nothing else needs damping and the weight
should vanish as slowly as it can: with a simple zero, the slowest for which the loss's term
``s ω'`` stays bounded,

.. math::  \omega(\tau) = 1 - \tau, \qquad \omega(0) = 1,\; \omega(1) = 0,\; \omega' = -1,

the authors' choice. The noise variance ``(1 - tau)²`` also removes the boundary term, but
it weights the data end, where the images get their detail, by a further factor ``1 - tau``
(``4·10⁻⁴`` instead of ``0.02`` at ``tau = 0.98``) and starves it: the velocity is then
learnt poorly just where the images are finished. Super-resolution keeps ``ω ≡ 1``, the authors' setting for
that task (its ``time_weight`` is ``None``). The VP-SDE is not linear:
``b² ≈ β(0)(1 - tau)`` and ``E|∇s*|² ∝ β(0)/(1 - tau)`` diverges, so its weight is the noise
variance ``ω = b² = 1 - exp(-B(1 - tau))``, which keeps ``ω E|∇s*|²`` bounded. Each path
exposes its weight as :attr:`~InterpolantPath.time_weight`, which :func:`action_matching`
passes to the estimator.

Dequantisation
--------------
Pixel data take ``levels`` values on the grid ``-1 + 2k/(levels - 1)``. With ``bin_width`` set
(``2/(levels - 1)``, :attr:`~trajinfer.vision.data.ImageDataset.bin_width`), every data draw is
jittered uniformly within its bin, ``x_1 + bin_width (u - 1/2)``, so the model learns a
continuous density ``p`` with ``log P(x) >= E_u[log p(x + bin_width (u - 1/2))] + d log bin_width``
for the discrete image ``x`` (see :func:`trajinfer.vision.metrics.bits_per_dim`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .._run import RUN_SETTINGS, as_run_config
from ..estimator import ActionMatching
from ..paths import MarginalPath
from .unet import UNetPotential

__all__ = [
    "GRAY_WEIGHTS", "TASKS", "TORUS_DATA_SCALE", "VP_BETA_MAX", "VP_BETA_MIN", "ColorizationPath",
    "InpaintingPath", "InterpolantPath", "LinearPath", "MaskedPath", "SuperResolutionPath", "TorusPath",
    "VPSDEPath", "action_matching", "grayscale", "inpainting_mask", "make_path", "superresolution_mask",
    "vp_integral", "wrap_angle",
]

VP_BETA_MIN = 0.1
VP_BETA_MAX = 20.0
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
TORUS_DATA_SCALE = math.pi / 2


def _as_image_tensor(data: Any, image_shape: tuple[int, int, int] | None) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Validate images given as (N, C, H, W) or flat (N, C*H*W) and return them flat."""
    tensor = data.detach() if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data, dtype=np.float32))
    tensor = tensor.to(torch.float32)
    if tensor.ndim == 4:
        shape = tuple(int(s) for s in tensor.shape[1:])
        if image_shape is not None and tuple(image_shape) != shape:
            raise ValueError(f"image_shape {tuple(image_shape)} does not match the data's {shape}.")
    elif tensor.ndim == 2:
        if image_shape is None:
            raise ValueError("Flat data of shape (N, C*H*W) needs image_shape=(C, H, W).")
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or math.prod(shape) != tensor.shape[1]:
            raise ValueError(f"image_shape {tuple(image_shape)} does not match {tensor.shape[1]} features.")
    else:
        raise ValueError(f"Images must have shape (N, C, H, W) or (N, C*H*W); got {tuple(tensor.shape)}.")
    if tensor.shape[0] == 0:
        raise ValueError("No images given.")
    if not torch.isfinite(tensor).all():
        raise ValueError("Images contain NaN or Inf values.")
    return tensor.reshape(tensor.shape[0], -1).contiguous(), shape  # type: ignore[return-value]


def _column(tau: torch.Tensor) -> torch.Tensor:
    return tau.reshape(-1, 1)


class InterpolantPath(MarginalPath):
    """Base class of image interpolants between a noise-built start and the data.

    Parameters
    ----------
    data
        Training images in [-1, 1], shape (N, C, H, W) or flat (N, C*H*W).
    image_shape
        ``(C, H, W)``; needed when ``data`` is flat.
    bin_width
        Width of a quantisation bin in data units; when given, data draws are dequantised
        by uniform noise within the bin. ``None`` uses the data as they are.
    device
        Where the data live and samples are drawn.

    Attributes
    ----------
    image_dim : int
        ``C*H*W``.
    cond_channels : int
        Conditioning channels appended to the image in every state (module docstring).
    periodic : bool
        Whether states are angles on the torus (the potential must then be periodic).
    time_weight : callable or None
        The loss weight ``ω(tau)`` of the path (module docstring): ``1 - tau`` unless a
        subclass overrides it; ``None`` means ``ω ≡ 1``.

    Notes
    -----
    Subclasses implement :meth:`interpolate` and :meth:`noise_scale`; conditional paths set
    ``conditional = True`` (their start depends on the image being completed), and those that
    append the observation to the state set ``cond_channels`` and implement :meth:`condition`.
    """

    conditional: bool = False
    cond_channels: int = 0
    periodic: bool = False
    t_range = (0.0, 1.0)

    def __init__(
        self,
        data: Any,
        image_shape: tuple[int, int, int] | None = None,
        *,
        bin_width: float | None = None,
        device: str | torch.device = "cpu",
    ):
        flat, shape = _as_image_tensor(data, image_shape)
        if bin_width is not None and not bin_width > 0:
            raise ValueError(f"bin_width must be positive or None, got {bin_width}.")
        self.image_shape: tuple[int, int, int] = shape
        self.image_dim = flat.shape[1]
        self.bin_width = None if bin_width is None else float(bin_width)
        self.device = torch.device(device)
        self.data = flat.to(self.device)

    @property
    def n_data(self) -> int:
        return int(self.data.shape[0])

    @property
    def dim(self) -> int:  # type: ignore[override]
        """Size of a state: ``image_dim`` plus ``cond_channels*H*W``."""
        return self.image_dim + self.cond_channels * self.image_shape[1] * self.image_shape[2]

    def to(self, device: str | torch.device) -> InterpolantPath:
        self.device = torch.device(device)
        self.data = self.data.to(self.device)
        return self

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws of the noise ``x_0`` (standard normal), shape (n, image_dim)."""
        return torch.randn(n, self.image_dim, generator=generator, device=self.device)

    def draw(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` independent pairs ``(x_0, x_1)``: noise and (dequantised) data images."""
        idx = torch.randint(self.n_data, (n,), generator=generator, device=self.device)
        x1 = self.data[idx]
        if self.bin_width is not None:
            x1 = x1 + self.bin_width * (torch.rand(x1.shape, generator=generator, device=self.device) - 0.5)
        return self.draw_noise(n, generator), x1

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """``x_tau`` for given noise ``x0`` (n, image_dim), images ``x1`` (n, image_dim) and times
        ``tau`` (n,): the image channels of the state."""
        raise NotImplementedError

    def condition(self, x1: torch.Tensor) -> torch.Tensor:
        """The conditioning channels built from images ``x1`` (n, image_dim) -> (n, dim - image_dim)."""
        return x1[:, :0]

    def state(self, x0: torch.Tensor, x1: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """The full state at ``tau``: :meth:`interpolate`, then the conditioning channels of ``x1``."""
        xt = self.interpolate(x0, x1, tau)
        return torch.cat([xt, self.condition(x1)], dim=1) if self.cond_channels else xt

    def noise_scale(self, tau: torch.Tensor) -> torch.Tensor:
        """Scale ``b_tau`` of the noise in ``x_tau`` (zero at ``tau = 1``)."""
        raise NotImplementedError

    def sample(self, tau: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One sample of ``q_tau`` per entry of ``tau`` (shape (B,)) -> (B, dim)."""
        tau = tau.to(self.device, torch.float32)
        x0, x1 = self.draw(tau.shape[0], generator)
        return self.state(x0, x1, tau)

    def sample_triplet(self, tau: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The states at 0, 1 and ``tau`` of one ``(x_0, x_1)`` draw per row (module docstring)."""
        tau = tau.to(self.device, torch.float32)
        n = tau.shape[0]
        x0, x1 = self.draw(n, generator)
        times = torch.cat([torch.zeros_like(tau), torch.ones_like(tau), tau])
        states = self.state(x0.repeat(3, 1), x1.repeat(3, 1), times)
        return states[:n], states[n : 2 * n], states[2 * n :]

    def start(self, x1: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """The ``tau = 0`` state built from given images ``x1``: where conditional sampling starts."""
        x1 = torch.as_tensor(x1, dtype=torch.float32, device=self.device).reshape(-1, self.image_dim)
        zeros = torch.zeros(x1.shape[0], device=self.device)
        return self.state(self.draw_noise(x1.shape[0], generator), x1, zeros)

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws of the data-free prior (unconditional paths only)."""
        if self.conditional:
            raise ValueError(f"{type(self).__name__} is conditional: its start depends on the image; use start(x1).")
        return self.draw_noise(n, generator)

    def log_prior(self, x: torch.Tensor) -> torch.Tensor:
        """Log density of the prior at ``x`` (n, dim) -> (n,) (unconditional paths only)."""
        if self.conditional:
            raise ValueError(f"{type(self).__name__} is conditional and has no data-free prior density.")
        return -0.5 * (x**2).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi)

    def time_weight(self, tau: torch.Tensor) -> torch.Tensor:
        """``ω(tau) = 1 - tau``: drops the ill-posed data-end boundary term and weights the
        velocity error at each time as much as that allows (module docstring)."""
        return 1 - tau

    def postprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Map simulated states back to the path's domain (identity except on the torus)."""
        return x

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """Flat states (n, dim) -> images (n, C, H, W) in data units (conditioning channels dropped)."""
        return x[:, : self.image_dim].reshape(-1, *self.image_shape)


class LinearPath(InterpolantPath):
    """Unconditional generation: ``x_tau = (1 - tau) x_0 + tau x_1``, ``x_0 ~ N(0, I)``."""

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        t = _column(tau)
        return (1 - t) * x0 + t * x1

    def noise_scale(self, tau: torch.Tensor) -> torch.Tensor:
        return 1 - tau


def vp_integral(s: torch.Tensor) -> torch.Tensor:
    """``B(s) = ∫_0^s β = 0.1 s + 9.95 s²`` for the VP-SDE schedule ``β(s) = 0.1 + 19.9 s``."""
    return VP_BETA_MIN * s + 0.5 * (VP_BETA_MAX - VP_BETA_MIN) * s**2


class VPSDEPath(InterpolantPath):
    """Variance-preserving diffusion (Song et al. 2021) run from noise to data.

    With diffusion time ``s = 1 - tau``: ``x_tau = a(s) x_1 + b(s) x_0``, ``a = exp(-B/2)``,
    ``b = sqrt(1 - exp(-B))``. At ``tau = 0`` the state is ``a(1) x_1 + b(1) x_0`` with
    ``a(1) = e^{-5.025} ≈ 6.6e-3``: the standard normal prior of :meth:`prior_sample` and
    :meth:`log_prior` matches it up to that residue, as in score-based diffusion models.
    """

    def _coefficients(self, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        integral = vp_integral(1 - tau)
        return torch.exp(-0.5 * integral), torch.sqrt(-torch.expm1(-integral))

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        a, b = self._coefficients(tau)
        return _column(a) * x1 + _column(b) * x0

    def noise_scale(self, tau: torch.Tensor) -> torch.Tensor:
        return self._coefficients(tau)[1]

    def time_weight(self, tau: torch.Tensor) -> torch.Tensor:
        """``ω(tau) = b_tau² = 1 - exp(-B(1 - tau))`` (equals ``1 - e^{-10.05}`` at ``tau = 0``)."""
        return -torch.expm1(-vp_integral(1 - tau))


class MaskedPath(InterpolantPath):
    """``x_tau = m x_1 + (1 - m)((1 - tau) x_0 + tau x_1)``: pixels with ``m = 1`` stay at the data.

    Parameters
    ----------
    data, image_shape, bin_width, device
        As for :class:`InterpolantPath`.
    mask
        Boolean array broadcastable to ``(C, H, W)``; ``True`` marks the conditioning pixels.
    """

    conditional = True

    def __init__(self, data: Any, image_shape: tuple[int, int, int] | None = None, *, mask: Any, **kwargs: Any):
        super().__init__(data, image_shape, **kwargs)
        self._set_mask(mask)

    def _set_mask(self, mask: Any) -> None:
        mask = torch.as_tensor(np.asarray(mask, dtype=bool))
        try:
            mask = torch.broadcast_to(mask, self.image_shape)
        except RuntimeError as err:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to {self.image_shape}.") from err
        if bool(mask.all()) or not bool(mask.any()):
            raise ValueError("mask must keep some pixels and generate others.")
        self.mask = mask.reshape(-1).to(self.device)

    def to(self, device: str | torch.device) -> MaskedPath:
        super().to(device)
        self.mask = self.mask.to(self.device)
        return self

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        t = _column(tau)
        return torch.where(self.mask, x1, (1 - t) * x0 + t * x1)

    def noise_scale(self, tau: torch.Tensor) -> torch.Tensor:
        return 1 - tau


def superresolution_mask(image_shape: tuple[int, int, int], factor: int = 2) -> np.ndarray:
    """Boolean mask keeping the top-left pixel of every ``factor × factor`` block."""
    c, h, w = image_shape
    if factor < 2 or h % factor or w % factor:
        raise ValueError(f"factor must be >= 2 and divide the image size {h}×{w}; got {factor}.")
    mask = np.zeros((c, h, w), dtype=bool)
    mask[:, ::factor, ::factor] = True
    return mask


def inpainting_mask(
    image_shape: tuple[int, int, int], region: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Boolean mask that is ``False`` inside the hole ``region = (top, left, height, width)``.

    The default hole is the central square of half the image side.
    """
    c, h, w = image_shape
    if region is None:
        region = (h // 4, w // 4, h // 2, w // 2)
    top, left, height, width = region
    if height < 1 or width < 1 or top < 0 or left < 0 or top + height > h or left + width > w:
        raise ValueError(f"region {region} does not fit in an image of size {h}×{w}.")
    mask = np.ones((c, h, w), dtype=bool)
    mask[:, top : top + height, left : left + width] = False
    return mask


class SuperResolutionPath(MaskedPath):
    """Super-resolution: keep one pixel of each ``factor × factor`` block, generate the rest.

    The state carries the low-resolution image as ``C`` conditioning channels (each kept pixel
    repeated over its block), and the loss is unweighted (``time_weight = None``, ``ω ≡ 1``;
    module docstring).
    """

    time_weight = None

    def __init__(self, data: Any, image_shape: tuple[int, int, int] | None = None, *, factor: int = 2, **kwargs: Any):
        InterpolantPath.__init__(self, data, image_shape, **kwargs)
        self.factor = int(factor)
        self._set_mask(superresolution_mask(self.image_shape, self.factor))

    @property
    def cond_channels(self) -> int:  # type: ignore[override]
        """One conditioning channel per image channel."""
        return self.image_shape[0]

    def condition(self, x1: torch.Tensor) -> torch.Tensor:
        """The low-resolution image: the top-left pixel of each block, repeated over the block."""
        f = self.factor
        low = x1.reshape(-1, *self.image_shape)[:, :, ::f, ::f]
        return low.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3).reshape(x1.shape[0], -1)


class InpaintingPath(MaskedPath):
    """Inpainting: generate the pixels in a rectangular hole, keep the rest.

    Parameters
    ----------
    region
        ``(top, left, height, width)`` of the hole; default the central half-side square.
    """

    def __init__(
        self, data: Any, image_shape: tuple[int, int, int] | None = None, *,
        region: tuple[int, int, int, int] | None = None, **kwargs: Any,
    ):
        InterpolantPath.__init__(self, data, image_shape, **kwargs)
        self.region = region
        self._set_mask(inpainting_mask(self.image_shape, region))


def grayscale(x: torch.Tensor, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` of flat RGB images, repeated over the three channels."""
    c = image_shape[0]
    images = x.reshape(-1, *image_shape)
    weights = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device).reshape(1, c, 1, 1)
    gray = (images * weights).sum(dim=1, keepdim=True)
    return gray.expand(-1, c, -1, -1).reshape(x.shape[0], -1)


class ColorizationPath(InterpolantPath):
    """Colorization: ``x_tau = (1 - tau)(noise_level x_0 + gray(x_1)) + tau x_1`` for RGB images.

    The state carries the grayscale image (the luma of :func:`grayscale`) as one conditioning
    channel.

    Parameters
    ----------
    noise_level
        Scale of the noise added to the grayscale start (0.1 in the paper); it makes the
        one-to-many map learnable and stabilises training.
    """

    conditional = True
    cond_channels = 1

    def __init__(self, data: Any, image_shape: tuple[int, int, int] | None = None, *, noise_level: float = 0.1, **kwargs: Any):
        super().__init__(data, image_shape, **kwargs)
        if self.image_shape[0] != 3:
            raise ValueError(f"Colorization needs RGB images (3 channels); got {self.image_shape[0]}.")
        if not noise_level > 0:
            raise ValueError(f"noise_level must be positive, got {noise_level}.")
        self.noise_level = float(noise_level)

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        t = _column(tau)
        return (1 - t) * (self.noise_level * x0 + grayscale(x1, self.image_shape)) + t * x1

    def condition(self, x1: torch.Tensor) -> torch.Tensor:
        """The luma of ``x1`` (n, H*W)."""
        return grayscale(x1, self.image_shape)[:, : self.image_dim // 3]

    def noise_scale(self, tau: torch.Tensor) -> torch.Tensor:
        return self.noise_level * (1 - tau)


def wrap_angle(x: torch.Tensor) -> torch.Tensor:
    """Wrap angles to ``[-π, π)``; angles already in range are returned unchanged (bit for bit)."""
    inside = (x >= -math.pi) & (x < math.pi)
    return torch.where(inside, x, torch.remainder(x + math.pi, 2 * math.pi) - math.pi)


class TorusPath(InterpolantPath):
    """Generation on the torus ``[-π, π)^d``: geodesic interpolation from uniform angles.

    Pixels ``x ∈ [-1, 1]`` become angles ``θ = (π/2) x ∈ [-π/2, π/2]``, so the darkest and the
    brightest values sit half a turn apart, as in the paper's App. D (which maps them to
    ``[0.25, 0.75]`` of the unit circle). With ``x_0`` uniform on the torus,

    ``x_tau = wrap(θ_1 - (1 - tau) wrap(θ_1 - x_0))``,

    the shortest arc from ``x_0`` to ``θ_1`` travelled at constant speed. The start is exactly
    uniform, so :meth:`log_prior` is ``-d log 2π``. Use a periodic potential
    (``UNetPotential(..., periodic=True)``) so the learned field lives on the torus, and
    :meth:`postprocess` to wrap simulated states. ``bin_width`` is in pixel units; in angle
    units a bin is ``(π/2) bin_width`` wide (what bits per dimension on the torus use).
    """

    periodic = True

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return (2 * torch.rand(n, self.image_dim, generator=generator, device=self.device) - 1) * math.pi

    def draw(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x0, x1 = super().draw(n, generator)
        return x0, self.to_angles(x1)

    @staticmethod
    def to_angles(x: torch.Tensor) -> torch.Tensor:
        """Pixel values in [-1, 1] -> angles in [-π/2, π/2]."""
        return TORUS_DATA_SCALE * x

    @staticmethod
    def from_angles(theta: torch.Tensor) -> torch.Tensor:
        """Angles -> pixel values (inverse of :meth:`to_angles` after wrapping)."""
        return wrap_angle(theta) / TORUS_DATA_SCALE

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """``x1`` are angles here (as returned by :meth:`draw`)."""
        return wrap_angle(x1 - (1 - _column(tau)) * wrap_angle(x1 - x0))

    def start(self, x1: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        x1 = torch.as_tensor(x1, dtype=torch.float32, device=self.device).reshape(-1, self.image_dim)
        return super().start(self.to_angles(x1), generator)

    def noise_scale(self, tau: torch.Tensor) -> torch.Tensor:
        return 1 - tau

    def log_prior(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), -self.dim * math.log(2 * math.pi), device=x.device, dtype=x.dtype)

    def postprocess(self, x: torch.Tensor) -> torch.Tensor:
        return wrap_angle(x)

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_angles(x).reshape(-1, *self.image_shape)


TASKS = {
    "generation": LinearPath,
    "vpsde": VPSDEPath,
    "superres": SuperResolutionPath,
    "inpainting": InpaintingPath,
    "colorization": ColorizationPath,
    "torus": TorusPath,
}


def make_path(task: str, data: Any, image_shape: tuple[int, int, int] | None = None, **kwargs: Any) -> InterpolantPath:
    """Build the interpolant path of a task by name.

    Parameters
    ----------
    task
        ``"generation"`` (linear), ``"vpsde"``, ``"superres"``, ``"inpainting"``,
        ``"colorization"`` or ``"torus"``.
    data, image_shape, kwargs
        Passed to the path class.
    """
    try:
        cls = TASKS[task]
    except KeyError:
        raise ValueError(f"Unknown task {task!r}; choose one of {sorted(TASKS)}.") from None
    return cls(data, image_shape, **kwargs)


def action_matching(
    path: InterpolantPath, *, potential: nn.Module | None = None, unet: dict[str, Any] | None = None, **params: Any
) -> ActionMatching:
    """An Action Matching estimator set up for an image path as the authors train it.

    The path's loss weight (``time_weight``: ``1 - tau`` on the linear-type paths, ``None``
    for super-resolution, the noise variance for the VP-SDE; module docstring), quasi-uniform
    times (``time_proposal="quasi-uniform"``) and, unless ``potential`` is given, a
    :class:`~trajinfer.vision.unet.UNetPotential` that reads the path's conditioning channels
    and is periodic on the torus. Call ``.fit(path)`` on the result.

    Parameters
    ----------
    path
        The interpolant path the estimator will be fitted on.
    potential
        The network; default a U-Net potential matching ``path``.
    unet
        Arguments of the default potential's :class:`~trajinfer.vision.unet.UNet`
        (``base_channels``, ``channel_mults``, ...).
    params
        Other :class:`trajinfer.ActionMatching` parameters; they override the defaults above.
        Run-time settings (``device``, ``progress``, ``checkpoint_file``, ... : the fields of
        :class:`trajinfer.RunConfig`) may be given here too; they are passed in ``run``, on
        top of ``run`` when that is given as well.

    Returns
    -------
    trajinfer.ActionMatching
        The unfitted estimator.
    """
    if potential is None:
        potential = UNetPotential(
            path.image_shape, cond_channels=path.cond_channels, periodic=path.periodic, **(unet or {})
        )
    elif unet is not None:
        raise ValueError("unet configures the default potential; it cannot be combined with potential=.")
    settings = {"time_weight": path.time_weight, "time_proposal": "quasi-uniform", **params}
    run = {name: settings.pop(name) for name in RUN_SETTINGS if name in settings}
    if run:
        settings["run"] = as_run_config(settings.get("run")).replace(**run)
    return ActionMatching(potential=potential, **settings)
