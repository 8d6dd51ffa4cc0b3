"""The estimator on ground truth: relative error of the learned field against wall time.

Problems (each a callable path drawing exact samples of the marginals, so the only errors are
the estimator's):

- ``ou{d}-eam`` / ``ou{d}-am``: Ornstein–Uhlenbeck ``dX = −θX dt + σ dW`` (θ = σ = 1) from
  ``N(2·1, 0.25 I)`` over t ∈ [0, 1] in d = 2, 3, 5, 20 dimensions; eAM must recover the drift
  ``−θx``, AM the probability-flow velocity ``−θx + (σ²/2)(x − m_t)/v_t``;
- ``growth-uam``: two static clusters, one doubling and one halving per unit time, over
  t ∈ [0, 2]; uAM must recover the growth rate ``±ln 2`` (error over both clusters);
- ``ot3-am``: the displacement interpolation between ``N(0, I)`` and ``N(m, 4I)`` in 3-D, whose
  velocity ``m + (r − 1)(x − t m)/(1 − t + t r)`` (r = 2) AM must recover.

Error: relative RMS error ``|v̂ − v| / |v|`` on 4,000 fresh samples at uniform times over the
whole range (``all``), and separately on the first and last 5% of the range (``start``,
``end``). Wall time of the fit on one CPU thread (the first fit of a process also pays about 2 s
of one-off imports inside torch's optimiser, excluded by a warm-up fit). Rows: the defaults (three
seeds; on these paths ``lr="auto"`` is 3e-3) first, then the learning rates 1e-2 (the rate on
snapshots) and 5e-3 (three seeds each), the previous defaults and alternatives (one seed each).

Usage::

    python benchmarks/groundtruth.py                      # about 25 minutes, one thread
    python benchmarks/groundtruth.py --quick --out /tmp/gt
    python benchmarks/groundtruth.py --profile            # groundtruth_profile.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

import trajinfer as tj

THETA, SIGMA, M0, V0 = 1.0, 1.0, 2.0, 0.25
LN2 = math.log(2.0)
# network and budget of the sampled-path defaults before 64x3 and 4000 iterations
BEFORE = {"hidden_dims": (128, 128, 128), "n_iter": 1500}
BEFORE_NAME = "128x3 and 1500 iterations (the defaults before)"
EARLIER = {**BEFORE, "lr": 1e-2, "time_frequencies": 4}
CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    BEFORE_NAME: BEFORE,
    "64x3 and 3000 iterations": {"hidden_dims": (64, 64, 64), "n_iter": 3000},
    # the alternatives below vary one thing from the defaults before (128x3, 1500 iterations)
    **{name: {**BEFORE, **change} for name, change in {
        "4 time frequencies (the default on snapshots)": {"time_frequencies": 4},
        "no time frequencies": {"time_frequencies": 0},
        "lr 1e-2 (the default on snapshots)": {"lr": 1e-2, "time_frequencies": 4},
        "lr 5e-3": {"lr": 5e-3, "time_frequencies": 4},
        "lr 1e-2 and one time frequency": {"lr": 1e-2, "time_frequencies": 1},
        "lr 5e-3 and one time frequency": {"lr": 5e-3, "time_frequencies": 1},
        "lr 2e-3": {"lr": 2e-3},
        "lr 1e-3": {"lr": 1e-3},
        "batch 512 and 1000 iterations": {"batch_size": 512, "n_iter": 1000},
        "batch 1024 and 600 iterations": {"batch_size": 1024, "n_iter": 600},
        "3000 iterations": {"n_iter": 3000},
    }.items()},
    # and these from the defaults before them: 128x3, 1500 iterations, lr 1e-2 and four time frequencies
    **{name: {**EARLIER, **change} for name, change in {
        "batch 1024": {"batch_size": 1024},
        "64x3 batch 2048": {"hidden_dims": (64, 64, 64), "batch_size": 2048},
        "32x3 batch 2048": {"hidden_dims": (32, 32, 32), "batch_size": 2048},
        "32x3 batch 1024": {"hidden_dims": (32, 32, 32), "batch_size": 1024},
        "32x3 batch 2048 lr 3e-3": {"hidden_dims": (32, 32, 32), "batch_size": 2048, "lr": 3e-3},
        "4000 it": {"n_iter": 4000},
        "EMA 0.99": {"ema_decay": 0.99},
        "no EMA": {"ema_decay": None},
        "inner potential": {"potential": "inner"},
        "residual potential": {"potential": "residual"},
    }.items()},
}


# settings fitted with every seed of --seeds (the others with seed 0 only)
SEEDED = ("defaults", BEFORE_NAME, "4 time frequencies (the default on snapshots)", "lr 1e-2 (the default on snapshots)", "lr 5e-3")


class Problem:
    """A path with a known field: ``sample(t)``, ``truth(x, t)`` and the field the model returns."""

    def __init__(self, name: str, method: str, t_range: tuple[float, float], sample: Callable, truth: Callable,
                 field: str = "velocity", mass: Callable | None = None, sigma: float | None = None):
        self.name, self.method, self.t_range = name, method, t_range
        self.sample, self.truth, self.field, self.mass, self.sigma = sample, truth, field, mass, sigma


def ou_problem(dim: int, method: str) -> Problem:
    def moments(t):
        decay = torch.exp(-THETA * t)
        return M0 * decay, V0 * decay**2 + SIGMA**2 / (2 * THETA) * (1 - decay**2)

    def sample(t):
        m, v = moments(t)
        return m[:, None] + v.sqrt()[:, None] * torch.randn(t.shape[0], dim)

    def truth(x, t):
        if method == "eam":
            return -THETA * x
        m, v = moments(t)
        return -THETA * x + 0.5 * SIGMA**2 * (x - m[:, None]) / v[:, None]

    return Problem(f"ou{dim}-{method}", method, (0.0, 1.0), sample, truth, sigma=SIGMA if method == "eam" else None)


def growth_problem() -> Problem:
    centres = torch.tensor([[-3.0, 0.0], [3.0, 0.0]])

    def weights(t):
        return torch.stack([0.5 * torch.exp(LN2 * t), 0.5 * torch.exp(-LN2 * t)], 1)

    def sample(t):
        w = weights(t)
        which = (torch.rand(t.shape[0]) >= w[:, 0] / w.sum(1)).long()
        return centres[which] + 0.5 * torch.randn(t.shape[0], 2)

    def truth(x, t):
        return torch.where(x[:, 0] < 0, LN2, -LN2)[:, None]

    return Problem("growth-uam", "uam", (0.0, 2.0), sample, truth, field="growth", mass=lambda t: weights(t).sum(1))


def ot_problem() -> Problem:
    m, r = torch.tensor([2.0, -1.0, 0.5]), 2.0

    def sample(t):
        return t[:, None] * m + (1 - t + t * r)[:, None] * torch.randn(t.shape[0], 3)

    def truth(x, t):
        return m + (r - 1) * (x - t[:, None] * m) / (1 - t + t * r)[:, None]

    return Problem("ot3-am", "am", (0.0, 1.0), sample, truth)


def problems() -> list[Problem]:
    return [*(ou_problem(d, m) for d in (2, 3, 5, 20) for m in ("eam", "am")), growth_problem(), ot_problem()]


def errors(model: tj.ActionMatching, problem: Problem, seed: int = 1234) -> dict[str, float]:
    generator = torch.Generator().manual_seed(seed)
    lo, hi = problem.t_range
    span = hi - lo
    out = {}
    for name, a, b in (("all", 0.0, 1.0), ("start", 0.0, 0.05), ("end", 0.95, 1.0)):
        t = lo + span * (a + (b - a) * torch.rand(4000, generator=generator))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            x = problem.sample(t)
        truth = problem.truth(x, t).numpy()
        if problem.field == "growth":
            estimate = model.growth(x.numpy(), t.numpy())[:, None]
        else:
            estimate = model.velocity(x.numpy(), t.numpy())
        out[name] = float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))
    return out


def fit(problem: Problem, config: dict[str, Any], seed: int, quick: bool) -> dict[str, Any]:
    params = {**config, "seed": seed, "run": {"progress": False}}
    if quick:
        params["n_iter"] = 30
    torch.manual_seed(seed)  # the callable path draws from torch's global generator
    path = tj.CallablePath(problem.sample, t_range=problem.t_range, mass_fn=problem.mass)
    model = tj.ActionMatching(problem.method, sigma=problem.sigma, **params)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(path)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "iterations": model.n_iter_, "gradient_signal": model.diagnostics_["gradient_signal"],
            **errors(model, problem)}


MATRIX_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm"}


def profile(n_iter: int = 200) -> dict[str, Any]:
    """Self CPU time of one default eAM fit on the 3-D OU path, by kind of operation."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    problem = ou_problem(3, "eam")
    fit(problem, {"n_iter": 5}, 0, quick=True)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        fit(problem, {"n_iter": n_iter}, 0, quick=False)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matrix = sum(e.self_cpu_time_total for e in events if e.key in MATRIX_OPS)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    return {
        "n_iter": n_iter, "self_cpu_ms_per_iteration": total / 1e3 / n_iter, "matrix_fraction": matrix / total,
        "top": [{"op": e.key, "share": e.self_cpu_time_total / total, "calls_per_iteration": e.count / n_iter} for e in top],
    }


def gradient_variance(n_batches: int = 60, quick: bool = False) -> dict[str, Any]:
    """Where the noise of the loss gradient comes from, at the end of a default eAM fit (3-D OU).

    The minibatch gradient of each term of the loss (boundary at 0 and 1, kinetic, time
    derivative, Laplacian) is drawn ``n_batches`` times at the fitted weights, with quasi-uniform
    and with uniform times; the table gives the total variance (trace of the covariance over
    minibatches) of each term and of the sum.
    """
    from trajinfer.derivatives import potential_derivatives

    problem = ou_problem(3, "eam")
    torch.manual_seed(0)
    path = tj.CallablePath(problem.sample, t_range=problem.t_range)
    model = tj.ActionMatching("eam", sigma=SIGMA, seed=0, run={"progress": False}, **({"n_iter": 30} if quick else {})).fit(path)
    net = model.potential_
    params = [p.requires_grad_(True) for p in net.parameters()]
    batch, diffusion = model.batch_size, SIGMA**2 * model.duration_
    generator = torch.Generator().manual_seed(1)

    def flat(term: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])

    out: dict[str, Any] = {}
    for times in ("quasi-uniform", "uniform"):
        draws: dict[str, list[torch.Tensor]] = {}
        for _ in range(n_batches):
            if times == "uniform":
                tau = torch.rand(batch, generator=generator)
            else:
                tau = (torch.rand(1, generator=generator) + math.sqrt(2.0) * torch.arange(batch)) % 1.0
            x0, x1, xt = path.sample_triplet(tau, generator)
            d = potential_derivatives(net, xt, tau, time_derivative=True, laplacian="exact")
            terms = {
                "boundary (t = 0)": net(x0, torch.zeros(batch)).mean(), "boundary (t = 1)": -net(x1, torch.ones(batch)).mean(),
                "kinetic ½‖∇s‖²": (0.5 * (d.grad**2).sum(1)).mean(), "time derivative ∂s/∂t": d.time_derivative.mean(),
                "Laplacian σ²/2 Δs": (0.5 * diffusion * d.laplacian).mean(),
            }
            terms["total"] = sum(terms.values())
            for name, term in terms.items():
                draws.setdefault(name, []).append(flat(term))
        out[times] = {name: float(torch.stack(v).var(0).sum()) for name, v in draws.items()}
    return {"n_batches": n_batches, "batch_size": batch, "variance": out}


def variance_markdown(v: dict[str, Any], prov: dict[str, Any]) -> str:
    names = list(v["variance"]["quasi-uniform"])
    total = v["variance"]["quasi-uniform"]["total"]
    rows = [[name, C.fmt(v["variance"]["quasi-uniform"][name], 4), C.fmt(v["variance"]["quasi-uniform"][name] / total, 2),
             C.fmt(v["variance"]["uniform"][name], 4)] for name in names]
    return (
        "# Where the gradient noise comes from (eAM, 3-D OU, end of a default fit)\n\n" + C.provenance_md(prov) + "\n\n"
        + f"Total variance (trace of the covariance over {v['n_batches']} minibatches of {v['batch_size']}) of the "
        "gradient of each term of the loss with respect to the network's weights, at the fitted weights. The two "
        "boundary terms and the interior use independent samples; the interior terms share theirs, so their noise "
        "partly cancels in the total (the shares add up to more than one).\n\n"
        + C.md_table(["term", "variance (quasi-uniform t)", "share of the total", "variance (uniform t)"], rows) + "\n"
    )


def profile_markdown(p: dict[str, Any], prov: dict[str, Any]) -> str:
    rows = [[e["op"], f"{100 * e['share']:.1f}%", C.fmt(e["calls_per_iteration"], 1)] for e in p["top"]]
    return (
        "# Profile of one training step (eAM, 3-D OU, defaults)\n\n" + C.provenance_md(prov) + "\n\n"
        + f"{p['n_iter']} iterations under `torch.profiler`: {p['self_cpu_ms_per_iteration']:.1f} ms of self CPU time per "
        f"iteration, **{100 * p['matrix_fraction']:.0f}% in matrix products** (mm, addmm, bmm, matmul, linear); the rest is "
        "element-wise work of the written-out gradient of the action and its Hutchinson probe (the activation's first "
        "and second derivatives, the probe's tangents; `MLPPotential.probed_derivatives`), of the backward pass "
        "through them, of sampling and of the optimiser. Each operation costs several microseconds however small, so the hundreds of small operations of a step "
        f"weigh {'as much as' if p['matrix_fraction'] > 0.35 else 'more than'} its matrix products.\n\n" + C.md_table(["operation", "share of self CPU", "calls per iteration"], rows) + "\n"
    )


def markdown(payload: dict[str, Any]) -> str:
    header = ["problem", "setting", "seeds", "rel. error (all)", "start", "end", "fit s", "CPU s", "gradient signal", "commit"]
    rows = []
    for r in payload["rows"]:
        runs = r["runs"]
        agg = {k: (np.mean([x[k] for x in runs]), np.std([x[k] for x in runs])) for k in ("all", "start", "end", "wall_s")}
        def pct(k: str, agg: dict = agg, n: int = len(runs)) -> str:
            return C.pm(100 * agg[k][0], 100 * agg[k][1] if n > 1 else None, 2) + "%"
        cpu = [x["cpu_s"] for x in runs if "cpu_s" in x]
        signal = [x["gradient_signal"] for x in runs if "gradient_signal" in x]
        rows.append([r["problem"], r["config"], len(runs), pct("all"), pct("start"), pct("end"), C.fmt(agg["wall_s"][0], 1),
                     C.fmt(np.mean(cpu), 1) if cpu else "–", C.fmt(max(signal), 2) if signal else "–", r.get("git_commit", "–")[:7]])
    return (
        "# Ground truth: relative error of the learned field against wall time\n\n"
        + C.provenance_md(payload["provenance"]) + "\n\n"
        + "Relative RMS error of the learned field on 4,000 fresh samples (mean ± std over seeds for the defaults). "
        "`start`/`end`: the first/last 5% of the time range. One CPU thread; *fit s* is elapsed time on a shared "
        "machine, *CPU s* the process's CPU time over the fit (– where not recorded), *gradient signal* the largest over the "
        "seeds (about 1 when a fit converged, `diagnostics_`; – where not recorded). The rows below the defaults, the "
        "defaults before them and the 64x3 network vary one setting from the defaults before (a 128x3 network and 1500 "
        "iterations; from `uniform t` on, also lr 1e-2 and four time frequencies). A run replaces and adds "
        "rows and keeps the others: the header names the latest run, *commit* the code each row was fitted with "
        "(– for rows from runs before it was recorded). Figure: `groundtruth.png` (error against CPU s, with the targets).\n\n"
        + C.md_table(header, rows) + "\n"
    )


# the targets of the estimator on this benchmark: (relative error, CPU seconds) per problem
TARGETS = {"ou3-eam": (0.01, 20.0), "ou3-am": (0.02, 20.0), "ou20-eam": (0.03, 60.0), "ou20-am": (0.03, 60.0)}
HIGHLIGHT = {"defaults": ("tab:red", "*", "defaults"),
             BEFORE_NAME: ("tab:blue", "s", "128×3, 1500 it (before)")}


def save_figure(payload: dict[str, Any], path: Path) -> None:
    """Relative error against CPU seconds, one panel per problem: every setting with a recorded
    CPU time in grey, the defaults and the defaults before them in colour, the targets dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p.name for p in problems()]
    fig, axes = plt.subplots(2, 5, figsize=(16, 6.4))
    for ax, name in zip(axes.flat, names):
        for r in (r for r in payload["rows"] if r["problem"] == name):
            cpu = [x["cpu_s"] for x in r["runs"] if "cpu_s" in x]
            if not cpu:
                continue
            error = 100 * np.mean([x["all"] for x in r["runs"]])
            color, marker, label = HIGHLIGHT.get(r["config"], ("0.6", "o", None))
            ax.scatter(np.mean(cpu), error, c=color, marker=marker, s=110 if label else 22, zorder=3 if label else 2,
                       label=label, edgecolors="none")
        if name in TARGETS:
            error, seconds = TARGETS[name]
            ax.axhline(100 * error, color="k", ls="--", lw=0.8)
            ax.axvline(seconds, color="k", ls=":", lw=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("CPU s of the fit (one thread)")
    for ax in axes[:, 0]:
        ax.set_ylabel("relative error (%)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="0.6", marker="o", ls="none"))
    labels.append("other settings")
    handles.append(plt.Line2D([], [], color="k", ls="--", lw=0.8))
    labels.append("target error (dotted: its time)")
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False)
    fig.suptitle("Ground truth: error of the learned field against the fit's CPU time")
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=C.RESULTS)
    parser.add_argument("--problems", default=None, help="comma-separated problem names (default: all)")
    parser.add_argument("--configs", default=None, help="comma-separated setting names (default: all)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the defaults row")
    parser.add_argument("--fresh", action="store_true", help="start a new table (default: replace and add rows of groundtruth.json)")
    parser.add_argument("--profile", action="store_true", help="write groundtruth_profile.md: where a training step spends its time")
    parser.add_argument("--variance", action="store_true", help="write groundtruth_variance.md: the gradient noise of each loss term")
    parser.add_argument("--figure", action="store_true", help="redraw groundtruth.png from groundtruth.json without fitting")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.figure:
        payload = json.loads((args.out / "groundtruth.json").read_text())
        save_figure(payload, args.out / "groundtruth.png")
        return payload
    if args.profile:
        prov = C.provenance(argv=argv)
        result = profile(20 if args.quick else 200)
        C.write_json(args.out / "groundtruth_profile.json", {"provenance": prov, **result})
        C.write_text(args.out / "groundtruth_profile.md", profile_markdown(result, prov))
        return result
    if args.variance:
        prov = C.provenance(argv=argv)
        result = gradient_variance(5 if args.quick else 60, args.quick)
        C.write_json(args.out / "groundtruth_variance.json", {"provenance": prov, **result})
        C.write_text(args.out / "groundtruth_variance.md", variance_markdown(result, prov))
        return result
    chosen = [p for p in problems() if args.problems is None or p.name in args.problems.split(",")]
    unknown = set() if args.configs is None else set(args.configs.split(",")) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"Unknown settings {sorted(unknown)}; choose from {list(CONFIGS)}.")
    configs = {k: v for k, v in CONFIGS.items() if args.configs is None or k in args.configs.split(",")}
    fit(chosen[0], {"n_iter": 5}, 0, quick=True)  # warm-up: one-off imports inside torch.optim
    out_json = args.out / "groundtruth.json"
    previous = json.loads(out_json.read_text())["rows"] if out_json.exists() and not (args.quick or args.fresh) else []
    payload: dict[str, Any] = {"provenance": C.provenance(argv=argv), "rows": previous}
    for problem in chosen:
        for name, config in configs.items():
            seeds = range(args.seeds) if name in SEEDED else range(1)
            runs = [fit(problem, config, seed, args.quick) for seed in seeds]
            row = {"problem": problem.name, "config": name, "settings": config, "runs": runs,
                   "git_commit": payload["provenance"]["git_commit"]}
            same = [i for i, r in enumerate(payload["rows"]) if (r["problem"], r["config"]) == (problem.name, name)]
            if same:
                payload["rows"][same[0]] = row
            else:
                payload["rows"].append(row)
            # rows of settings no longer offered (kept from earlier runs, with their commit) go last
            order = {name: i for i, name in enumerate(CONFIGS)}
            payload["rows"].sort(key=lambda r: ([p.name for p in problems()].index(r["problem"]), order.get(r["config"], len(order))))
            print(f"[groundtruth] {problem.name} {name}: {100 * np.mean([r['all'] for r in runs]):.2f}% "
                  f"in {np.mean([r['wall_s'] for r in runs]):.1f} s", flush=True)
            C.write_json(out_json, payload)
            C.write_text(args.out / "groundtruth.md", markdown(payload))
    save_figure(payload, args.out / "groundtruth.png")
    return payload


if __name__ == "__main__":
    main()
