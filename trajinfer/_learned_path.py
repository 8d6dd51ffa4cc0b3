"""The learned interpolation of :class:`~trajinfer.SnapshotPath` (``interpolation="learned"``).

Between snapshots ``k`` and ``k + 1`` a sample of the path at fraction ``λ`` of the interval is

    x = (1 − λ) a + λ b + 4 λ (1 − λ) c_θ(τ, a, b),

with ``a`` and ``b`` independent draws of the two snapshots and ``c_θ`` one network for every
interval. At ``λ = 0`` and ``1`` the path is the snapshots themselves. The path is trained
with the action (:class:`PathTrainer`), as in Wasserstein Lagrangian Flows: the action ``s``
minimises the Action Matching loss on the current path, whose minimum is minus the path's
kinetic energy, and the path's network maximises that loss's interior term ``E_{q_τ}[∂_τ s +
c*(∇s) + …]`` with ``s`` held fixed, i.e. lowers the kinetic energy the action measures. The
path that results moves the snapshots into each other at the least action the network can
express: one smooth function of time shared by all intervals, so each interval's path is
informed by every time point.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .networks import TimeFeatures, make_mlp
from .training import OptimizerSettings, lr_factor

__all__ = ["LEARNED_PATH_HIDDEN_DIMS", "LEARNED_PATH_LR", "PATH_TRAINING_FRACTION", "PathCorrection", "PathTrainer"]

#: Widths of the correction network ``c_θ``.
LEARNED_PATH_HIDDEN_DIMS = (128, 128)
#: Fraction of the fit's iterations in which the path learns; the action then matches the path
#: that resulted, a well-posed minimisation whose moving average settles (a path that kept
#: moving until the end would leave the action measuring a path that no longer exists).
PATH_TRAINING_FRACTION = 0.5
#: Peak learning rate of the path's Adam (cosine decay with the fit): a tenth of the action's on
#: snapshots, so that the action, which measures the path's energy, keeps up with the path.
LEARNED_PATH_LR = 1e-3


class PathCorrection(nn.Module):
    """The correction ``c_θ(τ, a, b)`` of the learned path, in the units of the data.

    Parameters
    ----------
    data
        Every cell of the path (for the input normalisation and the output scale).
    hidden_dims
        Widths of the hidden layers.

    Notes
    -----
    The inputs are the standardised ``a`` and ``b``, the time features of ``τ`` and of the
    fraction ``λ`` of the interval, and the output is scaled by the cells' per-feature
    standard deviation. The last layer starts at zero, so a fit starts from the linear
    interpolation of independent pairs.
    """

    def __init__(self, data: torch.Tensor, hidden_dims: tuple[int, ...] = LEARNED_PATH_HIDDEN_DIMS):
        super().__init__()
        dim = data.shape[1]
        self.register_buffer("mean", data.mean(0).detach().clone())
        self.register_buffer("scale", data.std(0).clamp_min(1e-8).detach().clone())
        self.time = TimeFeatures(2)
        self.net = make_mlp(2 * dim + 2 * self.time.out_features, hidden_dims, "silu", dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw new hidden weights (from torch's global random state) and zero the last layer."""
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, tau: torch.Tensor, lam: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        inputs = [(a - self.mean) / self.scale, (b - self.mean) / self.scale, self.time(tau), self.time(lam)]
        return self.scale * self.net(torch.cat(inputs, dim=1))


def learned_interpolant(correction: PathCorrection, tau: torch.Tensor, lam: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(1 − λ) a + λ b + 4 λ (1 − λ) c_θ(τ, a, b)`` (see the module notes)."""
    lam_ = lam[:, None]
    return (1 - lam_) * a + lam_ * b + 4 * lam_ * (1 - lam_) * correction(tau, lam, a, b)


class PathTrainer:
    """One step of the learned path per iteration of the fit's first ``PATH_TRAINING_FRACTION``:
    Adam on the path's network.

    Parameters
    ----------
    path
        A :class:`~trajinfer.SnapshotPath` with ``interpolation="learned"``; its network is
        reset (every fit starts from the linear interpolation).
    objective
        ``objective(generator) -> Tensor``: the Action Matching loss's interior term on the
        path's differentiable samples with the action held fixed, negated (the path lowers the
        kinetic energy the action measures by minimising it).
    n_iter
        Iterations of the fit; the path takes a step in the first ``PATH_TRAINING_FRACTION`` of
        them, over which its learning rate decays on a cosine.
    lr
        Peak learning rate.
    reduce_gradients
        ``reduce_gradients(params, loss)`` averages the gradients over processes (distributed
        fits), so that every process keeps the same path.
    """

    def __init__(
        self, path, objective, *, n_iter: int, lr: float = LEARNED_PATH_LR,
        reduce_gradients: Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor] | None = None,
    ):
        self.path = path
        self.objective = objective
        self.reduce_gradients = reduce_gradients
        path.correction.reset_parameters()  # every fit starts from the linear interpolation
        self.params = [p for p in path.correction.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=lr)
        self.n_steps = max(1, int(PATH_TRAINING_FRACTION * n_iter))
        settings = OptimizerSettings(lr=lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(settings, self.n_steps))
        self.grad_clip = settings.grad_clip

    def step(self, iteration: int, generator: torch.Generator | None) -> float | None:
        """The path's step at ``iteration`` of the fit: the objective's value before it (the
        negated interior mean), or ``None`` once the path has stopped learning."""
        if iteration >= self.n_steps:
            return None
        self.path.correction.train()
        loss = self.objective(generator)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        if not torch.isfinite(loss) or not all(torch.isfinite(g).all() for g in grads if g is not None):
            return float(loss.detach())  # a bad draw: skip the step, the action's own checks handle a divergence
        for param, grad in zip(self.params, grads):
            param.grad = torch.zeros_like(param) if grad is None else grad
        if self.reduce_gradients is not None:
            loss = self.reduce_gradients(self.params, loss.detach())
        nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.path.correction.eval()
        return float(loss.detach())

    def state_dict(self) -> dict:
        """The path's weights, optimiser and schedule (for checkpoints)."""
        weights = {key: value.detach().cpu() for key, value in self.path.correction.state_dict().items()}
        return {"correction": weights, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.path.correction.load_state_dict(state["correction"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
