r"""Image interpolant paths ``x_tau = alpha_tau(x_0) + beta_tau(x_1)`` (paper Sec. 4.3, App. E.2).

Every path runs from a prior-like start at internal time ``tau = 0`` to the data at ``tau = 1``
(the Action Matching convention: ``q_0`` is where simulation starts). ``x_0`` is standard
normal noise (uniform angles on the torus), ``x_1`` a data image, and each call of
:meth:`InterpolantPath.sample` draws a fresh ``(x_0, x_1)`` pair per row. Images are flattened
channels-first, ``(B, C*H*W)``.

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
Near the data end every path has the local form ``x_tau ≈ a_tau x^i + b_tau ε`` around each
training image ``x^i`` (paper App. C), with noise scale ``b_tau -> 0`` as ``tau -> 1``. The
action-matching potential there is locally

.. math::  s^i_\tau(x) = \frac{\dot b_\tau}{2 b_\tau}\,|x - a_\tau x^i|^2 + \langle \dot a_\tau x^i, x\rangle,

so on samples of ``q_tau``: ``E|∇s|² = d ḃ² + ȧ²|x^i|²``, the Laplacian is ``d ḃ / b`` and, away
from the samples, ``s`` itself grows like ``|ḃ|/b``. The data-end boundary term
``ω(1) E[s_1]`` is therefore ill-posed and the interior integrand stiff. Weighting the objective
(paper eq. 84, Algorithm 2) by the noise variance,

.. math::  \omega(\tau) = b_\tau^2 / b_0^2,

removes all three: ``ω(1) = 0`` drops the data-end boundary term, and with
``b ḃ = (b²)'/2`` the weighted terms ``ω Δs = d b ḃ``, ``ω E|∇s|² = d (b ḃ)² + b² ȧ² |x^i|²``
and ``ω s ∝ b ḃ |x - a x^i|²`` stay bounded whenever ``(b²)'`` does. That covers the linear
schedules (``b = 1 - tau``: ``ω = (1 - tau)²``) and the VP-SDE, whose ``E|∇s|² ∝ β(0)/(1 - tau)``
diverges without the weight (``b² ≈ β(0)(1 - tau)``: ``ω = 1 - exp(-B(1 - tau))``). The paper's
example (``σ_t = sqrt(t)``, data at ``t = 0``) uses ``ω = (1 - t) t^{3/2}``, a power of the noise
variance at the data end and a ``(1 - t)`` factor for its prior end, where ``f_t = sqrt(1 - t) x``
has a diverging ``ȧ``; here ``a_tau`` is smooth at the prior end, so the weight keeps
``ω(0) = 1`` (``1 - e^{-10.05}`` for the VP-SDE). Each path exposes its weight as
:meth:`~InterpolantPath.time_weight`, to pass as
``ActionMatching(time_weight=path.time_weight, time_proposal="adaptive")``.

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

from ..paths import MarginalPath

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

    Notes
    -----
    Subclasses implement :meth:`interpolate` and :meth:`noise_scale`; conditional paths set
    ``conditional = True`` (their start depends on the image being completed).
    """

    conditional: bool = False
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
        self.dim = flat.shape[1]
        self.bin_width = None if bin_width is None else float(bin_width)
        self.device = torch.device(device)
        self.data = flat.to(self.device)

    @property
    def n_data(self) -> int:
        return int(self.data.shape[0])

    def to(self, device: str | torch.device) -> InterpolantPath:
        self.device = torch.device(device)
        self.data = self.data.to(self.device)
        return self

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws of the noise ``x_0`` (standard normal), shape (n, dim)."""
        return torch.randn(n, self.dim, generator=generator, device=self.device)

    def draw(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` independent pairs ``(x_0, x_1)``: noise and (dequantised) data images."""
        idx = torch.randint(self.n_data, (n,), generator=generator, device=self.device)
        x1 = self.data[idx]
        if self.bin_width is not None:
            x1 = x1 + self.bin_width * (torch.rand(x1.shape, generator=generator, device=self.device) - 0.5)
        return self.draw_noise(n, generator), x1

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """``x_tau`` for given noise ``x0`` (n, dim), images ``x1`` (n, dim) and times ``tau`` (n,)."""
        raise NotImplementedError

    def noise_scale(self, tau: torch.Tensor) -> torch.Tensor:
        """Scale ``b_tau`` of the noise in ``x_tau`` (zero at ``tau = 1``)."""
        raise NotImplementedError

    def sample(self, tau: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One sample of ``q_tau`` per entry of ``tau`` (shape (B,)) -> (B, dim)."""
        tau = tau.to(self.device, torch.float32)
        x0, x1 = self.draw(tau.shape[0], generator)
        return self.interpolate(x0, x1, tau)

    def start(self, x1: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """The ``tau = 0`` state built from given images ``x1``: where conditional sampling starts."""
        x1 = torch.as_tensor(x1, dtype=torch.float32, device=self.device).reshape(-1, self.dim)
        zeros = torch.zeros(x1.shape[0], device=self.device)
        return self.interpolate(self.draw_noise(x1.shape[0], generator), x1, zeros)

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
        """``ω(tau) = b_tau² / b_0²``: cancels the data-end singularities (module docstring)."""
        return self.noise_scale(tau) ** 2 / self.noise_scale(torch.zeros_like(tau)) ** 2

    def postprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Map simulated states back to the path's domain (identity except on the torus)."""
        return x

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """Flat states (n, dim) -> images (n, C, H, W) in data units."""
        return x.reshape(-1, *self.image_shape)


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
    """Super-resolution: keep one pixel of each ``factor × factor`` block, generate the rest."""

    def __init__(self, data: Any, image_shape: tuple[int, int, int] | None = None, *, factor: int = 2, **kwargs: Any):
        InterpolantPath.__init__(self, data, image_shape, **kwargs)
        self.factor = int(factor)
        self._set_mask(superresolution_mask(self.image_shape, self.factor))


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

    Parameters
    ----------
    noise_level
        Scale of the noise added to the grayscale start (0.1 in the paper); it makes the
        one-to-many map learnable and stabilises training.
    """

    conditional = True

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

    def noise_scale(self, tau: torch.Tensor) -> torch.Tensor:
        return self.noise_level * (1 - tau)


def wrap_angle(x: torch.Tensor) -> torch.Tensor:
    """Wrap angles to ``[-π, π)``; angles already in range are returned unchanged (bit for bit)."""
    inside = (x >= -math.pi) & (x < math.pi)
    return torch.where(inside, x, torch.remainder(x + math.pi, 2 * math.pi) - math.pi)


class TorusPath(InterpolantPath):
    """Generation on the torus ``[-π, π)^d``: geodesic interpolation from uniform angles.

    Pixels ``x ∈ [-1, 1]`` become angles ``θ = (π/2) x ∈ [-π/2, π/2]``, so the darkest and the
    brightest values sit as far apart on the circle as the data range allows (paper 000,
    App. D, with ``[0.25, 0.75]`` of the unit circle). With ``x_0`` uniform on the torus,

    ``x_tau = wrap(θ_1 - (1 - tau) wrap(θ_1 - x_0))``,

    the shortest arc from ``x_0`` to ``θ_1`` travelled at constant speed. The start is exactly
    uniform, so :meth:`log_prior` is ``-d log 2π``. Use a periodic potential
    (``UNetPotential(..., periodic=True)``) so the learned field lives on the torus, and
    :meth:`postprocess` to wrap simulated states. ``bin_width`` is in pixel units; in angle
    units a bin is ``(π/2) bin_width`` wide (what bits per dimension on the torus use).
    """

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return (2 * torch.rand(n, self.dim, generator=generator, device=self.device) - 1) * math.pi

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
        x1 = torch.as_tensor(x1, dtype=torch.float32, device=self.device).reshape(-1, self.dim)
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
