"""Speed of the Action Matching fit: iterations/s and time-to-accuracy, exact vs Hutchinson Laplacian.

One training step is the library's own ``action_matching_loss`` (eAM, quadratic cost, MLP
potential (128, 128, 128)) + backward + Adam step on a Gaussian path ``q_t = N(t m, I)`` in
``d`` dimensions (``|m| = 2``). The Laplacian of the entropic term is computed four ways:

- ``jet``: exact, the library's forward-mode jet of ``MLPPotential`` (what ``potential_derivatives``
  uses for built-in MLPs);
- ``autograd``: exact, the library's batched reverse-mode fallback (``is_grads_batched``), used for
  custom modules — measured by hiding the jet behind a wrapper module;
- ``naive loop``: exact, ``d`` separate backward passes (reference implementation written here,
  swapped in for ``trajinfer.derivatives.exact_laplacian`` in this process only);
- ``hutchinson``: one Rademacher probe (unbiased, noisy), by the written-out backward pass and
  its directional derivative of ``MLPPotential.probed_derivatives`` (what ``potential_derivatives``
  uses for built-in MLPs).

iterations/s: median over timed steps after warm-up, for batch sizes × dimensions. Times are
CPU (process) seconds of this single-threaded process (``time.process_time``), so that a shared,
overloaded machine does not distort them; wall-clock it/s are stored too (``it_per_s_wall``).
Time-to-accuracy: the truth is known (eAM drift ``m − (σ²/2)(x − t m)``), so training runs
until the relative L2 error of the learned drift on 1,024 fixed points of the path falls below
``--target`` (checked every 20 iterations; checking time excluded), capped by iterations and
CPU seconds (also CPU time). CUDA columns are filled only when a GPU is present.

Usage::

    python benchmarks/speed.py --quick --out /tmp/speed
    python benchmarks/speed.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

import trajinfer.derivatives as D
from trajinfer.costs import resolve_cost
from trajinfer.losses import action_matching_loss
from trajinfer.networks import MLPPotential
from trajinfer.paths import CallablePath
from trajinfer.time_sampling import UniformTimeProposal

SIGMA = 0.5
VARIANTS = ("jet", "autograd", "naive loop", "hutchinson")
_LIBRARY_EXACT = D.exact_laplacian


def naive_exact_laplacian(grad: torch.Tensor, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """Trace of the Hessian by ``d`` separate backward passes (reference; slow)."""
    diag = [torch.autograd.grad(grad[:, i].sum(), x, create_graph=create_graph, retain_graph=True)[0][:, i] for i in range(x.shape[1])]
    return torch.stack(diag, dim=1).sum(dim=1)


class NoJet(nn.Module):
    """Hides the MLP's forward-mode jet so the library falls back to reverse-mode autograd."""

    supports_jet = False

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x, t):
        return self.inner(x, t)


def gaussian_path(d: int, device) -> tuple[CallablePath, torch.Tensor]:
    m = torch.full((d,), 2.0 / np.sqrt(d), device=device)
    gen = torch.Generator(device=device).manual_seed(123)

    def sample(t):
        t = t.to(device)
        return t[:, None] * m + torch.randn(t.shape[0], d, generator=gen, device=device)

    path = CallablePath(sample, t_range=(0.0, 1.0))
    path.to(device)
    return path, m


def make_step(variant: str, d: int, batch: int, device, seed: int = 0):
    torch.manual_seed(seed)
    path, m = gaussian_path(d, device)
    net = MLPPotential(d, (128, 128, 128), "silu").to(device)
    model = NoJet(net) if variant in ("autograd", "naive loop") else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    proposal = UniformTimeProposal()
    cost = resolve_cost("quadratic")
    gen = torch.Generator(device=device).manual_seed(seed)
    lap = "hutchinson" if variant == "hutchinson" else "exact"

    def step() -> float:
        D.exact_laplacian = naive_exact_laplacian if variant == "naive loop" else _LIBRARY_EXACT
        try:
            terms = action_matching_loss(model, path, method="eam", cost=cost, batch_size=batch, proposal=proposal,
                                         diffusion_sq=lambda tau: torch.full_like(tau, SIGMA**2), laplacian=lap, generator=gen)
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
        finally:
            D.exact_laplacian = _LIBRARY_EXACT
        if device.type == "cuda":
            torch.cuda.synchronize()
        return terms.loss.item()

    def error(x_eval: torch.Tensor, t_eval: torch.Tensor) -> float:
        derivs = D.potential_derivatives(net, x_eval, t_eval, time_derivative=False, laplacian=None, create_graph=False)
        truth = m - 0.5 * SIGMA**2 * (x_eval - t_eval[:, None] * m)
        return float(((derivs.grad - truth) ** 2).sum() / (truth**2).sum())

    return step, error, path


def iterations_per_second(variant, d, batch, device, warmup, timed, max_seconds) -> dict[str, Any]:
    step, _, _ = make_step(variant, d, batch, device)
    for _ in range(warmup):
        step()
    cpu, wall = [], []
    start = time.process_time()
    for _ in range(timed):
        c0, w0 = time.process_time(), time.perf_counter()
        step()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        if time.process_time() - start > max_seconds:
            break
    med = float(np.median(cpu))
    return {"it_per_s": 1.0 / med, "median_step_s": med, "it_per_s_wall": 1.0 / float(np.median(wall)), "n_timed": len(cpu)}


def time_to_accuracy(variant, d, batch, device, target, max_iter, max_seconds) -> dict[str, Any]:
    step, error, path = make_step(variant, d, batch, device, seed=1)
    g = torch.Generator(device=device).manual_seed(7)
    t_eval = torch.rand(1024, generator=g, device=device)
    x_eval = path.sample(t_eval)
    elapsed, it, reached = 0.0, 0, None
    curve = []
    while it < max_iter and elapsed < max_seconds:
        t0 = time.process_time()
        for _ in range(20):
            step()
        elapsed += time.process_time() - t0
        it += 20
        err = error(x_eval, t_eval)
        curve.append([it, elapsed, err])
        if reached is None and err < target:
            reached = {"iterations": it, "seconds": elapsed}
            break
    return {"target_rel_error": target, "reached": reached, "final_rel_error": curve[-1][2], "iterations_run": it,
            "seconds_run": elapsed, "curve": curve}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=C.RESULTS)
    parser.add_argument("--dims", default="5,50,100")
    parser.add_argument("--batches", default="64,256,1024")
    parser.add_argument("--target", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    quick = args.quick
    dims = [5, 20] if quick else [int(x) for x in args.dims.split(",")]
    batches = [32] if quick else [int(x) for x in args.batches.split(",")]
    warmup, timed, cap = (1, 2, 5.0) if quick else (1, 5, 8.0)
    tta_iter, tta_seconds = (40, 10.0) if quick else (600, 40.0)
    prov = C.provenance({"mode": "quick" if quick else "full"}, argv, f"benchmarks/{Path(__file__).name}")
    print(C.provenance_md(prov), flush=True)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])

    ips: list[dict[str, Any]] = []
    for device in devices:
        for d in dims:
            for b in batches:
                for v in VARIANTS:
                    rec, err = C.safe_run(lambda: iterations_per_second(v, d, b, device, warmup, timed, cap))  # noqa: B023
                    row = {"device": device.type, "dim": d, "batch": b, "variant": v, **(rec or {"error": err})}
                    ips.append(row)
                    print(f"  {device.type} d={d} B={b} {v}: {rec['it_per_s']:.2f} it/s" if rec else f"  {v}: {err}", flush=True)
    tta: list[dict[str, Any]] = []
    for device in devices:
        for d in dims:
            for v in ("jet", "hutchinson"):
                rec, err = C.safe_run(lambda: time_to_accuracy(v, d, 256 if not quick else 32, device, args.target, tta_iter, tta_seconds))  # noqa: B023
                row = {"device": device.type, "dim": d, "batch": 256 if not quick else 32, "variant": v, **(rec or {"error": err})}
                tta.append(row)
                print(f"  tta {device.type} d={d} {v}: {rec['reached'] if rec else err} final err {rec['final_rel_error'] if rec else ''}", flush=True)
    payload = {"benchmark": "fit speed, eAM, MLP (128,128,128), Gaussian path", "provenance": prov, "sigma": SIGMA,
               "variants": {"jet": "exact, forward-mode jet (library default for MLPPotential)",
                            "autograd": "exact, batched reverse-mode autograd (library fallback for custom modules)",
                            "naive loop": "exact, d separate backward passes (reference, benchmark-only)",
                            "hutchinson": "Hutchinson, 1 Rademacher probe (library: the written-out probe of MLPPotential)"},
               "cuda": "run" if torch.cuda.is_available() else "not run: no GPU",
               "iterations_per_second": ips, "time_to_accuracy": tta}
    args.out.mkdir(parents=True, exist_ok=True)
    C.write_json(args.out / "speed.json", payload)
    (args.out / "speed.md").write_text(markdown(payload))
    print((args.out / "speed.md").read_text())
    return payload


def markdown(p: dict[str, Any]) -> str:
    parts = ["# Fit speed: exact vs Hutchinson Laplacian", "", C.provenance_md(p["provenance"]), "",
             "One step = the library's `action_matching_loss` (eAM) + backward + Adam, MLP potential (128, 128, 128), "
             f"Gaussian path N(t·m, I), σ = {p['sigma']}. Variants: " + "; ".join(f"**{k}**: {v}" for k, v in p["variants"].items()) + ".",
             "", "## Iterations per second (median step, CPU time of one thread)", ""]
    rows = []
    keys = sorted({(r["dim"], r["batch"]) for r in p["iterations_per_second"]})
    by = {(r["device"], r["dim"], r["batch"], r["variant"]): r for r in p["iterations_per_second"]}
    for d, b in keys:
        cells = []
        for v in VARIANTS:
            r = by.get(("cpu", d, b, v))
            cells.append(C.fmt(r["it_per_s"], 2) if r and "it_per_s" in r else f"error: {r.get('error') if r else '–'}")
        jet, naive, auto = (by.get(("cpu", d, b, v), {}).get("it_per_s") for v in ("jet", "naive loop", "autograd"))
        hut = by.get(("cpu", d, b, "hutchinson"), {}).get("it_per_s")
        cuda = [C.fmt(by[("cuda", d, b, v)]["it_per_s"], 2) if ("cuda", d, b, v) in by and "it_per_s" in by[("cuda", d, b, v)] else p["cuda"] for v in ("jet", "hutchinson")]
        rows.append([d, b] + cells + [C.fmt(jet / naive, 1) + "×" if jet and naive else "–", C.fmt(jet / auto, 1) + "×" if jet and auto else "–",
                                      C.fmt(hut / jet, 1) + "×" if hut and jet else "–"] + cuda)
    parts.append(C.md_table(["d", "batch"] + [f"CPU {v} it/s" for v in VARIANTS]
                            + ["jet / naive loop", "jet / autograd", "hutchinson / jet", "CUDA jet it/s", "CUDA hutchinson it/s"], rows))
    parts += ["", f"## Time to accuracy in CPU seconds (relative L2 error of the drift < {p['time_to_accuracy'][0]['target_rel_error'] if p['time_to_accuracy'] else ''})", ""]
    rows = []
    for r in p["time_to_accuracy"]:
        if "error" in r:
            rows.append([r["device"], r["dim"], r["batch"], r["variant"], f"error: {r['error']}", "", "", ""])
            continue
        hit = r["reached"]
        rows.append([r["device"], r["dim"], r["batch"], r["variant"], C.fmt(hit["seconds"], 1) if hit else f"not reached in {C.fmt(r['seconds_run'], 0)} s",
                     hit["iterations"] if hit else f"> {r['iterations_run']}", C.fmt(r["final_rel_error"]), r["iterations_run"]])
    if p["cuda"] != "run":
        rows.append(["cuda", "–", "–", "–", p["cuda"], "", "", ""])
    parts.append(C.md_table(["device", "d", "batch", "Laplacian", "seconds to target", "iterations to target", "error at stop", "iterations run"], rows))
    parts.append("")
    return "\n".join(parts)


if __name__ == "__main__":
    main()
