"""Atlas scale end to end: the whole AnnData workflow at defaults on 10^4 to 10^6 cells.

Data: :func:`trajinfer.datasets.synthetic_atlas` (20 time points with unequal numbers of cells,
a trunk splitting twice into three lineages, one of them growing, embedded in 50 principal
components; 200 genes). Its ground truth gives each cell's lineage end (``obs["fate"]``) and
true velocity (``obsm["velocity_true"]``).

For each size a fresh process runs, with one CPU thread and each function at its defaults:

- ``generate``: ``synthetic_atlas(n)``;
- ``fit``: ``tj.fit(adata, time_key="time")`` (velocities in ``obsm``);
- ``simulate``: ``tj.tl.simulate`` of the cells of the first time point to the last;
- ``fate``: ``tj.tl.fate`` from the first time point to the last, clusters = the true branches
  at the last time point;
- ``transition_matrix`` and ``cellrank_kernel`` (CellRank's ``PrecomputedKernel``; skipped
  when CellRank is not installed);
- ``holdout``: ``tj.tl.holdout`` with the middle time point held out (a second fit);
- ``plot_trajectories``, ``plot_loss``: ``tj.pl.trajectories`` and ``tj.pl.loss``, saved as PNG.

Each stage records wall and CPU seconds and its peak memory: the peak resident set size
during the stage (the kernel's high-water mark, reset before the stage, and a 20 ms poll)
minus the resident size before it. Accuracy against the truth: W1 at the held-out time point
(``tj.tl.holdout``: 2,000 cells a side) beside not moving, the fitted interpolation and the
finite-sample floor; fate AUROC of ``tl.fate``'s probabilities against each first-time-point
cell's true lineage end (one class against the rest, per fate), beside the Bayes-optimal
AUROC from the true latent state; the velocities' cosine similarity with the true ones.

moscot side by side (``--moscot-python``, a Python with moscot installed, e.g. a separate
virtualenv): ``TemporalProblem`` at its defaults (``prepare(time_key="time")``, ``solve()``)
on the same atlas saved to h5ad, once without the held-out time point (its plan between the
neighbours, sampled and interpolated halfway, predicts the held-out cells) and once on all time
points (``pull`` of each true branch from the last time point to the first gives the fate
probabilities), then CellRank's ``RealTimeKernel.from_moscot`` on that problem at its defaults
and GPCCA's fate probabilities towards the true branches of the last time point (when CellRank
imports there).

Usage::

    python benchmarks/atlas.py --quick --out /tmp/atlas           # seconds: smoke run
    python benchmarks/atlas.py --moscot-python /tmp/moscot-venv/bin/python
    python benchmarks/atlas.py --sizes 10000,100000,1000000 --moscot-sizes 10000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

STAGES = (
    "generate", "fit", "simulate", "fate", "transition_matrix", "cellrank_kernel", "holdout", "plot_trajectories", "plot_loss",
)
MOSCOT_STAGES = (
    "read_h5ad", "prepare_holdout", "solve_holdout", "interpolate", "prepare_all", "solve_all", "pull_fates", "realtime_kernel",
    "cellrank_fates",
)
SIZES = (10_000, 100_000)
QUICK_SIZES = (1_500,)
#: Fit settings of the quick mode (the full run uses tj.fit's defaults).
QUICK_FIT = {"n_iter": 10, "hidden_dims": (32, 32)}
HELD_OUT = 10.0
FIRST, LAST = 0.0, 19.0
EVAL_CELLS = 2000  # cells a side in every W1 (as tl.holdout)
SEED = 0


def stage(record: dict[str, Any], name: str, fn):
    """Run ``fn`` as stage ``name``: seconds, CPU seconds and peak memory in ``record[name]``."""
    rec: dict[str, Any] = {}
    before = C.current_rss_mb()
    reset = C.reset_peak()
    out = None
    try:
        with C.measure(rec, "stage"):
            out = fn()
    except Exception as err:  # a failing stage is a result: record it and go on
        rec["error"] = f"{type(err).__name__}: {err}"[:500]
    hwm = C.high_water_mb() if reset else None
    peak = max(rec["stage_peak_rss_mb"], hwm if hwm is not None else 0.0)
    record[name] = {
        "seconds": rec["stage_seconds"], "cpu_seconds": rec["stage_cpu_seconds"], "peak_increase_mb": peak - before,
        "rss_before_mb": before, "rss_after_mb": C.current_rss_mb(), **({"error": rec["error"]} if "error" in rec else {}),
    }
    print(f"  {name}: {rec['stage_seconds']:.1f} s, +{peak - before:.0f} MB" + (f"  ERROR {rec['error']}" if "error" in rec else ""),
          file=sys.stderr, flush=True)
    return out


# ----------------------------------------------------------------------------- accuracy helpers
def _subsample(X: np.ndarray, rng: np.random.Generator, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    if len(X) <= EVAL_CELLS:
        return X, weights
    pick = rng.choice(len(X), EVAL_CELLS, replace=False)
    return X[pick], None if weights is None else weights[pick]


def fate_aurocs(probabilities: np.ndarray, classes: list[str], truth: np.ndarray) -> dict[str, float]:
    """One-vs-rest AUROC of each fate's probability against the true lineage ends, and their mean."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for j, name in enumerate(classes):
        positive = truth == name
        out[name] = float(roc_auc_score(positive, probabilities[:, j])) if 0 < positive.sum() < len(truth) else float("nan")
    out["mean"] = float(np.nanmean([out[c] for c in classes]))
    return out


def truth_baselines(adata) -> dict[str, Any]:
    """Accuracy any method is measured against: the W1 floor at the held-out time, the oracle fate AUROC."""
    import trajinfer as tj
    from trajinfer.datasets._atlas import ATLAS_FATES, fate_posterior

    rng = np.random.default_rng(SEED + 1)
    times = adata.obs["time"].to_numpy()
    held = adata.obsm["X_pca"][times == HELD_OUT]
    halves = rng.permutation(len(held))
    a, _ = _subsample(held[halves[: len(held) // 2]], rng)
    b, _ = _subsample(held[halves[len(held) // 2 :]], rng)
    first = times == FIRST
    oracle = fate_posterior(adata.obsm["latent"][first], times[first], int(adata.uns["atlas"]["n_times"]))
    return {
        "w1_floor_half_vs_half": tj.metrics.w1(a, b),
        "fate_auroc_oracle": fate_aurocs(oracle, list(ATLAS_FATES), adata.obs["fate"].astype(str).to_numpy()[first]),
    }


# ----------------------------------------------------------------------------- one size, trajinfer
def run_size(n: int, quick: bool, out_dir: Path) -> dict[str, Any]:
    """Every stage of the workflow on ``n`` cells; runs in its own process (see ``--worker``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import trajinfer as tj

    torch.set_num_threads(1)
    fit_params: dict[str, Any] = dict(QUICK_FIT) if quick else {}
    stages: dict[str, Any] = {}
    rec: dict[str, Any] = {"cells": n, "stages": stages, "fit_params": {k: list(v) if isinstance(v, tuple) else v for k, v in fit_params.items()}}
    print(f"{n:,} cells", file=sys.stderr, flush=True)

    adata = stage(stages, "generate", lambda: tj.datasets.synthetic_atlas(n, seed=SEED))
    rec["cells_per_time"] = adata.uns["atlas"]["cells_per_time"]
    rec["truth"] = truth_baselines(adata)
    model = stage(stages, "fit", lambda: tj.fit(adata, time_key="time", progress=False, **fit_params))
    if model is None:
        return rec
    rec["fit"] = {"n_iter": model.n_iter_, "sigma": tj.tl.fit_record(model).sigma, "hidden_dims": list(model.hidden_dims_),
                  "warnings": list(model.diagnostics_["warnings"]), "gradient_signal": model.diagnostics_["gradient_signal"],
                  "transport_ratio": model.diagnostics_.get("transport_ratio"),
                  "written": sorted([f"obsm/{k}" for k in adata.obsm] + [f"layers/{k}" for k in adata.layers])}
    accuracy: dict[str, Any] = {}
    rec["accuracy"] = accuracy
    velocity, true_velocity = adata.obsm["tj_velocity"], adata.obsm["velocity_true"]
    cosine = np.sum(velocity * true_velocity, axis=1) / (np.linalg.norm(velocity, axis=1) * np.linalg.norm(true_velocity, axis=1) + 1e-12)
    accuracy["velocity_cosine_median"] = float(np.median(cosine))
    accuracy["velocity_relative_error_median"] = float(np.median(
        np.linalg.norm(velocity - true_velocity, axis=1) / (np.linalg.norm(true_velocity, axis=1) + 1e-12)))

    traj = stage(stages, "simulate", lambda: tj.tl.simulate(adata, model, from_time=FIRST))
    times = adata.obs["time"].to_numpy()
    rng = np.random.default_rng(SEED)
    if traj is not None:
        end, weights = _subsample(traj.X[-1], rng, traj.weights[-1])
        last, _ = _subsample(adata.obsm["X_pca"][times == LAST], rng)
        accuracy["simulate_w1_to_last"] = tj.metrics.w1(end, last, wa=weights)
        accuracy["no_move_w1_first_to_last"] = tj.metrics.w1(_subsample(adata.obsm["X_pca"][times == FIRST], rng)[0], last)

    fates = stage(stages, "fate", lambda: tj.tl.fate(adata, model, from_time=FIRST, to_time=LAST, cluster_key="branch"))
    if fates is not None:
        first = times == FIRST
        truth = adata.obs["fate"].astype(str).to_numpy()[first]
        probabilities = fates.probabilities.reindex(adata.obs_names[first])
        classes = [str(c) for c in probabilities.columns]
        accuracy["fate_auroc"] = fate_aurocs(probabilities.to_numpy(), classes, truth)
        accuracy["fate_off_support_fraction"] = fates.off_support_fraction

    stage(stages, "transition_matrix", lambda: tj.tl.transition_matrix(adata, model))
    if importlib.util.find_spec("cellrank") is not None:
        stage(stages, "cellrank_kernel", lambda: tj.tl.cellrank_kernel(adata))  # CellRank's import included
    else:
        stages["cellrank_kernel"] = {"skipped": "cellrank is not installed"}

    table = stage(stages, "holdout", lambda: tj.tl.holdout(adata, "time", held_out=[HELD_OUT], seed=SEED, progress=False, **fit_params))
    if table is not None:
        row = table.iloc[0]
        accuracy["holdout"] = {key: row[key] for key in ("w1_model", "w1_no_move", "w1_interpolation", "n_cells", "gradient_signal", "fit_warnings")}

    def plot_trajectories() -> None:
        ax = tj.pl.trajectories(adata, traj)
        ax.figure.savefig(out_dir / f"trajectories_{n}.png", dpi=80)
        plt.close(ax.figure)

    def plot_loss() -> None:
        ax = tj.pl.loss(model)
        ax.figure.savefig(out_dir / f"loss_{n}.png", dpi=80)
        plt.close(ax.figure)

    if traj is not None:
        stage(stages, "plot_trajectories", plot_trajectories)
    stage(stages, "plot_loss", plot_loss)
    rec["peak_rss_mb"] = C.rss_peak_mb()
    return rec


# ----------------------------------------------------------------------------- moscot
MOSCOT_SCRIPT = r'''
import json, os, re, sys, threading, time
from pathlib import Path
import numpy as np

def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def hwm():
    m = re.search(r"^VmHWM:\s+(\d+)", Path("/proc/self/status").read_text(), re.MULTILINE)
    return float(m.group(1)) / 1024.0

def stage(stages, name, fn):
    before = rss()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    peak, stop = [before], threading.Event()
    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], rss()); stop.wait(0.02)
    thread = threading.Thread(target=poll, daemon=True); thread.start()
    start, cpu = time.perf_counter(), time.process_time()
    out, error = None, None
    try:
        out = fn()
    except Exception as err:
        error = f"{type(err).__name__}: {err}"[:500]
    stop.set(); thread.join()
    top = max(peak[0], hwm())
    stages[name] = {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                    "peak_increase_mb": top - before, "rss_before_mb": before, "rss_after_mb": rss()}
    if error:
        stages[name]["error"] = error
    print(f"  moscot {name}: {stages[name]['seconds']:.1f} s, +{top - before:.0f} MB" + (f" ERROR {error}" if error else ""), file=sys.stderr, flush=True)
    return out

h5ad, out_npz, held, first, last, n_eval, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
stages = {}
result = {"stages": stages}
import anndata as ad
import moscot
from moscot.problems.time import TemporalProblem
result["moscot_version"] = moscot.__version__
import jax
result["jax_version"], result["jax_devices"] = jax.__version__, [str(d) for d in jax.devices()]
adata = stage(stages, "read_h5ad", lambda: ad.read_h5ad(h5ad))
arrays = {}
times = adata.obs["time"].to_numpy()
order = np.unique(times)
prev, nxt = order[order < held].max(), order[order > held].min()
sub = adata[times != held].copy()
problem = stage(stages, "prepare_holdout", lambda: TemporalProblem(sub).prepare(time_key="time"))
if problem is not None:
    problem = stage(stages, "solve_holdout", lambda: problem.solve())
if problem is not None:
    def interpolate():
        plan = np.asarray(problem.solutions[(prev, nxt)].transport_matrix, dtype=np.float64)
        p = plan.ravel() / plan.sum()
        rng = np.random.default_rng(seed)
        pairs = rng.choice(p.size, size=n_eval, p=p)
        i, j = np.divmod(pairs, plan.shape[1])
        X = sub.obsm["X_pca"]
        stimes = sub.obs["time"].to_numpy()
        a, b = X[stimes == prev][i], X[stimes == nxt][j]
        lam = (held - prev) / (nxt - prev)
        return (1 - lam) * a + lam * b
    arrays["interpolated"] = stage(stages, "interpolate", interpolate)
    result["holdout_solver"] = {str(k): {"converged": bool(getattr(v, "converged", True)), "cost": float(getattr(v, "cost", float("nan")))}
                                for k, v in problem.solutions.items() if k == (prev, nxt)}
del problem, sub
if os.environ.get("ATLAS_MOSCOT_FATES", "1") == "1":
    full = stage(stages, "prepare_all", lambda: TemporalProblem(adata).prepare(time_key="time"))
    if full is not None:
        full = stage(stages, "solve_all", lambda: full.solve())
    if full is not None:
        classes = [c for c in adata.obs["branch"].cat.categories if ((adata.obs["branch"] == c) & (times == last)).any()]
        def pull_fates():
            cols = []
            for c in classes:
                res = full.pull(source=first, target=last, data="branch", subset=c, key_added=None)
                cols.append(np.asarray(res[first] if isinstance(res, dict) else res).ravel())
            mass = np.stack(cols, axis=1)
            return mass / np.maximum(mass.sum(axis=1, keepdims=True), 1e-300)
        probs = stage(stages, "pull_fates", pull_fates)
        if probs is not None:
            arrays["fate_probabilities"] = probs
            arrays["fate_cells"] = np.asarray(adata.obs_names[times == first]).astype(str)
            result["fate_classes"] = classes
        result["solver"] = {"n_problems": len(full.solutions),
                            "not_converged": [str(k) for k, v in full.solutions.items() if not bool(getattr(v, "converged", True))]}
        if os.environ.get("ATLAS_CELLRANK", "1") == "1":
            try:
                import cellrank as cr
                from cellrank.kernels import RealTimeKernel
                result["cellrank_version"] = cr.__version__
            except ImportError as err:
                result["cellrank_error"] = f"{type(err).__name__}: {err}"
            else:
                def realtime_kernel():
                    kernel = RealTimeKernel.from_moscot(full)  # its defaults: threshold "auto", self transitions "connectivities"
                    kernel.compute_transition_matrix()
                    return kernel
                kernel = stage(stages, "realtime_kernel", realtime_kernel)
                if kernel is not None:
                    def cellrank_fates():
                        estimator = cr.estimators.GPCCA(kernel)
                        ends = {c: list(adata.obs_names[(adata.obs["branch"] == c).to_numpy() & (times == last)]) for c in classes}
                        estimator.set_terminal_states(ends)
                        estimator.compute_fate_probabilities()
                        fp = estimator.fate_probabilities
                        names = list(fp.names)
                        probs = np.asarray(fp)[times == first]
                        return probs[:, [names.index(c) for c in classes]]
                    cr_probs = stage(stages, "cellrank_fates", cellrank_fates)
                    if cr_probs is not None:
                        arrays["cellrank_fate_probabilities"] = cr_probs
                        arrays["fate_cells"] = np.asarray(adata.obs_names[times == first]).astype(str)
                        result["fate_classes"] = classes
np.savez(out_npz, **{k: v for k, v in arrays.items() if v is not None})
print(json.dumps(result))
'''


def write_moscot_input(n: int, path: Path) -> None:
    """The atlas of ``n`` cells as h5ad, for the moscot process."""
    import trajinfer as tj

    adata = tj.datasets.synthetic_atlas(n, seed=SEED)
    del adata.obsm["velocity_true"], adata.obsm["latent"]
    adata.write_h5ad(path)


def run_moscot(n: int, python: str, timeout: float, fates: bool) -> dict[str, Any]:
    """moscot's TemporalProblem on the atlas of ``n`` cells in ``python``'s environment; its accuracy scored here."""
    import trajinfer as tj
    from trajinfer.datasets._atlas import ATLAS_FATES

    rec: dict[str, Any] = {"cells": n}
    with tempfile.TemporaryDirectory(prefix="atlas_moscot_") as tmp:
        h5ad, npz, script = Path(tmp) / "atlas.h5ad", Path(tmp) / "out.npz", Path(tmp) / "moscot_atlas.py"
        write_moscot_input(n, h5ad)
        script.write_text(MOSCOT_SCRIPT)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1", "ATLAS_MOSCOT_FATES": "1" if fates else "0"}
        start = time.perf_counter()
        try:
            run = subprocess.run([python, str(script), str(h5ad), str(npz), str(HELD_OUT), str(FIRST), str(LAST), str(EVAL_CELLS), str(SEED)],
                                 capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            rec["error"] = f"timed out after {timeout:.0f} s"
            text = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            rec["stages_finished_before_timeout"] = [line.strip() for line in text.splitlines() if line.strip().startswith("moscot ")]
            return rec
        rec["wall_seconds"] = time.perf_counter() - start
        sys.stderr.write(run.stderr[-3000:] if run.returncode else "".join(line + "\n" for line in run.stderr.splitlines() if "moscot " in line))
        if run.returncode != 0:
            rec["error"] = (run.stderr.strip().splitlines() or ["failed"])[-1][:500]
            rec["returncode"] = run.returncode
            return rec
        rec.update(json.loads(run.stdout.strip().splitlines()[-1]))
        arrays = dict(np.load(npz, allow_pickle=False)) if npz.exists() else {}
    adata = tj.datasets.synthetic_atlas(n, seed=SEED)
    times = adata.obs["time"].to_numpy()
    accuracy: dict[str, Any] = {}
    rec["accuracy"] = accuracy
    if "interpolated" in arrays:
        held, _ = _subsample(adata.obsm["X_pca"][times == HELD_OUT], np.random.default_rng(SEED))
        accuracy["holdout_w1"] = tj.metrics.w1(arrays["interpolated"], held)
    truth = adata.obs["fate"].astype(str)
    for key, name in (("fate_probabilities", "fate_auroc"), ("cellrank_fate_probabilities", "cellrank_fate_auroc")):
        if key in arrays:
            cells = arrays["fate_cells"]
            accuracy[name] = fate_aurocs(arrays[key], rec["fate_classes"], truth.loc[cells].to_numpy())
            assert set(rec["fate_classes"]) <= set(ATLAS_FATES)
    return rec


def moscot_status(python: str | None) -> dict[str, Any]:
    if python is None:
        return {"status": "not run: pass --moscot-python (a Python with moscot installed, e.g. a separate virtualenv)"}
    probe = subprocess.run([python, "-c", "import moscot, jax, ott; print(moscot.__version__, jax.__version__, ott.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return {"status": f"not run: moscot does not import in {python}: {(probe.stderr.strip().splitlines() or ['?'])[-1]}"}
    moscot_v, jax_v, ott_v = probe.stdout.split()
    return {"status": "ok", "python": python, "moscot": moscot_v, "jax": jax_v, "ott-jax": ott_v}


# ----------------------------------------------------------------------------- reporting
def _mb(x: float | None) -> str:
    return C.fmt(x, 0) if x is not None else "–"


def _cell(s: dict[str, Any] | None) -> str:
    if s is None:
        return "not run"
    if "skipped" in s:
        return "skipped"
    if s.get("note"):
        return f"{s['seconds']:.1f} s / {max(s['peak_increase_mb'], 0):.0f} MB ({s['note']})"
    text = f"{s['seconds']:.1f} s / {max(s['peak_increase_mb'], 0):.0f} MB"
    return text + (" **failed**" if "error" in s else "")


def write_markdown(result: dict[str, Any], path: Path) -> None:
    prov = result["provenance"]
    sizes = [r for r in result["sizes"] if "error" not in r]
    lines = [
        "# Atlas scale end to end", "", C.provenance_md(prov), "",
        "Data: `tj.datasets.synthetic_atlas(n, seed=0)`: 20 time points with unequal numbers of cells, a trunk that splits "
        "twice into three lineages (A, B1, B2; B2 grows fourfold), embedded nonlinearly in 50 PCs, 200 genes. Every "
        "function runs at its defaults" + (" (except the quick mode's short fit)" if result["config"]["quick"] else "")
        + "; one fresh process per size, one CPU thread. Each cell: wall seconds / peak memory of the stage (peak resident "
        "set size during the stage minus the resident size before it; the process's own size is in atlas.json).", "",
        "## Cost per stage", "",
    ]
    header = ["stage"] + [f"{r['cells']:,} cells" for r in result["sizes"]]
    rows = []
    def size_cell(r: dict[str, Any], name: str) -> str:
        if "error" not in r:
            return _cell(r["stages"].get(name))
        if name in r.get("stages", {}):
            return _cell(r["stages"][name])
        return "**killed** (see Failures)" if name == r.get("failed_stage") else ("not reached" if r.get("stages") else "error: " + r["error"])

    for name in STAGES:
        rows.append([f"trajinfer `{name}`"] + [size_cell(r, name) for r in result["sizes"]])
    rows.append(["trajinfer, all stages: wall / CPU seconds (plots aside) / peak RSS"] + [
        "–" if "error" in r else f"{_total(r['stages'], 'seconds'):.0f} s / {_total(r['stages'], 'cpu_seconds'):.0f} s CPU "
        f"({_total(r['stages'], 'seconds', plots=False):.0f} s / {_total(r['stages'], 'cpu_seconds', plots=False):.0f} s CPU) "
        f"/ {r.get('peak_rss_mb', 0):.0f} MB"
        for r in result["sizes"]])
    moscot = result["moscot"]
    by_n = {m["cells"]: m for m in moscot.get("sizes", [])}
    if by_n:
        for name in MOSCOT_STAGES:
            rows.append([f"moscot `{name}`"] + [
                _cell(by_n[r["cells"]].get("stages", {}).get(name)) if r["cells"] in by_n and "error" not in by_n[r["cells"]] else
                (f"error: {by_n[r['cells']]['error']}" if r["cells"] in by_n else "not run") for r in result["sizes"]])
        rows.append(["moscot, all stages: wall / CPU seconds"] + [
            f"{_total(by_n[r['cells']]['stages'], 'seconds'):.0f} s / {_total(by_n[r['cells']]['stages'], 'cpu_seconds'):.0f} s CPU"
            if r["cells"] in by_n and "error" not in by_n[r["cells"]] else "–" for r in result["sizes"]])
    lines += [C.md_table(header, rows), ""]
    errors = [(r["cells"], name, s["error"]) for r in sizes for name, s in r["stages"].items() if "error" in s]
    errors += [(r["cells"], r.get("failed_stage", "worker"), r["error"]) for r in result["sizes"] if "error" in r]
    errors += [(m["cells"], f"moscot {name}", s["error"]) for m in moscot.get("sizes", []) for name, s in m.get("stages", {}).items() if "error" in s]
    if errors:
        lines += ["Failures:", ""] + [f"- {n:,} cells, `{name}`: {err}" for n, name, err in errors] + [""]
    skipped = {s["skipped"] for r in sizes for s in r["stages"].values() if "skipped" in s}
    if skipped:
        lines += [f"Skipped: `cellrank_kernel` ({', '.join(sorted(skipped))}).", ""]

    lines += ["## Accuracy against the generator's truth", "",
              f"Held-out W1: time point {HELD_OUT:g} left out of the fit, the cells of {HELD_OUT - 1:g} pushed to it and compared "
              f"with its observed cells by W1 in `X_pca` (50 dims; {EVAL_CELLS:,} cells a side). Fate AUROC: the probability of each "
              f"lineage end for the cells of the first time point, one against the rest, against their true lineage end, mean over "
              "A, B1, B2 (per fate in atlas.json). trajinfer: `tl.holdout` and `tl.fate` (clusters = true branches at the last time "
              "point); moscot: its plan between the neighbours of the held-out time sampled and interpolated halfway, and `pull` of "
              "each branch from the last time point to the first.", ""]
    acc_header = ["method"] + [f"{r['cells']:,}: held-out W1" for r in sizes] + [f"{r['cells']:,}: fate AUROC" for r in sizes]
    acc_rows = [["trajinfer (defaults)"]
                + [C.fmt(r.get("accuracy", {}).get("holdout", {}).get("w1_model")) for r in sizes]
                + [C.fmt(r.get("accuracy", {}).get("fate_auroc", {}).get("mean")) for r in sizes]]
    if by_n:
        acc_rows.append(["moscot TemporalProblem (defaults)"]
                        + [C.fmt(by_n.get(r["cells"], {}).get("accuracy", {}).get("holdout_w1")) for r in sizes]
                        + [C.fmt(by_n.get(r["cells"], {}).get("accuracy", {}).get("fate_auroc", {}).get("mean")) for r in sizes])
        acc_rows.append(["CellRank `RealTimeKernel.from_moscot` (defaults), GPCCA fate probabilities"] + ["" for _ in sizes]
                        + [C.fmt(by_n.get(r["cells"], {}).get("accuracy", {}).get("cellrank_fate_auroc", {}).get("mean")) for r in sizes])
    acc_rows += [
        ["trajinfer's fitted interpolation (path between the neighbours)"] + [C.fmt(r.get("accuracy", {}).get("holdout", {}).get("w1_interpolation")) for r in sizes] + ["" for _ in sizes],
        ["no move (cells of the previous time point)"] + [C.fmt(r.get("accuracy", {}).get("holdout", {}).get("w1_no_move")) for r in sizes] + ["" for _ in sizes],
        ["finite-sample floor (half vs half of the held-out cells)"] + [C.fmt(r["truth"]["w1_floor_half_vs_half"]) for r in sizes] + ["" for _ in sizes],
        ["oracle (Bayes posterior from the true latent state)"] + ["" for _ in sizes] + [C.fmt(r["truth"]["fate_auroc_oracle"]["mean"]) for r in sizes],
    ]
    lines += [C.md_table(acc_header, acc_rows), ""]
    held = [f"{r['accuracy']['holdout']['n_cells']:,} at {r['cells']:,}" for r in sizes if "holdout" in r.get("accuracy", {})]
    if held:
        lines += [f"The held-out time point holds {', '.join(held)} cells. The floor compares two halves of them (at most "
                  f"{EVAL_CELLS:,} cells each): below {2 * EVAL_CELLS:,} cells its samples are smaller than the methods' and it sits "
                  "above the floor of their comparisons. W1 in 50 dimensions is dominated by the 42 noise components, so "
                  "differences between methods are small against the values themselves.", ""]
    vel = [f"{r['cells']:,} cells: median cosine {r['accuracy']['velocity_cosine_median']:.3f}, median relative error "
           f"{r['accuracy']['velocity_relative_error_median']:.2f}" for r in sizes if "velocity_cosine_median" in r.get("accuracy", {})]
    if vel:
        lines += ["Velocities (`obsm['tj_velocity']` against `obsm['velocity_true']`, all 50 dims): " + "; ".join(vel)
                  + ". The eAM drift is not the particles' velocity: the entropic model moves cells by drift plus noise.", ""]
    warnings = [f"{r['cells']:,} cells: " + " | ".join(r["fit"]["warnings"]) for r in sizes if r.get("fit", {}).get("warnings")]
    if warnings:
        lines += ["Fit warnings (`model.diagnostics_`): " + "; ".join(warnings), ""]
    lines += ["## moscot", "", _moscot_md(moscot), ""]
    if result.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in result["notes"]] + [""]
    for run in result.get("appended_runs", []):
        lines += [f"Sizes {', '.join(f'{n:,}' for n in run['sizes'])} were added by a second run: " + C.provenance_md(run["provenance"])
                  + f" Wall time {run['total_wall_s']:.0f} s.", ""]
    lines += ["Figure: `atlas.png`.", f"Total wall time {result['total_wall_s']:.0f} s.", ""]
    C.write_text(path, "\n".join(lines))


def _total(stages: dict[str, Any], what: str, plots: bool = True) -> float:
    """Sum of ``what`` (``"seconds"`` or ``"cpu_seconds"``) over the stages (without the plots when ``plots`` is False)."""
    return sum(s.get(what, 0.0) for name, s in stages.items() if plots or not name.startswith("plot_"))


def _moscot_md(moscot: dict[str, Any]) -> str:
    if moscot.get("status") != "ok":
        return moscot.get("status", "not run")
    text = (f"moscot {moscot['moscot']} (jax {moscot['jax']}, ott-jax {moscot['ott-jax']}, CPU) in a separate virtualenv "
            f"(`{moscot['python']}`), `TemporalProblem(adata).prepare(time_key=\"time\").solve()` at its defaults "
            "(`prepare` computes its own PCA of `X`; `solve`: ε = 10⁻³, balanced, full-rank, no batch size). ")
    parts = []
    for m in moscot.get("sizes", []):
        if "error" in m:
            done = m.get("stages_finished_before_timeout")
            parts.append(f"{m['cells']:,} cells: **{m['error']}**" + (f" (stages finished: {'; '.join(done)})" if done else ""))
        else:
            parts.append(f"{m['cells']:,} cells: {m['wall_seconds']:.0f} s in all (the process, imports included)"
                         + (f"; {len(m['solver']['not_converged'])} of {m['solver']['n_problems']} subproblems of the fit on all time "
                            f"points report not converged ({', '.join(m['solver']['not_converged'])})" if m.get("solver", {}).get("not_converged") else "")
                         + ".")
    return text + " ".join(parts) + (" " + moscot["skipped_sizes"] if moscot.get("skipped_sizes") else "")


def save_figure(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r for r in result["sizes"] if r.get("stages")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    cmap = plt.get_cmap("tab10")
    series = [(f"trajinfer {name}", [(r["cells"], r["stages"].get(name)) for r in sizes], cmap(i % 10), "-", "o")
              for i, name in enumerate(STAGES)]
    for name, marker in (("solve_holdout", "s"), ("solve_all", "D"), ("pull_fates", "^")):
        series.append((f"moscot {name}", [(m["cells"], m.get("stages", {}).get(name)) for m in result["moscot"].get("sizes", []) if "error" not in m],
                       "k", "--", marker))
    for label, points, color, style, marker in series:
        points = [(n, s) for n, s in points if s and "seconds" in s and "error" not in s and not s.get("note")]
        if not points:
            continue
        cells = [n for n, _ in points]
        axes[0].plot(cells, [max(s["seconds"], 1e-3) for _, s in points], linestyle=style, marker=marker, color=color, label=label)
        axes[1].plot(cells, [max(s["peak_increase_mb"], 1.0) for _, s in points], linestyle=style, marker=marker, color=color, label=label)
    for m in result["moscot"].get("sizes", []):
        found = re.match(r"timed out after (\d+)", m.get("error", ""))
        if found:
            axes[0].plot([m["cells"]], [float(found.group(1))], linestyle="none", marker="x", markersize=9, color="k",
                         label="moscot, killed at its time limit")
    for ax, ylabel, title in ((axes[0], "wall time (s)", "Time per stage"),
                              (axes[1], "peak memory of the stage (MB, RSS increase)", "Memory per stage (under 1 MB drawn at 1)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cells")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.78, 0.5), fontsize=8, frameon=False, title="stage")
    fig.suptitle("Atlas workflow at defaults, one CPU thread (synthetic_atlas, 20 time points, 50 PCs)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.78, 0.96))
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- driver
def _run_worker(n: int, quick: bool, out_dir: Path, timeout: float) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    spec = json.dumps({"n": n, "quick": quick, "out": str(out_dir)})
    try:
        run = subprocess.run([sys.executable, __file__, "--worker", spec], stdout=subprocess.PIPE, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"cells": n, "error": f"timed out after {timeout:.0f} s"}
    if run.returncode != 0:
        return {"cells": n, "error": f"worker exited with status {run.returncode} (negative: killed by that signal)"}
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny atlas and a short fit: a smoke run in seconds")
    parser.add_argument("--sizes", default=None, help="comma-separated numbers of cells (default 10000,100000)")
    parser.add_argument("--out", type=Path, default=C.RESULTS, help="output folder (default: benchmarks/results)")
    parser.add_argument("--moscot-python", default=None, help="a Python interpreter with moscot installed (default: moscot not run)")
    parser.add_argument("--moscot-sizes", default=None, help="sizes moscot runs on (default: every size up to 100000)")
    parser.add_argument("--moscot-timeout", type=float, default=1800.0, help="seconds allowed to moscot per size (default 1800)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds allowed to trajinfer's workflow per size")
    parser.add_argument("--append", action="store_true",
                        help="add this run's trajinfer sizes to the atlas.json already in --out (its moscot rows are kept)")
    parser.add_argument("--report", type=Path, default=None, help="only rewrite atlas.md and atlas.png in --out from this atlas.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.report is not None:
        result = json.loads(args.report.read_text())
        write_markdown(result, args.out / "atlas.md")
        save_figure(result, args.out / "atlas.png")
        return result
    if args.worker is not None:
        spec = json.loads(args.worker)
        print(json.dumps(C.to_jsonable(run_size(spec["n"], spec["quick"], Path(spec["out"])))))
        return {}
    import torch

    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(QUICK_SIZES if args.quick else SIZES)
    moscot_sizes = [int(s) for s in args.moscot_sizes.split(",")] if args.moscot_sizes else [n for n in sizes if n <= 100_000]
    prov = C.provenance(argv=argv, script="benchmarks/atlas.py") if argv is not None else C.provenance()
    prov["versions"].update({p: C.package_version(p) for p in ("anndata", "scanpy", "cellrank", "scikit-learn", "matplotlib")})
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result: dict[str, Any] = {
        "provenance": prov,
        "config": {"quick": args.quick, "sizes": sizes, "held_out": HELD_OUT, "fate_from": FIRST, "fate_to": LAST, "eval_cells": EVAL_CELLS,
                   "seed": SEED, "fit_params": QUICK_FIT if args.quick else "tj.fit defaults", "stages": list(STAGES)},
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="atlas_plots_") as plots:
        for n in sizes:
            rec = _run_worker(n, args.quick, Path(plots), args.timeout)
            rec["load_average_after"] = os.getloadavg()
            result["sizes"].append(rec)
    moscot = moscot_status(args.moscot_python)
    moscot["sizes"] = []
    if moscot["status"] == "ok":
        for n in moscot_sizes:
            print(f"moscot {n:,} cells", file=sys.stderr, flush=True)
            rec = run_moscot(n, args.moscot_python, args.moscot_timeout, fates=True)
            rec["load_average_after"] = os.getloadavg()
            moscot["sizes"].append(rec)
        not_run = [n for n in sizes if n not in moscot_sizes]
        if not_run:
            moscot["skipped_sizes"] = f"Not run on {', '.join(f'{n:,}' for n in not_run)} cells (--moscot-sizes)."
    result["moscot"] = moscot
    result["total_wall_s"] = time.perf_counter() - start
    result["load_average_at_end"] = os.getloadavg()
    if args.append and (args.out / "atlas.json").exists():
        earlier = json.loads((args.out / "atlas.json").read_text())
        for rec in result["sizes"]:
            rec["appended_by"] = prov["command"]
        earlier["sizes"] = sorted([r for r in earlier["sizes"] if r["cells"] not in sizes] + result["sizes"], key=lambda r: r["cells"])
        earlier.setdefault("appended_runs", []).append({"provenance": prov, "sizes": sizes, "total_wall_s": result["total_wall_s"],
                                                        "load_average_at_end": result["load_average_at_end"]})
        if moscot["sizes"]:
            earlier["moscot"] = moscot
        result = earlier
    C.write_json(args.out / "atlas.json", result)
    write_markdown(result, args.out / "atlas.md")
    save_figure(result, args.out / "atlas.png")
    return result


if __name__ == "__main__":
    main()
