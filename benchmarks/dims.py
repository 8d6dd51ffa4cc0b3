"""Dimension sweep: leave one time point out (and one step ahead) from 5 to 100 dimensions.

Data sets and representations:

- ``eb`` (embryoid body, NLSB val/test split): ``raw{d}``, the first ``d`` of the 100 raw PCs
  centred on the training (val) cells; ``std{d}``, a StandardScaler fitted on the val cells over
  all 100 PCs, first ``d`` columns kept (the established 5-PC protocol); d = 5, 10, 20, 50, 100.
- ``dyngen`` (MIOFlow's bifurcation, 1000 cells): counts, ``normalize_total``, ``log1p``
  (scanpy), PCA fitted on the training half; ``pca10`` and ``pca50``. Time labels: 5 equal-width
  bins of ``sim_time`` (``tj.datasets.dyngen(n_bins=5)``, right-closed). The cells of each bin are
  split at random (seed 0) into a training half and a test half.
- ``sde`` (synthetic, known drift): a 2-D branching SDE (progress ``dx₁ = 2 dt``, pitchfork
  ``dx₂ = 3x₂(1 − x₂²) dt``) beside ``D − 2`` Ornstein–Uhlenbeck noise coordinates
  (``dz = −z dt``, started at their stationary law, so their marginals never change), all with
  ``σ = 0.2``, rotated by a fixed random orthogonal matrix; snapshots at t = 0, 0.5, 1, 1.5, 2,
  200 training and 350 test cells per time (independent paths); ``noise10`` and ``noise50``
  (D = 10, 50). The drift is known, so the velocity error of trajinfer is exact:
  relative RMS ``|v̂ − b| / |b|`` on the test cells of the held-out time.

Protocol ``loo`` (eb.py's ``--loo``): fit on the training cells without label h, push the test
cells of h−1 to h, W1 (EMD, Euclidean ground cost) against the test cells of h, h = 1, 2, 3.
Protocol ``onestep`` (eb only): fit on every training label, push test k−1 → k, k = 1..4.
Baselines: no move W1(test h−1, test h) and the finite-sample floor W1(train h, test h); gap
closed = (no move − model) / (no move − floor), computed from the means over h. Every push and
baseline is also scored by the unbiased energy distance (``tj.metrics.energy_distance``), which,
unlike W1 between finite samples in many dimensions, does not reward a contracted prediction;
``--rescore`` refits the cached entries scored before it.

Methods: ``tj`` (``tj.fit(adata, "time", method="eam")`` at its defaults), ``tj_prev`` (the same
with the snapshots' density bandwidth off, ``trajinfer.paths.KDE_FACTOR = 0``: the smoothing rule
before it, for the before/after comparison), ``tj_ot`` (the default
with ``interpolation="ot"``), ``tj_learned`` (the default with ``interpolation="learned"``: the
path through every training time point learned with the action), ``tj_ode`` (the default fit, the same model for the same seed,
pushed by its drift alone: ``simulate(..., stochastic=False)``; a diagnostic), ``otcfm`` (TorchCFM OT-CFM through ``benchmarks/peers``, 2000
iterations as in eb.py), ``mioflow`` (its defaults, 100 epochs; pushed from the rank of h−1 half
way to the rank of h+1), ``moscot`` (``TemporalProblem(adata).prepare(time_key="time",
joint_attr="X_pca").solve()`` at its defaults in a separate Python, ``--moscot-python``; as in
``atlas.py`` the plan between the neighbours h−1 and h+1 of the held-out time is sampled (350
pairs of *training* cells per draw) and interpolated at h; loo only, since its one-step
prediction is the training cells of k themselves).

Every (data set, representation, protocol, method, fold) result is cached in ``--out/dims.json``
as soon as it finishes; a rerun skips cached entries, so the sweep can be extended across
sessions. ``dims.md`` is regenerated from the cache after every entry.

Usage::

    python benchmarks/dims.py --quick --out /tmp/dims                 # seconds: synthetic data only
    python benchmarks/dims.py --only eb:std5,raw5:tj,tj_ot:loo        # a filtered part
    python benchmarks/dims.py --stage 1                               # the priority stages 1..5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

import trajinfer as tj

DATA = C.REPO.parent / "shared" / "data"
MOSCOT_PYTHON = "/tmp/moscot-venv/bin/python"
METHODS = ("tj", "tj_prev", "tj_ot", "tj_learned", "tj_ode", "otcfm", "mioflow", "moscot")
NAMES = {"tj": "trajinfer `tj.fit` defaults", "tj_prev": "trajinfer defaults without the density bandwidth (previous rule)",
         "tj_ot": "trajinfer defaults, interpolation=\"ot\"",
         "tj_learned": "trajinfer defaults, interpolation=\"learned\"",
         "tj_ode": "trajinfer defaults, pushed without noise (drift only)", "otcfm": "TorchCFM OT-CFM",
         "mioflow": "MIOFlow", "moscot": "moscot TemporalProblem"}
TRAJINFER = ("tj", "tj_prev", "tj_ot", "tj_learned")  # tj.fit's stochastic rows (tj_ode pushes a tj fit by its drift)
TJ_INTERPOLATIONS = {"tj_ot": "ot", "tj_learned": "learned"}
SDE_TIMES = [0.0, 0.5, 1.0, 1.5, 2.0]
SDE_SIGMA = 0.2
STAGES = {  # the priority order of the sweep: (datasets:representations:methods:protocols) filters
    1: ["eb:std5,raw5,std50,raw50:tj,tj_ot,otcfm,moscot:loo"],
    2: ["eb:std10,raw10,std20,raw20,std100,raw100:tj,otcfm:loo"],
    3: ["dyngen:pca10,pca50:tj,tj_ot,otcfm,moscot:loo", "sde:noise10,noise50:tj,tj_ot,otcfm,moscot:loo"],
    4: ["eb:std5,raw50:mioflow:loo"],
    5: ["eb:std5,raw5,std50,raw50:tj,tj_ot,otcfm:onestep"],
    6: ["eb:std5,std50,raw50:tj_learned:loo"],
}
REPRESENTATIONS = {
    "eb": [f"{kind}{d}" for d in (5, 10, 20, 50, 100) for kind in ("std", "raw")],
    "dyngen": ["pca10", "pca50"],
    "sde": ["noise10", "noise50"],
}
PEERS_NOTE = ("TorchCFM and MIOFlow were installed with `pip install --no-deps` into a separate folder on `PYTHONPATH`: "
              "their declared requirements would replace the project's CPU build of torch with a CUDA build of a newer torch.")
OTPFM_NOTE = ("otpfm 1.0 installs with `pip install otpfm` into a separate virtualenv, but it exposes a model class "
              "(`otpfm.OTPFM`: potentials per intermediate time, a curriculum, a MeanFlow consistency loss) and no fit on "
              "snapshot lists: the optimiser, learning rate, iteration count and potential strengths have no package defaults, "
              "so it has no defaults-only row here (not run).")


# ----------------------------------------------------------------------------- data
class Dataset:
    """Training and test snapshots of one representation, their times and (sde) the true drift."""

    def __init__(self, train: list[np.ndarray], test: list[np.ndarray], times: list[float], drift=None, note: str = ""):
        self.train, self.test, self.times, self.drift, self.note = train, test, [float(t) for t in times], drift, note


def load_eb(rep: str, data: Path) -> Dataset:
    adata = tj.datasets.embryoid_body(data, split="both", n_comps=100, standardize=True)
    t = adata.obs["time"].to_numpy()
    split = adata.obs["split"].astype(str).to_numpy()
    d = int(rep[3:])
    if rep.startswith("std"):
        X = np.asarray(adata.obsm["X_pca"], dtype=np.float64)[:, :d]
    else:
        raw = np.asarray(adata.obsm["X_pca_raw"], dtype=np.float64)
        X = (raw - raw[split == "val"].mean(0))[:, :d]
    labels = sorted(np.unique(t))
    return Dataset([X[(split == "val") & (t == k)] for k in labels], [X[(split == "test") & (t == k)] for k in labels], labels)


def load_dyngen(rep: str, data: Path) -> Dataset:
    import scanpy as sc
    from sklearn.decomposition import PCA

    adata = tj.datasets.dyngen(data, n_bins=5)
    adata.X = adata.layers["counts"].copy()
    del adata.uns["log1p"]
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    X = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float64)
    t = adata.obs["time"].to_numpy()
    rng = np.random.default_rng(0)
    is_train = np.zeros(len(t), dtype=bool)
    for k in np.unique(t):
        idx = rng.permutation(np.flatnonzero(t == k))
        is_train[idx[: len(idx) // 2]] = True
    pca = PCA(n_components=50, random_state=0).fit(X[is_train])
    Z = pca.transform(X)[:, : int(rep[3:])]
    labels = sorted(np.unique(t))
    edges = np.round(np.asarray(adata.uns["dyngen"]["bin_edges"], dtype=float), 3).tolist()
    counts = [int((t == k).sum()) for k in labels]
    return Dataset([Z[is_train & (t == k)] for k in labels], [Z[~is_train & (t == k)] for k in labels], labels,
                   note=f"sim_time bin edges {edges}; cells per bin {counts}")


def sde_drift_latent(x: np.ndarray) -> np.ndarray:
    b = -x.copy()
    b[:, 0] = 2.0
    b[:, 1] = 3.0 * x[:, 1] * (1.0 - x[:, 1] ** 2)
    return b


def make_sde(dim: int, n_train: int = 200, n_test: int = 350, seed: int = 0, dt: float = 0.002) -> Dataset:
    """Branching SDE in 2 latent dimensions beside ``dim − 2`` OU noise dimensions, rotated."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))

    def sample(n: int) -> list[np.ndarray]:
        x = np.zeros((n * len(SDE_TIMES), dim))
        x[:, 0] = rng.normal(0.0, 0.1, len(x))
        x[:, 1] = rng.normal(0.0, 0.1, len(x))
        x[:, 2:] = rng.normal(0.0, SDE_SIGMA / np.sqrt(2.0), (len(x), dim - 2))
        out, t = [], 0.0
        for k, tk in enumerate(SDE_TIMES):
            while t < tk - 1e-9:
                x = x + sde_drift_latent(x) * dt + SDE_SIGMA * np.sqrt(dt) * rng.normal(size=x.shape)
                t += dt
            out.append(x[k * n:(k + 1) * n] @ Q.T)  # independent paths per time: snapshots
        return out

    def drift(X: np.ndarray) -> np.ndarray:
        return sde_drift_latent(np.asarray(X) @ Q) @ Q.T

    train, test = sample(n_train), sample(n_test)
    return Dataset(train, test, SDE_TIMES, drift=drift,
                   note=f"σ = {SDE_SIGMA}, Euler–Maruyama dt = {dt}, {n_train} training / {n_test} test cells per time")


def load(dataset: str, rep: str, data: Path, quick: bool = False) -> Dataset:
    if dataset == "eb":
        return load_eb(rep, data)
    if dataset == "dyngen":
        return load_dyngen(rep, data)
    if dataset == "sde":
        return make_sde(int(rep[5:]), *((40, 60) if quick else (200, 350)))
    raise ValueError(dataset)


# ----------------------------------------------------------------------------- methods
@contextlib.contextmanager
def density_factor(factor: float) -> Iterator[None]:
    """``trajinfer.paths.KDE_FACTOR`` set to ``factor`` inside the block (0: the smoothing rule before it)."""
    saved = tj.paths.KDE_FACTOR
    tj.paths.KDE_FACTOR = factor
    try:
        yield
    finally:
        tj.paths.KDE_FACTOR = saved


def fit_trajinfer(train: list[np.ndarray], times: list[float], interpolation: str | None, seed: int, quick: bool, **fit_params: Any):
    """``tj.fit`` at its defaults (plus ``fit_params``) on the snapshots ``train`` at ``times``; the model and its fit record."""
    import anndata as ad

    X = np.concatenate(train)
    adata = ad.AnnData(np.zeros((len(X), 1), dtype=np.float32))
    adata.obsm["X_rep"] = X
    adata.obs["time"] = np.concatenate([np.full(len(s), t) for s, t in zip(train, times)])
    kw: dict[str, Any] = dict(fit_params) if interpolation is None else {**fit_params, "interpolation": interpolation}
    if quick:
        kw.update(n_iter=20, hidden_dims=(16, 16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = tj.fit(adata, "time", method="eam", use_rep="X_rep", seed=seed, progress=False, device="cpu", **kw)
    diag = getattr(model, "diagnostics_", {}) or {}
    info = {"sigma": float(model.sigma_ if hasattr(model, "sigma_") else model.sigma),
            "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught if "FitWarning" in w.category.__name__}),
            "diagnostics": {k: diag.get(k) for k in ("status", "gradient_signal", "kinetic_ratio", "transport_ratio", "loss_drift",
                                                     "warnings") if k in diag}}
    return model, info


def run_method(method: str, ds: Dataset, keep: list[int], src: np.ndarray, k0: int, k1: int, args, seed: int) -> dict[str, Any]:
    """Fit ``method`` on the training snapshots ``keep``, push ``src`` from time label k0 to k1."""
    train = [ds.train[j] for j in keep]
    times = [ds.times[j] for j in keep]
    t0, t1 = ds.times[k0], ds.times[k1]
    rec: dict[str, Any] = {}
    if method in (*TRAJINFER, "tj_ode"):
        with density_factor(0.0 if method == "tj_prev" else tj.paths.KDE_FACTOR), C.measure(rec):
            model, info = fit_trajinfer(train, times, TJ_INTERPOLATIONS.get(method), seed, args.quick)
        rec.update(info)
        reps = 1 if method == "tj_ode" else args.repeats
        n_steps = max(1, int(round((10 if args.quick else 100) * (k1 - k0))))
        start = time.perf_counter()
        traj = model.simulate(np.tile(src, (reps, 1)), t0, t1, n_steps=n_steps, seed=k1, progress=False, stochastic=method != "tj_ode")
        rec["push_seconds"] = time.perf_counter() - start
        end = traj.X[-1].astype(np.float64)
        n = len(src)
        rec["preds"] = [end[r * n:(r + 1) * n] for r in range(reps)]
        rec["n_steps"] = n_steps
        if ds.drift is not None:
            tgt = ds.test[k1]
            v = np.asarray(model.velocity(tgt, t1), dtype=np.float64)
            b = ds.drift(tgt)
            rec["drift_rel_error"] = float(np.sqrt(((v - b) ** 2).sum(1).mean() / (b ** 2).sum(1).mean()))
            allx = np.concatenate(ds.test)
            allt = np.concatenate([np.full(len(s), t) for s, t in zip(ds.test, ds.times)])
            v = np.asarray(model.velocity(allx, allt), dtype=np.float64)
            b = ds.drift(allx)
            rec["drift_rel_error_all_times"] = float(np.sqrt(((v - b) ** 2).sum(1).mean() / (b ** 2).sum(1).mean()))
        return rec
    if method in ("otcfm", "mioflow"):
        from peers import fit_mioflow, fit_otcfm

        if method == "otcfm":
            with C.measure(rec):
                model = fit_otcfm(train, times, n_iter=20 if args.quick else 2000, seed=seed)
            out, _ = model.push(src, t0, t1, seed=k1)
        else:
            ranks = list(range(len(keep)))
            with C.measure(rec):
                model = fit_mioflow(train, ranks, n_epochs=1 if args.quick else 100, seed=seed)
            r0 = keep.index(k0)
            # held out: half way between the ranks of k0 and k0+1 (labels equally spaced); one step: the next rank
            r1 = r0 + (0.5 if k1 not in keep else keep.index(k1) - r0)
            out, _ = model.push(src, r0, r1, seed=k1)
        rec["settings"] = {k: v for k, v in model.settings.items() if isinstance(v, (int, float, str, bool, type(None)))}
        rec["preds"] = [out]
        return rec
    raise ValueError(method)


MOSCOT_SCRIPT = r'''
import json, sys, time
import numpy as np
import anndata as ad
import pandas as pd
import moscot
from moscot.problems.time import TemporalProblem
inp, out = sys.argv[1], sys.argv[2]
d = np.load(inp)
X, t, held, n_eval, draws = d["X"], d["t"], d["held"].tolist(), int(d["n_eval"]), int(d["draws"])
res, arrays = {"moscot_version": moscot.__version__, "folds": {}}, {}
for h in held:
    sub = ad.AnnData(X[t != h].astype(np.float32), obs=pd.DataFrame({"time": t[t != h]}, index=[str(i) for i in np.flatnonzero(t != h)]))
    sub.obsm["X_pca"] = X[t != h]
    start = time.perf_counter()
    problem = TemporalProblem(sub).prepare(time_key="time", joint_attr="X_pca").solve()
    fit_s = time.perf_counter() - start
    order = np.unique(t)
    prev, nxt = order[order < h].max(), order[order > h].min()
    sol = problem.solutions[(prev, nxt)]
    plan = np.asarray(sol.transport_matrix, dtype=np.float64)
    p = plan.ravel() / plan.sum()
    rng = np.random.default_rng(int(h))
    a_all, b_all = sub.obsm["X_pca"][sub.obs["time"].to_numpy() == prev], sub.obsm["X_pca"][sub.obs["time"].to_numpy() == nxt]
    lam = (h - prev) / (nxt - prev)
    preds = []
    for r in range(draws):
        i, j = np.divmod(rng.choice(p.size, size=n_eval, p=p), plan.shape[1])
        preds.append((1 - lam) * a_all[i] + lam * b_all[j])
    arrays[f"h{h}"] = np.stack(preds)
    res["folds"][str(h)] = {"fit_seconds": fit_s, "converged": bool(getattr(sol, "converged", True)),
                            "cost": float(getattr(sol, "cost", float("nan")))}
np.savez(out, **arrays)
print(json.dumps(res))
'''


def run_moscot(ds: Dataset, helds: list[int], n_eval: int, draws: int, python: str, timeout: float = 1800) -> dict[int, dict[str, Any]]:
    """moscot on the training cells without each held-out label in turn (one process for all folds)."""
    X = np.concatenate(ds.train)
    t = np.concatenate([np.full(len(s), tt) for s, tt in zip(ds.train, ds.times)])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    with tempfile.TemporaryDirectory(prefix="dims_moscot_") as tmp:
        inp, out, script = Path(tmp) / "in.npz", Path(tmp) / "out.npz", Path(tmp) / "moscot_dims.py"
        np.savez(inp, X=X, t=t, held=np.asarray([ds.times[h] for h in helds]), n_eval=n_eval, draws=draws)
        script.write_text(MOSCOT_SCRIPT)
        start = time.perf_counter()
        run = subprocess.run(["nice", "-n", "5", python, str(script), str(inp), str(out)], capture_output=True, text=True, env=env,
                             timeout=timeout)
        wall = time.perf_counter() - start
        if run.returncode != 0:
            raise RuntimeError((run.stderr.strip().splitlines() or ["moscot failed"])[-1][:500])
        meta = json.loads(run.stdout.strip().splitlines()[-1])
        arrays = dict(np.load(out))
    results = {}
    for h in helds:
        key = str(ds.times[h])
        fold = meta["folds"][key]
        results[h] = {"fit_seconds": fold["fit_seconds"], "converged": fold["converged"], "cost": fold["cost"],
                      "moscot_version": meta["moscot_version"], "process_wall_seconds": wall,
                      "preds": list(arrays[f"h{key}"])}
    return results


def ot_interpolation(ds: Dataset, h: int) -> tuple[np.ndarray, np.ndarray]:
    """The displacement interpolation at h between the *training* cells of h−1 and h+1 (exact OT
    plan, squared Euclidean cost, uniform weights; no model), as cells and their plan weights:
    the protocol of moscot's row without its entropic plan."""
    import ot

    a, b = ds.train[h - 1], ds.train[h + 1]
    lam = (ds.times[h] - ds.times[h - 1]) / (ds.times[h + 1] - ds.times[h - 1])
    plan = ot.emd(np.full(len(a), 1.0 / len(a)), np.full(len(b), 1.0 / len(b)), ot.dist(a, b, "sqeuclidean"))
    i, j = np.nonzero(plan > 0)
    return (1 - lam) * a[i] + lam * b[j], plan[i, j]


# ----------------------------------------------------------------------------- cache
def entry_key(dataset: str, rep: str, protocol: str, method: str, fold: int) -> str:
    return f"{dataset}|{rep}|{protocol}|{method}|{fold}"


def folds_of(protocol: str, ds: Dataset) -> list[int]:
    return list(range(1, len(ds.times) - 1)) if protocol == "loo" else list(range(1, len(ds.times)))


METRICS = {"w1": "W1", "energy": "energy distance"}  # record key -> name; baselines use "no_move", "floor" and "<key>" suffixes


ENERGY_NOTE = ("Energy distance: `tj.metrics.energy_distance`, the unbiased estimate of 2E|X − Y| − E|X − X'| − E|Y − Y'| "
               "(Euclidean), same pushes and targets as W1. A second sample of the truth scores zero on average and a "
               "contracted prediction scores more (`w1_shrink.md`), so it ranks methods where W1 rewards pulling the cells "
               "together; its floor is about zero, its no-move value the same baseline as W1's. Rows scored before it existed "
               "are left out (rerun with `--rescore`).")


def distances(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of the sweep between a prediction and the target cells."""
    return {"w1": tj.metrics.w1(pred, target, wa=weights), "energy": tj.metrics.energy_distance(pred, target, wa=weights)}


def baseline_key(kind: str, metric: str) -> str:
    """``no_move``/``floor``/``ot_interpolation`` for W1 (the keys predating the energy distance), ``<kind>_<metric>`` otherwise."""
    return kind if metric == "w1" else f"{kind}_{metric}"


def score(rec: dict[str, Any], target: np.ndarray) -> dict[str, Any]:
    """Replace the record's predictions by the mean and spread of every metric over them."""
    preds = rec.pop("preds")
    values = [distances(p, target) for p in preds]
    for metric in METRICS:
        v = [x[metric] for x in values]
        rec[metric] = float(np.mean(v))
        rec[f"{metric}_std"] = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    rec["n_repeats"] = len(values)
    return rec


def cached(entries: dict[str, Any], key: str, rescore: bool) -> bool:
    """Whether an entry is done: present and, with ``--rescore``, scored by every metric (or failed)."""
    rec = entries.get(key)
    return rec is not None and (not rescore or "error" in rec or all(m in rec for m in METRICS))


def parse_filters(specs: list[str]) -> list[tuple[set, set, set, set]]:
    """``dataset:reps:methods:protocols`` (each comma-separated; empty or ``*`` means all)."""
    out = []
    for spec in specs:
        parts = (spec.split(":") + ["", "", "", ""])[:4]
        out.append(tuple(set() if p in ("", "*") else set(p.split(",")) for p in parts))
    return out


def wanted(filters, dataset: str, rep: str, method: str, protocol: str) -> bool:
    return any((not f[0] or dataset in f[0]) and (not f[1] or rep in f[1]) and (not f[2] or method in f[2]) and (not f[3] or protocol in f[3])
               for f in filters)


def run_sweep(args, payload: dict[str, Any], out: Path) -> None:
    filters = parse_filters(args.only)
    entries = payload["entries"]
    baselines = payload["baselines"]
    datasets = ["sde"] if args.quick else ["eb", "dyngen", "sde"]
    for dataset in datasets:
        reps = REPRESENTATIONS[dataset] if not args.quick else ["noise10"]
        for rep in reps:
            for protocol in ("loo", "onestep"):
                if protocol == "onestep" and dataset != "eb" and not args.quick:
                    continue
                todo_methods = [m for m in METHODS if wanted(filters, dataset, rep, m, protocol)]
                if not todo_methods:
                    continue
                ds = load(dataset, rep, args.data, args.quick)
                folds = folds_of(protocol, ds)
                bkey = f"{dataset}|{rep}|{protocol}"
                base = baselines.setdefault(bkey, {})
                baselines[bkey + "|note"] = ds.note
                for h in folds:
                    fold = base.setdefault(str(h), {"n_train": len(ds.train[h]), "n_test": len(ds.test[h])})
                    kinds = {"no_move": (ds.test[h - 1], None), "floor": (ds.train[h], None)}
                    if protocol == "loo":
                        kinds["ot_interpolation"] = ot_interpolation(ds, h)
                    for kind, (cells, weights) in kinds.items():
                        if any(baseline_key(kind, m) not in fold for m in METRICS):  # cached values are kept
                            for metric, value in distances(cells, ds.test[h], weights).items():
                                fold.setdefault(baseline_key(kind, metric), value)
                save(payload, out)
                for method in todo_methods:
                    if method == "moscot":
                        if protocol != "loo":
                            continue
                        missing = [h for h in folds if not cached(entries, entry_key(dataset, rep, protocol, method, h), args.rescore)]
                        if not missing:
                            continue
                        print(f"[dims] {dataset} {rep} {protocol} moscot folds {missing}", flush=True)
                        try:
                            res = run_moscot(ds, missing, len(ds.test[0]), args.moscot_draws, args.moscot_python)
                        except Exception as err:  # recorded, not fatal
                            for h in missing:
                                entries[entry_key(dataset, rep, protocol, method, h)] = {"error": f"{type(err).__name__}: {err}"[:500]}
                            save(payload, out)
                            continue
                        for h, rec in res.items():
                            entries[entry_key(dataset, rep, protocol, method, h)] = score(rec, ds.test[h])
                            print(f"[dims]   h={h}: W1 {entries[entry_key(dataset, rep, protocol, method, h)]['w1']:.3f}", flush=True)
                        save(payload, out)
                        continue
                    for h in folds:
                        key = entry_key(dataset, rep, protocol, method, h)
                        if cached(entries, key, args.rescore):
                            continue
                        keep = [j for j in range(len(ds.times)) if j != h] if protocol == "loo" else list(range(len(ds.times)))
                        try:
                            rec = run_method(method, ds, keep, ds.test[h - 1], h - 1, h, args, args.seed)
                            rec = score(rec, ds.test[h])
                        except Exception as err:
                            rec = {"error": f"{type(err).__name__}: {err}"[:500]}
                        rec["run"] = len(payload["runs"]) - 1
                        entries[key] = rec
                        msg = rec.get("error") or f"W1 {rec['w1']:.3f} (fit {rec['fit_seconds']:.0f} s)"
                        print(f"[dims] {key}: {msg}" + (f" drift err {rec['drift_rel_error']:.3f}" if "drift_rel_error" in rec else "")
                              + (f" warnings {rec['warnings']}" if rec.get("warnings") else ""), flush=True)
                        save(payload, out)


def save(payload: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    C.write_json(out / "dims.json", payload)
    C.write_text(out / "dims.md", markdown(payload))


# ----------------------------------------------------------------------------- markdown
def _rows(payload: dict[str, Any], dataset: str, protocol: str, metric: str = "w1") -> tuple[list[str], list[list[str]]]:
    """The per-fold table of one data set and protocol in one metric (rows without it: not run)."""
    entries, baselines = payload["entries"], payload["baselines"]
    nm_key, fl_key, oi_key = (baseline_key(k, metric) for k in ("no_move", "floor", "ot_interpolation"))
    reps = [r for r in REPRESENTATIONS[dataset] if f"{dataset}|{r}|{protocol}" in baselines]
    if not reps:
        return [], []
    rows = []
    n_folds = len(baselines[f"{dataset}|{reps[0]}|{protocol}"])
    folds = list(range(1, n_folds + 1))
    hname = "h" if protocol == "loo" else "k"
    header = ["representation", "method", *[f"{hname}={h}" for h in folds], "mean", "gap closed", "fit s (mean)", "repeats"]
    for rep in reps:
        base = baselines[f"{dataset}|{rep}|{protocol}"]
        if any(nm_key not in base[str(h)] for h in folds):
            continue
        nm = np.mean([base[str(h)][nm_key] for h in folds])
        fl = np.mean([base[str(h)][fl_key] for h in folds])
        for method in METHODS:
            if method == "moscot" and protocol != "loo":
                continue
            recs = [entries.get(entry_key(dataset, rep, protocol, method, h)) for h in folds]
            recs = [r if r is None or "error" in r or metric in r else None for r in recs]
            if all(r is None for r in recs) and method == "tj_ode":  # a diagnostic, listed where it ran
                continue
            if all(r is None for r in recs):
                rows.append([rep, NAMES[method], *["not run"] * len(folds), "not run", "", "", ""])
                continue
            cells, w1s, fits, reps_n = [], [], [], set()
            for r in recs:
                if r is None:
                    cells.append("not run")
                elif "error" in r:
                    cells.append("error: " + r["error"][:80])
                else:
                    cells.append(C.pm(r[metric], r.get(f"{metric}_std") if r.get("n_repeats", 1) > 1 else None))
                    w1s.append(r[metric])
                    fits.append(r["fit_seconds"])
                    reps_n.add(r.get("n_repeats", 1))
            complete = len(w1s) == len(folds)
            mean = np.mean(w1s) if complete else None
            gap = (nm - mean) / (nm - fl) if complete and nm > fl else None
            rows.append([rep, NAMES[method], *cells, C.fmt(mean), C.fmt(gap, 2) if nm > fl or not complete else "n/a (floor ≥ no move)", C.fmt(np.mean(fits), 1) if fits else "",
                         ",".join(str(x) for x in sorted(reps_n))])
        if protocol == "loo" and all(oi_key in base[str(h)] for h in folds):
            oi = np.mean([base[str(h)][oi_key] for h in folds])
            rows.append([rep, "OT interpolation of training cells h−1, h+1 (no model)",
                         *[C.fmt(base[str(h)][oi_key]) for h in folds], C.fmt(oi),
                         C.fmt((nm - oi) / (nm - fl), 2) if nm > fl else "n/a (floor ≥ no move)", "", ""])
        rows.append([rep, "no move (test h−1 vs test h)", *[C.fmt(base[str(h)][nm_key]) for h in folds], C.fmt(nm), "0.00", "", ""])
        rows.append([rep, "floor (train h vs test h)", *[C.fmt(base[str(h)][fl_key]) for h in folds], C.fmt(fl), "1.00", "", ""])
    return header, rows


def _gap_summary(payload: dict[str, Any], dataset: str, protocol: str, metric: str = "w1") -> dict[str, dict[str, float | None]]:
    """Gap closed per method and representation in one metric (None: not run in it)."""
    entries, baselines = payload["entries"], payload["baselines"]
    nm_key, fl_key = baseline_key("no_move", metric), baseline_key("floor", metric)
    out: dict[str, dict[str, float | None]] = {}
    for rep in REPRESENTATIONS[dataset]:
        base = baselines.get(f"{dataset}|{rep}|{protocol}")
        if not base or any(nm_key not in fold for fold in base.values()):
            continue
        folds = sorted(int(h) for h in base)
        nm = np.mean([base[str(h)][nm_key] for h in folds])
        fl = np.mean([base[str(h)][fl_key] for h in folds])
        for method in METHODS:
            recs = [entries.get(entry_key(dataset, rep, protocol, method, h)) for h in folds]
            ok = all(r is not None and metric in r for r in recs)
            out.setdefault(method, {})[rep] = ((nm - np.mean([r[metric] for r in recs])) / (nm - fl) if nm > fl else "n/a") if ok else None
    return out


def markdown(payload: dict[str, Any]) -> str:
    runs = payload["runs"]
    parts = ["# Dimension sweep: leave one time point out from 5 to 100 dimensions", ""]
    for i, prov in enumerate(runs):
        parts += [f"Run {i}: " + C.provenance_md(prov), ""]
    repeats = sorted({r.get("n_repeats") for r in payload["entries"].values() if r.get("n_repeats") and r.get("n_repeats") > 1})
    parts += [
        "W1: EMD with Euclidean ground cost (POT), the metric of `eb.md`. **Leave one time point out** (`loo`): fit on the "
        "training cells without label h, push the test cells of h−1 to h, W1 against the test cells of h (eb.py's `--loo`). "
        "**One step** (`onestep`, embryoid body only): fit on every training label, push test k−1 → k. Gap closed = (no move − "
        "model) / (no move − floor) on the means over h. *fit s*: wall-clock seconds of one fit on one CPU thread of a shared "
        f"2-core machine (single process, one fit at a time). trajinfer rows are stochastic (eAM): W1 is the mean ± std over "
        f"{', '.join(str(r) for r in repeats) or '–'} independent pushes of the test cells; OT-CFM and MIOFlow are deterministic "
        f"(one push); moscot: mean ± std over {payload['config'].get('moscot_draws')} draws of 350 pairs from its plan. "
        "*not run*: not reached within the session's budget (the cache `dims.json` lets a later run fill it in).",
        "",
        "Methods: " + "; ".join(f"**{NAMES[m]}**" for m in METHODS) + ". trajinfer: `tj.fit(adata, \"time\", method=\"eam\", "
        "use_rep=...)` with nothing else set (1500 iterations, lr 1e-2, hidden (128, 128, 128), mixture path with "
        "`smoothing=\"auto\"`, `sigma=\"auto\"`); the OT row adds `interpolation=\"ot\"`. OT-CFM: `benchmarks/peers` "
        "(torchcfm's tutorial settings, 2000 iterations as in eb.py). MIOFlow: its defaults, 100 epochs. moscot 0.5.2: "
        "`TemporalProblem(adata).prepare(time_key=\"time\", joint_attr=\"X_pca\").solve()` (defaults; `joint_attr` names the "
        "representation every method sees) in its own virtualenv; its held-out prediction interpolates *training* cells of "
        "h−1 and h+1 paired by its plan (as `atlas.md`), the others push *test* cells of h−1; the row *OT interpolation of "
        "training cells* does the same with the exact OT plan and no model. " + PEERS_NOTE + " " + OTPFM_NOTE,
        "",
    ]
    headlines = (("eb", "loo", "Embryoid body, leave one out"), ("dyngen", "loo", "dyngen, leave one out"),
                 ("sde", "loo", "Synthetic SDE, leave one out"), ("eb", "onestep", "Embryoid body, one step"))
    for metric, metric_name in METRICS.items():
        for dataset, protocol, title in headlines:
            gaps = _gap_summary(payload, dataset, protocol, metric)
            reps = [r for r in REPRESENTATIONS[dataset] if any(g.get(r) is not None for g in gaps.values())]
            if not reps:
                continue
            parts += [f"## {title}: gap closed per representation ({metric_name})", ""]
            if metric != "w1":
                parts += [ENERGY_NOTE, ""]
            rows = [[NAMES[m], *[C.fmt(gaps[m].get(r), 2) if gaps[m].get(r) is not None else "not run" for r in reps]]
                    for m in METHODS if m in gaps and not (m == "moscot" and protocol != "loo")
                    and (any(gaps[m].get(r) is not None for r in reps) or (metric == "w1" and m != "tj_ode"))]
            parts += [C.md_table(["method", *reps], rows), ""]
            if any(g == "n/a" for m in gaps.values() for g in m.values()):
                parts += ["n/a: the finite-sample floor is at or above not moving there (no gap to close).", ""]
    for dataset, protocol, title in (("eb", "loo", "Embryoid body (NLSB val → test), leave one time point out"),
                                     ("dyngen", "loo", "dyngen bifurcation, leave one time bin out"),
                                     ("sde", "loo", "Synthetic branching SDE in noise dimensions, leave one time point out"),
                                     ("eb", "onestep", "Embryoid body, one step ahead (all labels fitted)")):
        for metric, metric_name in METRICS.items():
            header, rows = _rows(payload, dataset, protocol, metric)
            if metric != "w1":  # the energy distance only where an entry has it
                rows = [r for r in rows if any(c not in ("not run", "") for c in r[2:-4])]
                if not any(not r[1].startswith(("no move", "floor", "OT interpolation")) for r in rows):
                    continue
            if not rows:
                parts += [f"## {title}", "", "not run", ""]
                continue
            parts += [f"## {title}" + ("" if metric == "w1" else f" ({metric_name})"), ""]
            notes = sorted({v for k, v in payload["baselines"].items() if k.startswith(f"{dataset}|") and k.endswith("|note") and v})
            if notes and metric == "w1":
                parts += ["Data: " + " / ".join(notes), ""]
            parts += [C.md_table(header, rows), ""]
    drift_rows = []
    for rep in REPRESENTATIONS["sde"]:
        for method in TRAJINFER:
            recs = [payload["entries"].get(entry_key("sde", rep, "loo", method, h)) for h in (1, 2, 3)]
            if any(r is None or "drift_rel_error" not in r for r in recs):
                continue
            drift_rows.append([rep, NAMES[method], *[C.fmt(r["drift_rel_error"]) for r in recs],
                               C.fmt(np.mean([r["drift_rel_error"] for r in recs])),
                               C.fmt(np.mean([r["drift_rel_error_all_times"] for r in recs])), C.fmt(recs[0]["sigma"])])
    if drift_rows:
        parts += ["## Synthetic SDE: drift error of trajinfer", "",
                  f"Relative RMS error |v̂ − b| / |b| of the fitted drift against the true drift b on the test cells of the held-out "
                  f"time h (and, last column, on the test cells of all five times), per leave-one-out fit. True σ = {SDE_SIGMA}; "
                  "`sigma=\"auto\"` as fitted (last column; the drift is identified only with the true σ).", "",
                  C.md_table(["representation", "method", "h=1", "h=2", "h=3", "mean", "all times (mean over fits)", "σ fitted"],
                             drift_rows), ""]
    warn_rows = []
    for key, rec in payload["entries"].items():
        ds, rep, protocol, method, h = key.split("|")
        if method in TRAJINFER and "diagnostics" in rec:
            d = rec["diagnostics"]
            warn_rows.append([f"{ds} {rep} {protocol} h={h}", NAMES[method], C.fmt(rec.get("sigma")), C.fmt(d.get("gradient_signal"), 2),
                              C.fmt(d.get("kinetic_ratio"), 2), C.fmt(d.get("transport_ratio"), 2),
                              "; ".join(w.split(":", 1)[1].strip()[:120] for w in rec.get("warnings", [])) or "none"])
    if warn_rows:
        parts += ["## trajinfer fit diagnostics (`model.diagnostics_`)", "",
                  "Gradient signal over the last tenth of the fit (about 1: noise around a minimum), kinetic ratio (learned ½E|v|² "
                  "over the data's reference), transport ratio (W1 of the first training snapshot pushed to the last over not "
                  "moving), and the fit's FitWarnings.", "",
                  C.md_table(["fit", "method", "σ", "gradient signal", "kinetic ratio", "transport ratio", "warnings"], warn_rows), ""]
    if payload.get("observations"):
        parts += ["## What this shows", "", payload["observations"], ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds: synthetic data only, tiny budgets (smoke test)")
    parser.add_argument("--out", type=Path, default=C.RESULTS)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--only", action="append", default=None, metavar="DATASETS:REPS:METHODS:PROTOCOLS",
                        help="filter (repeatable; comma-separated lists, empty or * for all), e.g. eb:std5,raw50:tj,otcfm:loo")
    parser.add_argument("--stage", type=int, action="append", default=None, help="priority stage(s) 1..6 (see STAGES)")
    parser.add_argument("--repeats", type=int, default=None, help="stochastic pushes of trajinfer (full 100, quick 2)")
    parser.add_argument("--moscot-draws", type=int, default=None, help="draws of pairs from moscot's plan (full 20)")
    parser.add_argument("--moscot-python", default=MOSCOT_PYTHON)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rescore", action="store_true",
                        help="rerun the filtered entries cached without every metric (before the energy distance)")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite dims.md from the cache in --out")
    parser.add_argument("--observations", type=Path, default=None, help="a text file: the 'what this shows' paragraph")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.repeats = args.repeats or (2 if args.quick else 100)
    args.moscot_draws = args.moscot_draws or (2 if args.quick else 20)
    only = list(args.only or [])
    for s in args.stage or []:
        only += STAGES[s]
    if args.quick and not only:
        only = ["sde:noise10:tj,otcfm:loo"]
    args.only = only or ["*"]
    path = args.out / "dims.json"
    payload: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"entries": {}, "baselines": {}, "runs": []}
    payload.setdefault("config", {})["moscot_draws"] = args.moscot_draws
    if args.observations:
        payload["observations"] = args.observations.read_text().strip()
    if args.markdown_only:
        save(payload, args.out)
        return payload
    payload["runs"].append(C.provenance({"mode": "quick" if args.quick else "full", "filters": args.only, "repeats": args.repeats},
                                        argv, f"benchmarks/{Path(__file__).name}"))
    run_sweep(args, payload, args.out)
    save(payload, args.out)
    return payload


if __name__ == "__main__":
    main()
