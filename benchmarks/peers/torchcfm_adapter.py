"""TorchCFM (Tong et al., 2024; PyPI ``torchcfm``): OT-CFM and SF2M on snapshot lists.

Settings follow torchcfm's single-cell / SF2M tutorials: ``torchcfm.models.MLP`` with width 64
and time input, ``sigma=0.1``, batch 256 per consecutive pair of time points (the multi-marginal
recipe of the tutorials: one conditional-flow batch per interval, times shifted by the interval
start), Adam lr 1e-3. OT-CFM pairs by exact OT (``ExactOptimalTransportConditionalFlowMatcher``)
and is pushed with dopri5 (rtol = atol = 1e-4). SF2M (``SchrodingerBridgeConditionalFlowMatcher``,
exact OT plan) trains a flow and a score network (whose output, with torchcfm's weighting
``λ_t = 2σ_t/σ²``, is ``(g²/2)∇log p``) and is pushed by Euler–Maruyama of
``dx = [v + (g²/2)∇log p] dt + g dW`` with ``g = sigma``, as in the tutorial.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

CFM_DEFAULTS: dict[str, Any] = {"width": 64, "sigma": 0.1, "batch_size": 256, "lr": 1e-3}
SF2M_DEFAULTS: dict[str, Any] = {"width": 64, "sigma": 0.1, "batch_size": 256, "lr": 1e-3, "sde_steps": 100}


def _pairs(snapshots, times, batch_size, gen):
    out = []
    for k in range(len(snapshots) - 1):
        a, b = snapshots[k], snapshots[k + 1]
        ia = torch.randint(0, a.shape[0], (batch_size,), generator=gen)
        ib = torch.randint(0, b.shape[0], (batch_size,), generator=gen)
        out.append((a[ia], b[ib], float(times[k]), float(times[k + 1])))
    return out


class _Flow:
    def __init__(self, net, score=None, sigma=0.0, settings=None, sde_steps=100):
        self.net, self.score, self.sigma, self.settings, self.sde_steps = net, score, sigma, settings, sde_steps

    def _v(self, t, x):
        return self.net(torch.cat([x, t.expand(x.shape[0], 1)], dim=-1))

    def push(self, X: np.ndarray, t_start: float, t_end: float, seed: int = 0) -> tuple[np.ndarray, None]:
        x = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        with torch.no_grad():
            if self.score is None:
                from torchdiffeq import odeint

                out = odeint(self._v, x, torch.tensor([float(t_start), float(t_end)]), rtol=1e-4, atol=1e-4)[-1]
            else:
                gen = torch.Generator().manual_seed(int(seed))
                n = max(1, int(round(self.sde_steps * abs(t_end - t_start))))
                dt = (t_end - t_start) / n
                out = x
                for i in range(n):
                    t = torch.tensor([[t_start + i * dt]])
                    inp = torch.cat([out, t.expand(out.shape[0], 1)], dim=-1)
                    drift = self.net(inp) + self.score(inp)  # score net learns (g²/2)∇log p (λ_t = 2σ_t/σ²)
                    out = out + drift * dt + self.sigma * np.sqrt(dt) * torch.randn(out.shape, generator=gen)
        return out.numpy().astype(np.float64), None


def _tensors(snapshots):
    return [torch.as_tensor(np.asarray(s), dtype=torch.float32) for s in snapshots]


def fit_otcfm(snapshots, times, n_iter: int = 5000, seed: int = 0, **overrides: Any) -> _Flow:
    from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher
    from torchcfm.models.models import MLP

    s = {**CFM_DEFAULTS, **overrides, "n_iter": int(n_iter), "seed": seed}
    torch.manual_seed(seed)
    np.random.seed(seed)
    gen = torch.Generator().manual_seed(seed)
    snaps = _tensors(snapshots)
    dim = snaps[0].shape[1]
    net = MLP(dim=dim, time_varying=True, w=s["width"])
    fm = ExactOptimalTransportConditionalFlowMatcher(sigma=s["sigma"])
    opt = torch.optim.Adam(net.parameters(), lr=s["lr"])
    for _ in range(s["n_iter"]):
        ts, xts, uts = [], [], []
        for x0, x1, ta, tb in _pairs(snaps, times, s["batch_size"], gen):
            t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
            ts.append(ta + t * (tb - ta))
            xts.append(xt)
            uts.append(ut / (tb - ta))
        t, xt, ut = torch.cat(ts), torch.cat(xts), torch.cat(uts)
        vt = net(torch.cat([xt, t[:, None]], dim=-1))
        loss = ((vt - ut) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _Flow(net.eval(), settings=s)


def fit_sf2m(snapshots, times, n_iter: int = 5000, seed: int = 0, **overrides: Any) -> _Flow:
    from torchcfm.conditional_flow_matching import SchrodingerBridgeConditionalFlowMatcher
    from torchcfm.models.models import MLP

    s = {**SF2M_DEFAULTS, **overrides, "n_iter": int(n_iter), "seed": seed}
    torch.manual_seed(seed)
    np.random.seed(seed)
    gen = torch.Generator().manual_seed(seed)
    snaps = _tensors(snapshots)
    dim = snaps[0].shape[1]
    net = MLP(dim=dim, time_varying=True, w=s["width"])
    score = MLP(dim=dim, time_varying=True, w=s["width"])
    fm = SchrodingerBridgeConditionalFlowMatcher(sigma=s["sigma"], ot_method="exact")
    opt = torch.optim.Adam(list(net.parameters()) + list(score.parameters()), lr=s["lr"])
    for _ in range(s["n_iter"]):
        ts, xts, uts, eps, lams = [], [], [], [], []
        for x0, x1, ta, tb in _pairs(snaps, times, s["batch_size"], gen):
            t, xt, ut, e = fm.sample_location_and_conditional_flow(x0, x1, return_noise=True)
            lams.append(fm.compute_lambda(t))
            ts.append(ta + t * (tb - ta))
            xts.append(xt)
            uts.append(ut / (tb - ta))
            eps.append(e)
        t, xt, ut, e, lam = torch.cat(ts), torch.cat(xts), torch.cat(uts), torch.cat(eps), torch.cat(lams)
        inp = torch.cat([xt, t[:, None]], dim=-1)
        flow_loss = ((net(inp) - ut) ** 2).mean()
        score_loss = ((lam[:, None] * score(inp) + e) ** 2).mean()
        loss = flow_loss + score_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _Flow(net.eval(), score=score.eval(), sigma=s["sigma"], settings=s, sde_steps=s["sde_steps"])
