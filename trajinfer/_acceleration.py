"""Optional speed-ups of the training passes: ``torch.compile`` and bfloat16 mixed precision.

Both wrap the network only for the loss evaluations of :meth:`ActionMatching.fit`; the
parameters are shared with the wrapped module, and the fitted model is the plain network.

``torch.compile`` cannot differentiate a compiled graph twice, while the loss needs the
gradient of ``∇s`` with respect to the parameters. It therefore applies where the derivatives
of ``s`` come from the forward-mode jet of the built-in MLP potentials (an exact Laplacian:
entropic methods up to 2 dimensions or ``laplacian="exact"``). The jet, which costs about
``d + 2`` forward passes, is compiled; the two boundary evaluations and every other
configuration run uncompiled.

Mixed precision runs the network evaluations under ``torch.autocast`` in bfloat16 (matrix
products in bfloat16, about three significant digits) and returns float32 outputs, so the loss,
its reductions, the gradients, the optimiser state and the master weights stay float32.
bfloat16 has the exponent range of float32, so nothing overflows and no loss scaling is needed.
It is offered for the methods whose loss needs first derivatives only (``am``, ``uam``, c-AM):
the Laplacian of the entropic methods sums many second-order terms of both signs, where the
rounding of bfloat16 products would dominate the small diffusion correction.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["training_network"]


class _AutocastPotential(nn.Module):
    """Evaluate ``inner`` under bfloat16 autocast and return float32 values."""

    def __init__(self, inner: nn.Module, device_type: str):
        super().__init__()
        self.inner = inner
        self.device_type = device_type

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.inner(x, t).float()


class _CompiledPotential(nn.Module):
    """``inner`` with its forward-mode ``jet`` compiled by ``torch.compile``."""

    supports_jet = True

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self._jet = torch.compile(inner.jet)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.inner(x, t)

    def jet(self, x: torch.Tensor, t: torch.Tensor, laplacian: bool = True) -> tuple[torch.Tensor, ...]:
        return self._jet(x, t, laplacian=laplacian)


def training_network(
    network: nn.Module, *, compile_network: bool, mixed_precision: bool, uses_jet: bool, device: torch.device
) -> nn.Module:
    """The module the loss evaluates during a fit.

    Parameters
    ----------
    network
        The potential being trained.
    compile_network
        Compile the forward-mode jet (only when ``uses_jet``).
    mixed_precision
        Evaluate the network in bfloat16 autocast (the caller allows it for first-order losses
        only).
    uses_jet
        Whether the loss takes the derivatives of ``s`` from ``network.jet``.
    device
        Device of the network (autocast's device type).
    """
    module = _AutocastPotential(network, device.type) if mixed_precision else network
    if compile_network:
        if uses_jet:
            return _CompiledPotential(module)
        warnings.warn(
            "compile=True has no effect here: torch.compile cannot differentiate twice, and this fit takes "
            "the derivatives of the action by nested autograd. Compilation applies to the forward-mode jet "
            "of the built-in potentials (entropic methods with an exact Laplacian).",
            UserWarning,
            stacklevel=3,
        )
    return module
