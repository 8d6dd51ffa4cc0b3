"""Potential networks ``s(x, t)``: modules mapping ``x`` of shape (B, d) and ``t`` of shape (B,) to (B,).

Any :class:`torch.nn.Module` with that signature can be used as a potential, provided each
output depends only on its own row (no batch normalisation), since derivatives are taken
per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "MLPPotential", "POTENTIAL_FORMS", "StandardizedInput", "TimeFeatures", "build_potential",
    "make_activation", "make_mlp",
]

_ACTIVATIONS = {"silu": nn.SiLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU}
POTENTIAL_FORMS = ("mlp", "residual", "inner")


def _silu_derivatives(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # with h = aσ and q = σ(1 − σ): h' = σ + a q and h'' = q (2 + a − 2h), in few elementwise operations
    sig = torch.sigmoid(a)
    h = a * sig
    q = sig * (1 - sig)
    return h, torch.addcmul(sig, a, q), q * (2 + a - 2 * h)


def _softplus_derivatives(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    sig = torch.sigmoid(a)
    return nn.functional.softplus(a), sig, sig * (1 - sig)


def _tanh_derivatives(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    th = torch.tanh(a)
    first = 1 - th**2
    return th, first, -2 * th * first


# activation -> (value, first derivative, second derivative), for forward-mode derivatives
_ACTIVATION_JETS = {nn.SiLU: _silu_derivatives, nn.Softplus: _softplus_derivatives, nn.Tanh: _tanh_derivatives}


def make_activation(name: str) -> nn.Module:
    """Build a smooth activation by name (``silu``, ``softplus``, ``tanh``, ``gelu``, ``elu``)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}.") from None


def make_mlp(in_features: int, hidden_dims: Sequence[int], activation: str, out_features: int) -> nn.Sequential:
    """Linear layers of the given widths with ``activation`` between them."""
    layers: list[nn.Module] = []
    width = in_features
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), make_activation(activation)]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class TimeFeatures(nn.Module):
    """Embed a time in [0, 1] as ``[t, sin(pi k t), cos(pi k t)]`` for ``k = 1..n_frequencies``."""

    def __init__(self, n_frequencies: int = 4):
        super().__init__()
        self.register_buffer("frequencies", torch.pi * torch.arange(1, n_frequencies + 1, dtype=torch.float32))
        self.out_features = 1 + 2 * n_frequencies

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * self.frequencies
        return torch.cat([t[:, None], torch.sin(angles), torch.cos(angles)], dim=1)

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        """Derivative of the embedding with respect to ``t``, shape (B, out_features)."""
        angles = t[:, None] * self.frequencies
        ones = torch.ones_like(t)[:, None]
        return torch.cat([ones, self.frequencies * torch.cos(angles), -self.frequencies * torch.sin(angles)], dim=1)


class StandardizedInput(nn.Module):
    """Base of networks whose input ``x`` is standardised by fixed buffers ``shift`` and ``scale``.

    The buffers start as the identity (0 and 1); :meth:`set_input_normalization` sets them from
    the training data. This reparametrises a network without changing its function class.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @torch.no_grad()
    def set_input_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise inputs with the given per-feature mean and standard deviation."""
        self.shift.copy_(mean)
        self.scale.copy_(torch.clamp(std, min=1e-6))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - shift) / scale``."""
        return (x - self.shift) / self.scale


class MLPPotential(StandardizedInput):
    """Multilayer perceptron potential with a time embedding.

    Parameters
    ----------
    dim
        Dimension of ``x``.
    hidden_dims
        Widths of the hidden layers.
    activation
        Smooth activation (second derivatives are needed for eAM and likelihoods).
    form
        ``"mlp"``: ``s = h(t, x)`` with scalar output; ``"residual"``: ``s = ½|h(t, x) − x|²``;
        ``"inner"``: ``s = <h(t, x), x>``, with ``h`` vector-valued.
    n_time_frequencies
        Number of sine/cosine pairs in the time embedding.

    Notes
    -----
    Inputs are standardised by fixed buffers ``shift`` and ``scale`` (set from the training data
    by :meth:`set_input_normalization`); this reparametrises the network without changing the
    function class, so the learned dynamics stay in the user's coordinates.
    """

    def __init__(
        self,
        dim: int,
        hidden_dims: Sequence[int] = (256, 256, 256),
        activation: str = "silu",
        form: str = "mlp",
        n_time_frequencies: int = 4,
    ):
        if form not in POTENTIAL_FORMS:
            raise ValueError(f"Unknown potential form {form!r}; choose one of {POTENTIAL_FORMS}.")
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}.")
        super().__init__(dim)
        self.config: dict[str, Any] = {
            "dim": int(dim), "hidden_dims": [int(h) for h in hidden_dims], "activation": activation,
            "form": form, "n_time_frequencies": int(n_time_frequencies),
        }
        self.form = form
        self.time_features = TimeFeatures(n_time_frequencies)
        self.net = make_mlp(dim + self.time_features.out_features, hidden_dims, activation, 1 if form == "mlp" else dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.net(torch.cat([self.standardize(x), self.time_features(t)], dim=1))
        if self.form == "mlp":
            return h[:, 0]
        if self.form == "residual":
            return 0.5 * ((h - x) ** 2).sum(dim=1)
        return (h * x).sum(dim=1)

    @property
    def supports_jet(self) -> bool:
        """Whether :meth:`jet` can be used (the activation has closed-form derivatives)."""
        return all(type(m) in _ACTIVATION_JETS for m in self.net if not isinstance(m, nn.Linear))

    def _first_layer(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pre-activations ``a_0`` (B, H) of the first layer and their derivatives with respect to
        ``x`` (H, d; the same for every sample) and to ``t`` (B, H)."""
        d = x.shape[1]
        first = self.net[0]
        a = first(torch.cat([self.standardize(x), self.time_features(t)], dim=1))
        w_x = first.weight[:, :d] / self.scale[None, :]
        w_t = self.time_features.derivative(t) @ first.weight[:, d:].T
        return a, w_x, w_t

    @property
    def supports_probed_derivatives(self) -> bool:
        """Whether :meth:`probed_derivatives` can be used (scalar ``"mlp"`` form, closed-form
        activation derivatives, at least one hidden layer)."""
        return self.form == "mlp" and len(self.net) > 1 and self.supports_jet

    def probed_derivatives(self, x: torch.Tensor, t: torch.Tensor, probes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Value, spatial gradient, time derivative and Hutchinson's Laplacian estimate, written out.

        The gradient is an explicit backward pass through the layers (``δ_l = ∂s/∂a_l`` for the
        pre-activations ``a_l``: ``δ_{l-1} = φ'(a_{l-1}) ⊙ (δ_l W_l)``), and the probes'
        quadratic forms ``εᵀ(∇²s)ε`` come from its directional derivative along each probe: the
        tangents ``ȧ_l`` of the forward pass (``ȧ_{l+1} = (φ'(a_l) ⊙ ȧ_l) W_{l+1}ᵀ``) and of the
        backward pass (``δ̇_{l-1} = φ'(a_{l-1}) ⊙ (δ̇_l W_l) + φ''(a_{l-1}) ⊙ ȧ_{l-1} ⊙ (δ_l W_l)``)
        give ``εᵀ(∇²s)ε = ȧ_0 · δ̇_0``. The same numbers as nested autograd with the same probes,
        as first-order operations only: the parameter gradient needs one ordinary backward pass
        instead of differentiating autograd's own backward graph, which costs most of a training
        step's many small operations.

        Parameters
        ----------
        x, t
            Points (B, d) and times (B,).
        probes
            Probe directions ε, shape (P, B, d).

        Returns
        -------
        value (B,), grad (B, d), time_derivative (B,), laplacian estimate (B,): the mean of the P
        quadratic forms.
        """
        layers = list(self.net)
        a, w_x, w_t = self._first_layer(x, t)
        tangent = probes @ w_x.T  # (P, B, H): ȧ_0 along each probe
        first_tangent = tangent
        saved = []  # (φ', φ'', ȧ) of each hidden layer
        for activation, linear in zip(layers[1::2], layers[2::2]):
            h, d1, d2 = _ACTIVATION_JETS[type(activation)](a)
            saved.append((d1, d2, tangent))
            a = linear(h)
            tangent = (d1 * tangent) @ linear.weight.T
        delta = dot = None
        for (d1, d2, tangent), linear in zip(reversed(saved), reversed(layers[2::2])):
            # ∂s/∂h of this hidden layer (the output weights for the last one) and its tangent
            g = linear.weight[0] if delta is None else delta @ linear.weight
            g_dot = None if delta is None else dot @ linear.weight
            delta = d1 * g
            dot = d2 * tangent * g if g_dot is None else d1 * g_dot + d2 * tangent * g
        grad = delta @ w_x
        return a[:, 0], grad, (delta * w_t).sum(dim=1), (dot * first_tangent).sum(dim=-1).mean(dim=0)

    def jet(self, x: torch.Tensor, t: torch.Tensor, laplacian: bool = True) -> tuple[torch.Tensor, ...]:
        """Value, spatial gradient, time derivative and Laplacian in one forward pass.

        Forward-mode propagation of the Jacobian with respect to ``(x, t)`` and of the
        spatial Laplacian through the layers: a linear layer maps ``J -> W J`` and
        ``L -> W L``; an activation ``φ`` maps ``J -> φ'(a) J`` and
        ``L -> φ'(a) L + φ''(a) Σ_i J_i²``. Costs about ``d + 2`` forward passes, with no
        nested backward passes, and stays differentiable in the parameters.

        Returns
        -------
        value (B,), grad (B, d), time_derivative (B,), laplacian (B,) or None
        """
        n, d = x.shape
        layers = list(self.net)
        a, w_x, w_t = self._first_layer(x, t)
        # J[b, k, j] = d a_j / d (x, t)_k, laid out so a linear layer is one matmul J @ W^T
        J = torch.cat([w_x.T.expand(n, d, w_x.shape[0]), w_t[:, None, :]], dim=1)  # (B, d + 1, H)
        L = torch.zeros_like(a) if laplacian else None
        for layer in layers[1:]:
            if isinstance(layer, nn.Linear):
                a = layer(a)
                J = J @ layer.weight.T
                L = L @ layer.weight.T if laplacian else None
            else:
                a, d1, d2 = _ACTIVATION_JETS[type(layer)](a)
                if laplacian:
                    L = d1 * L + d2 * (J[:, :d, :] ** 2).sum(dim=1)
                J = d1[:, None, :] * J
        J = J.transpose(1, 2)  # (B, out, d + 1)
        h, J_x, h_t = a, J[:, :, :d], J[:, :, d]
        if self.form == "mlp":
            return h[:, 0], J_x[:, 0], h_t[:, 0], (L[:, 0] if laplacian else None)
        if self.form == "residual":
            r = h - x
            grad = torch.einsum("bo,boi->bi", r, J_x) - r
            eye = torch.eye(d, device=x.device, dtype=x.dtype)
            lap = ((J_x - eye) ** 2).sum(dim=(1, 2)) + (r * L).sum(dim=1) if laplacian else None
            return 0.5 * (r**2).sum(dim=1), grad, (r * h_t).sum(dim=1), lap
        grad = torch.einsum("bo,boi->bi", x, J_x) + h
        lap = (x * L).sum(dim=1) + 2 * torch.diagonal(J_x, dim1=1, dim2=2).sum(dim=1) if laplacian else None
        return (h * x).sum(dim=1), grad, (x * h_t).sum(dim=1), lap


def build_potential(config: dict[str, Any]) -> nn.Module:
    """Rebuild a built-in potential from its ``config`` (used by :func:`trajinfer.load`)."""
    return MLPPotential(**config)
