"""Fate probabilities against lineage ground truth, per time bin: tl.fate, CellRank and the nearest late cells.

Two data sets with a known fate for every cell:

- MIOFlow's dyngen bifurcation (``tj.datasets.dyngen``, five time bins). Each ``simulation_i`` is
  one lineage sampled over time that ends in one branch, so a cell's true fate is the branch
  where its own simulation ends (the branch of the simulation's cells in the last bin: two
  means of the last bin in 50 PCs). ``tj.fit`` on 50 PCs (``sc.pp.pca``'s default, the
  README's workflow) and on 10 PCs.
- ``tj.datasets.synthetic_atlas`` (a trunk splitting at three tenths of the time course into
  ``A`` and ``B``, ``B`` splitting at six tenths into ``B1`` and ``B2``; ``B2`` grows fourfold),
  ten time points: ``obs["fate"]`` is each cell's lineage end. The Bayes-optimal probabilities
  from the true latent state (``fate_posterior``) give the best AUROC any method can reach.

For the cells of every time bin but the last, each method gives P(fate) per cell, scored by AUROC
against the true fate (one class against the rest, averaged over the fates of the synthetic
data) and by the Brier score (mean over cells of Σ_fates (p − 1[true])², lower is better; a
constant prediction at the fates' shares in the last bin scores the "population split" row).
Before a decision AUROC is near 0.5 for every method; what matters there is the Brier score:
probabilities near the population split (honest) score near the split's row, confident wrong
answers above it.

Methods (each reads the fates of the last bin's cells, labelled by their true branch):

- ``tl.fate`` (defaults): ``tj.tl.fate(adata, model, k, last, cluster_key=...)``.
- direct push + 10-NN vote: what ``tl.fate`` did before, the cells of bin k pushed to the last
  bin in one stochastic simulation, each labelled by a vote of its 10 nearest last-bin cells.
- CellRank on trajinfer's kernel: ``GPCCA(tj.tl.cellrank_kernel(adata, model))`` with the
  terminal states set to the last bin's cells of each branch, ``compute_fate_probabilities``
  (absorption probabilities; SciPy's solver, no PETSc).
- CellRank PseudotimeKernel: the same estimator on ``PseudotimeKernel`` with the known time
  labels as pseudotime (kNN graph of ``sc.pp.neighbors`` in the same PCs).
- nearest late cells: the fate shares of the 10 nearest last-bin cells of each cell, in the
  fitted representation (no dynamics).

Fits and pushes use ``--seeds`` on dyngen's 50 PCs and ``--extra-seeds`` on its 10 PCs and the
synthetic data (drawn with the same seed); tables show
mean ± standard deviation over seeds. The nearest late cells and the PseudotimeKernel do not
depend on the fit (on dyngen they are the same for every seed).

Usage::

    python benchmarks/fates.py --quick --out /tmp/fates
    python benchmarks/fates.py                 # benchmarks/results/fates.{json,md,png}
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

import trajinfer as tj

METHODS = ("tl.fate (defaults)", "direct push + 10-NN vote", "CellRank GPCCA on tj kernel", "CellRank PseudotimeKernel (time labels)",
           "nearest late cells (10-NN)")
ORACLE, SPLIT = "oracle (Bayes posterior from the true latent state)", "population split (constant)"


def auroc(truth: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> float:
    """AUROC of P(fate) against the true fate: one against the rest, averaged over the fates present."""
    from sklearn.metrics import roc_auc_score

    scores = [roc_auc_score(truth == c, probabilities[:, i]) for i, c in enumerate(classes) if 0 < np.sum(truth == c) < len(truth)]
    return float(np.mean(scores)) if scores else float("nan")


def brier(truth: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> float:
    onehot = truth[:, None] == np.asarray(classes)[None, :]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def dyngen_data(data: Path, n_comps: int):
    """dyngen with ``obs["fate"]``: the branch where each cell's simulation ends."""
    import scanpy as sc
    from sklearn.cluster import KMeans

    adata = tj.datasets.dyngen(data)
    sc.pp.pca(adata, n_comps=50)
    last = (adata.obs["time"] == adata.obs["time"].max()).to_numpy()
    tips = KMeans(2, n_init=10, random_state=0).fit_predict(adata.obsm["X_pca"][last])
    table = pd.crosstab(adata.obs["simulation_i"][last].to_numpy(), tips)
    assert (table.min(axis=1) == 0).all(), "a simulation reaches both branches"
    adata.obs["fate"] = pd.Categorical(adata.obs["simulation_i"].map(table.idxmax(axis=1)).map(lambda b: f"branch {b}"))
    adata.obsm["X_pca"] = adata.obsm["X_pca"][:, :n_comps]
    return adata, None


def atlas_data(n_cells: int, n_times: int, seed: int):
    from trajinfer.datasets._atlas import fate_posterior

    adata = tj.datasets.synthetic_atlas(n_cells, n_times=n_times, seed=seed)
    return adata, fate_posterior(adata.obsm["latent"], adata.obs["time"].to_numpy(), n_times)


def nearest_late(X: np.ndarray, last: np.ndarray, fates: np.ndarray, classes: list[str], k: int = 10) -> np.ndarray:
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=k).fit(X[last], fates[last])
    return pd.DataFrame(clf.predict_proba(X), columns=clf.classes_)[classes].to_numpy()


def direct_push_vote(adata, model, X, times, labels, fates, classes, seed: int) -> np.ndarray:
    """The former tl.fate: one push from each bin straight to the last, a 10-NN vote there."""
    from sklearn.neighbors import KNeighborsClassifier

    last = times == labels[-1]
    clf = KNeighborsClassifier(n_neighbors=10).fit(X[last], fates[last])
    out = np.full((len(X), len(classes)), np.nan)
    for label in labels[:-1]:
        cells = times == label
        record = tj.tl.fit_record(model)
        traj = model.simulate(X[cells], record.label_time(label), record.label_time(labels[-1]), n_steps=100, seed=seed, progress=False)
        out[cells] = pd.DataFrame(clf.predict_proba(traj.X[-1]), columns=clf.classes_)[classes].to_numpy()
    return out


def cellrank_fates(adata, kernel, times, labels, fates, classes) -> np.ndarray:
    import cellrank as cr

    cr.settings.verbosity = 0
    estimator = cr.estimators.GPCCA(kernel)
    last = times == labels[-1]
    states = {c: list(adata.obs_names[last & (fates == c)]) for c in classes}
    estimator.set_terminal_states(states)
    estimator.compute_fate_probabilities(use_petsc=False, show_progress_bar=False)
    probs = estimator.fate_probabilities
    return pd.DataFrame(np.asarray(probs), columns=list(probs.names), index=adata.obs_names)[classes].to_numpy()


def pseudotime_kernel(adata, n_comps: int):
    import cellrank as cr
    import scanpy as sc

    data = adata.copy()
    sc.pp.neighbors(data, use_rep="X_pca", n_pcs=n_comps, random_state=0)
    kernel = cr.kernels.PseudotimeKernel(data, time_key="time")
    kernel.compute_transition_matrix(show_progress_bar=False)
    return data, kernel


def run_dataset(name: str, make, seeds: list[int], fit_params: dict[str, Any]) -> dict[str, Any]:
    """Per seed: fit, every method's probabilities, AUROC and Brier per time bin."""
    runs = []
    shared: dict[str, np.ndarray] = {}
    for seed in seeds:
        adata, oracle = make(seed)
        n_comps = adata.obsm["X_pca"].shape[1]
        times = adata.obs["time"].to_numpy()
        labels = sorted(np.unique(times))
        last = times == labels[-1]
        fates = adata.obs["fate"].astype(str).to_numpy()
        classes = sorted(np.unique(fates[last]))
        start = time.perf_counter()
        model = tj.fit(adata, time_key="time", seed=seed, progress=False, **fit_params)
        fit_seconds = time.perf_counter() - start
        X = tj.tl.fit_record(model).representation(adata)
        probs: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}

        start = time.perf_counter()
        p = np.full((adata.n_obs, len(classes)), np.nan)
        for label in labels[:-1]:
            result = tj.tl.fate(adata, model, label, labels[-1], cluster_key="fate", seed=seed)
            cells = times == label
            p[cells] = result.probabilities.reindex(adata.obs_names[cells])[classes].to_numpy()
        probs[METHODS[0]], seconds[METHODS[0]] = p, time.perf_counter() - start
        start = time.perf_counter()
        probs[METHODS[1]] = direct_push_vote(adata, model, X, times, labels, fates, classes, seed)
        seconds[METHODS[1]] = time.perf_counter() - start
        start = time.perf_counter()
        probs[METHODS[2]] = cellrank_fates(adata, tj.tl.cellrank_kernel(adata, model), times, labels, fates, classes)
        seconds[METHODS[2]] = time.perf_counter() - start
        fixed = name.startswith("dyngen")  # the same cells every seed: fit-free methods computed once
        if not fixed or "pt" not in shared:
            start = time.perf_counter()
            data, kernel = pseudotime_kernel(adata, n_comps)
            shared["pt"] = cellrank_fates(data, kernel, times, labels, fates, classes)
            shared["pt_seconds"] = time.perf_counter() - start
            shared["nl"] = nearest_late(X, last, fates, classes)
        probs[METHODS[3]], seconds[METHODS[3]] = shared["pt"], shared["pt_seconds"]
        probs[METHODS[4]] = shared["nl"]
        share = np.array([np.mean(fates[last] == c) for c in classes])
        probs[SPLIT] = np.tile(share, (adata.n_obs, 1))
        if oracle is not None:
            from trajinfer.datasets._atlas import ATLAS_FATES

            probs[ORACLE] = pd.DataFrame(oracle, columns=list(ATLAS_FATES))[classes].to_numpy()
        scores = {}
        for method, p in probs.items():
            scores[method] = {}
            for label in labels[:-1]:
                cells = times == label
                scores[method][str(label)] = {
                    "auroc": auroc(fates[cells], p[cells], classes),
                    "brier": brier(fates[cells], p[cells], classes),
                    "mean_probabilities": dict(zip(classes, p[cells].mean(axis=0).tolist())),
                }
        runs.append({"seed": seed, "fit_seconds": fit_seconds, "method_seconds": seconds, "scores": scores,
                     "cells_per_bin": {str(label): int(np.sum(times == label)) for label in labels}, "classes": classes,
                     "last_bin_shares": dict(zip(classes, share.tolist()))})
        logging.getLogger("fates").info("%s seed %d: fit %.0f s, methods %s", name, seed, fit_seconds,
                                        {k: round(v, 1) for k, v in seconds.items()})
    return {"runs": runs, "summary": summarise(runs)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in runs[0]["scores"]:
        out[method] = {}
        for label in runs[0]["scores"][method]:
            entry = {}
            for metric in ("auroc", "brier"):
                values = np.array([r["scores"][method][label][metric] for r in runs])
                entry[metric] = float(values.mean())
                entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                entry[f"{metric}_min"] = float(values.min())
            out[method][label] = entry
    return out


def report(payload: dict[str, Any], out: Path) -> None:
    lines = ["# Fate probabilities against lineage ground truth, per time bin", "",
             C.provenance_md(payload["provenance"]), "", __doc__.split("\n\n", 1)[1].split("Usage::")[0].strip(), ""]
    for name, result in payload["datasets"].items():
        summary, runs = result["summary"], result["runs"]
        bins = list(next(iter(summary.values())))
        seeds = [r["seed"] for r in runs]
        lines += [f"## {name}", "", f"{payload['descriptions'][name]} Seeds {seeds}; mean ± std over seeds; "
                  f"cells per bin {runs[0]['cells_per_bin']}; fit {np.mean([r['fit_seconds'] for r in runs]):.0f} s per seed.", ""]
        for metric, title in (("auroc", "AUROC (higher is better)"), ("brier", "Brier score (lower is better)")):
            rows = [[method] + [C.pm(summary[method][b][metric], summary[method][b][f"{metric}_std"]) for b in bins] for method in summary]
            lines += [f"{title}:", "", C.md_table(["method"] + [f"bin {float(b):g}" for b in bins], rows), ""]
        rows = [[method] + [" / ".join(f"{v:.2f}" for v in runs[0]["scores"][method][b]["mean_probabilities"].values()) for b in bins]
                for method in summary]
        lines += [f"Mean probabilities per bin (seed {seeds[0]}; {' / '.join(runs[0]['classes'])}):", "",
                  C.md_table(["method"] + [f"bin {float(b):g}" for b in bins], rows), ""]
    C.write_text(out / "fates.md", "\n".join(lines))
    C.write_json(out / "fates.json", payload)
    plot(payload, out / "fates.png")


def plot(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(payload["datasets"])
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 6.4), squeeze=False)
    for j, name in enumerate(names):
        summary = payload["datasets"][name]["summary"]
        for i, metric in enumerate(("auroc", "brier")):
            ax = axes[i, j]
            for method, per_bin in summary.items():
                bins = list(per_bin)
                x = [float(b) for b in bins]
                y = [per_bin[b][metric] for b in bins]
                e = [per_bin[b][f"{metric}_std"] for b in bins]
                style = dict(lw=2.5, color="k") if method == METHODS[0] else dict(lw=1.2, ls="--" if method in (SPLIT, ORACLE) else "-")
                ax.errorbar(x, y, yerr=e, marker="o", ms=3, capsize=2, label=method, **style)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("time bin")
            ax.set_ylabel("AUROC" if metric == "auroc" else "Brier score")
    handles, labels = axes[0, -1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, short fits, small synthetic data: a smoke run")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--extra-seeds", default="0,1", help="seeds of the 10-PC dyngen fits and the synthetic data (default 0,1)")
    parser.add_argument("--atlas-cells", type=int, default=2000, help="cells of the synthetic atlas (default 2000)")
    parser.add_argument("--data", type=Path, default=C.REPO.parent / "shared" / "data", help="folder of the dyngen files")
    parser.add_argument("--out", type=Path, default=C.RESULTS, help="output folder (default: benchmarks/results)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    fit_params = dict(n_iter=100, hidden_dims=(32, 32)) if args.quick else {}
    extra = [0] if args.quick else [int(s) for s in args.extra_seeds.split(",")]
    n_cells, n_times = (600, 6) if args.quick else (args.atlas_cells, 10)
    prov = C.provenance(argv=argv, script="benchmarks/fates.py")
    prov["versions"].update({p: C.package_version(p) for p in ("cellrank", "scanpy", "scikit-learn")})
    descriptions = {
        "dyngen, 50 PCs": "MIOFlow's dyngen bifurcation, `tj.fit` at defaults on 50 PCs (the README's workflow).",
        "dyngen, 10 PCs": "The same on 10 PCs.",
        "synthetic atlas": f"`tj.datasets.synthetic_atlas({n_cells}, n_times={n_times}, seed=seed)`, `tj.fit` at defaults on its 50 PCs; "
                           f"splits at times {0.3 * (n_times - 1):g} and {0.6 * (n_times - 1):g}.",
    }
    datasets = {}
    datasets["dyngen, 50 PCs"] = run_dataset("dyngen, 50 PCs", lambda s: dyngen_data(args.data, 50), seeds, fit_params)
    if not args.quick:
        datasets["dyngen, 10 PCs"] = run_dataset("dyngen, 10 PCs", lambda s: dyngen_data(args.data, 10), extra, fit_params)
    datasets["synthetic atlas"] = run_dataset("synthetic atlas", lambda s: atlas_data(n_cells, n_times, s), extra, fit_params)
    payload = {"provenance": prov, "descriptions": {k: descriptions[k] for k in datasets}, "datasets": datasets}
    report(payload, args.out)
    return payload


if __name__ == "__main__":
    main()
