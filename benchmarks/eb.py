"""Embryoid body benchmark, NLSB protocol (Table 1 of Neklyudov et al. 2023), side by side.

Train on the NLSB *val* split (200 cells per time label), evaluate on the *test* split
(350 per label): for k = 1..4 push every test cell of label k−1 to label k and compare with the
test cells of label k by W1 (EMD with Euclidean ground cost — the number the paper's table
calls "W2"), true W2 and unbiased Gaussian MMD² (bandwidth: median heuristic on test_k, fixed
per k for every method). Stochastic models are pushed ``--repeats`` times (independent
Brownian paths; all repeats are drawn in one batched call that tiles the source cells) and
reported as mean ± std over repeats.

Columns: trajinfer eAM and ueAM with the mixture, OT and SB interpolations; MIOFlow; TorchCFM
OT-CFM and SF2M (each with its own recommended settings, see ``benchmarks/peers``); the
published Table 1 (trained on ~2,700 cells/label, labelled as such); the finite-sample floor
W1(val_k, test_k); the no-move baseline W1(test_{k−1}, test_k).

trajinfer's settings (learning rate, iterations, network width, snapshot smoothing) are chosen for
eAM and for ueAM separately, on the val split only (``--tune``), by 4-fold cross-validation:
each fold holds out 50 val cells per label, the method (OT interpolation) is fitted on the other
150 with each candidate (training seed = fold number, so the criterion also sees the spread over
seeds), and the candidate with the highest mean held-out score
(:meth:`trajinfer.ActionMatching.score`, the negative Action Matching loss on the OT path
through the held-out cells: the method's own validation loss) is used for every interpolation
of that method. Held-out one-step W1 is recorded beside it; with 50 cells per label it is
dominated by sampling noise (its floor is 0.8-1.0), so it is not the criterion.

Usage::

    python benchmarks/eb.py --quick --out /tmp/eb      # seconds: smoke run
    python benchmarks/eb.py                             # full run (writes benchmarks/results)

The committed results were made in parts, two processes at a time (then merged), and with
three training seeds::

    python benchmarks/eb.py --tune-only                 # eb_tuning_{eam,ueam}.json
    python benchmarks/eb.py --no-tune --only eam        # and --only ueam, --only peers
    python benchmarks/eb.py --merge                     # eb.json, eb.md
    python benchmarks/eb.py --no-tune --only eam --interps ot,sb --seed 1 --out DIR1   # and peers, seed 2
    python benchmarks/eb.py --seed-table benchmarks/results DIR1 DIR2                  # eb_seeds.md
    python benchmarks/eb.py --budget-curve 200,250,300,400,1500  # eb_budget.md (reads eb_tuning_eam.json)

``--budget-curve`` measures time to accuracy: eAM (OT interpolation, the val-selected learning
rate) is fitted with each iteration budget and MIOFlow with its default 100 epochs, each with
training seeds 0, 1, 2 in the same process, and the fit times and test W1 are tabulated; the
speed-up is MIOFlow's fit time over that of the smallest eAM budget whose mean W1 (over k and
seeds) is at or below MIOFlow's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

import trajinfer as tj
from trajinfer import _defaults as defaults
from trajinfer.tl import default_sigma

DATA = Path("/work/shared/data")
W1_LABEL = "W1 (EMD, Euclidean ground cost; the paper's table calls it W2)"
PUBLISHED = {  # Neklyudov et al. 2023, Table 1 (W1 under the name "W2"), trained on ~2,700 cells/label
    "OT-flow": [0.75, 0.93, 0.93, 0.88],
    "TrajectoryNet": [0.64, 0.87, 0.78, 0.89],
    "IPF": [0.65, 0.78, 0.76, 0.76],
    "Neural SDE": [0.62, 0.78, 0.77, 0.75],
    "NLSB": [0.63, 0.75, 0.75, 0.72],
    "eAM": [0.58, 0.77, 0.72, 0.74],
}
PUBLISHED_NOTE = "published, trained on ~2,700 cells/label"
# optimisation budgets compared by the val-only cross-validation (``--tune``)
TUNING_CANDIDATES = [
    {"lr": 1e-3, "n_iter": 1500},
    {"lr": 5e-3, "n_iter": 1500},
    {"lr": 1e-2, "n_iter": 3000},
    {"lr": 5e-3, "n_iter": 3000, "smoothing": 0.1},
    {"lr": 1e-2, "n_iter": 3000, "smoothing": 0.1},
    {"lr": 5e-3, "n_iter": 1500, "hidden_dims": (256, 256, 256)},
]


# ----------------------------------------------------------------------------- data & metrics
def load(data_dir: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    adata = tj.datasets.embryoid_body(str(data_dir), split="both")
    X = np.asarray(adata.obsm["X_pca"], dtype=np.float64)
    t = adata.obs["time"].to_numpy()
    split = adata.obs["split"].astype(str).to_numpy()
    labels = sorted(np.unique(t))
    val = [X[(split == "val") & (t == k)] for k in labels]
    test = [X[(split == "test") & (t == k)] for k in labels]
    return val, test


def bandwidth(y: np.ndarray) -> float:
    d2 = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return float(np.sqrt(np.median(d2[np.triu_indices(len(y), 1)]) / 2.0))


def distances(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None, bw: float, which=("w1", "w2", "mmd")) -> dict[str, float]:
    out = {}
    if "w1" in which:
        out["w1"] = tj.metrics.w1(pred, target, wa=weights)
    if "w2" in which:
        out["w2"] = tj.metrics.w2(pred, target, wa=weights)
    if "mmd" in which:
        out["mmd"] = tj.metrics.mmd(pred, target, wa=weights, bandwidth=bw)
    return out


def summarise(per_repeat: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n_repeats": len(per_repeat)}
    for m in per_repeat[0]:
        vals = np.array([r[m] for r in per_repeat])
        out[m] = float(vals.mean())
        out[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    return out


def evaluate(push, test: list[np.ndarray], repeats: int, bws: list[float], metric_repeats: int | None = None) -> list[dict[str, Any]]:
    """``push(X, k0, k1, n_copies, seed) -> (X_end (n_copies*n, d), logw or None)``.

    W1 is computed on every repeat; W2 and MMD² on the first ``metric_repeats`` (all if None).
    """
    per_k = []
    for k in range(1, len(test)):
        src, tgt = test[k - 1], test[k]
        t0 = time.perf_counter()
        X_end, logw = push(src, k - 1, k, repeats, k)
        push_s = time.perf_counter() - t0
        n = src.shape[0]
        rows = []
        for r in range(repeats):
            sl = slice(r * n, (r + 1) * n)
            w = None if logw is None else np.exp(logw[sl] - logw[sl].max())
            extra = metric_repeats is None or r < metric_repeats
            rows.append(distances(X_end[sl], tgt, w, bws[k], which=("w1", "w2", "mmd") if extra else ("w1",)))
        res = summarise([{"w1": row["w1"]} for row in rows])
        sub = summarise([{m: row[m] for m in ("w2", "mmd")} for row in rows if "w2" in row])
        res.update({m: sub[m] for m in ("w2", "w2_std", "mmd", "mmd_std")})
        res["n_repeats_w2_mmd"] = sub["n_repeats"]
        res["k"] = k
        res["push_seconds"] = push_s
        per_k.append(res)
    return per_k


# ----------------------------------------------------------------------------- trajinfer
def stacked(snapshots: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate(snapshots), np.concatenate([np.full(len(v), k, dtype=float) for k, v in enumerate(snapshots)])


def fit_am(val: list[np.ndarray], method: str, interpolation: str, settings: dict[str, Any], seed: int = 0,
           times: list[float] | None = None) -> tj.ActionMatching:
    X, t = stacked(val)
    if times is not None:
        t = np.asarray(times, dtype=float)[t.astype(int)]
    sigma = default_sigma(X, t)
    estimator_settings = {k: v for k, v in settings.items() if k != "smoothing"}
    path = tj.SnapshotPath(X, t, interpolation=interpolation, sigma=sigma, smoothing=settings.get("smoothing", "auto"))
    if method == "ueam":  # as tj.fit does: the growth length scale is the data's path length
        estimator_settings.setdefault("growth_scale", path.length())
    model = tj.ActionMatching(method=method, sigma=sigma, seed=seed, run=tj.RunConfig(progress=False, device="cpu"), **estimator_settings)
    return model.fit(path)


def am_push(model: tj.ActionMatching, n_steps: int):
    def push(X, k0, k1, copies, seed):
        tr = model.simulate(np.tile(X, (copies, 1)), k0, k1, n_steps=n_steps, seed=seed, progress=False)
        return tr.X[-1].astype(np.float64), tr.log_weights[-1]

    return push


def peer_push(model, stochastic: bool):
    def push(X, k0, k1, copies, seed):
        Xin = np.tile(X, (copies, 1)) if stochastic else X
        out, _ = model.push(Xin, k0, k1, seed=seed)
        return out, None

    return push


def tune(val: list[np.ndarray], method: str, candidates: list[dict[str, Any]], base: dict[str, Any], folds: int, hold: int,
         repeats: int, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pick the settings of ``method`` on the val split only, by K-fold cross-validation on held-out val cells.

    Candidates already scored in ``previous`` (an earlier result of this function with the same
    folds, hold-out size and repeats) are read from it instead of being fitted again.
    """
    rng = np.random.default_rng(0)
    orders = [rng.permutation(len(v)) for v in val]
    splits = []
    for f in range(folds):
        held = [v[o[f * hold:(f + 1) * hold]] for v, o in zip(val, orders)]
        train = [v[np.concatenate([o[:f * hold], o[(f + 1) * hold:]])] for v, o in zip(val, orders)]
        splits.append((train, held))
    done = {}
    if previous and [previous.get(k) for k in ("folds", "held_out_per_label", "repeats")] == [folds, hold, repeats]:
        done = {json.dumps(r["settings"], sort_keys=True): r for r in previous["candidates"]}
    results = []
    for cand in candidates:
        settings = json.loads(json.dumps({**base, **cand}))  # as stored in the JSON (lists, not tuples)
        key = json.dumps(settings, sort_keys=True)
        if key in done:
            results.append({**done[key], "reused_from_earlier_run": True})
            print(f"  tune {cand}: read from the earlier run (held-out score {done[key]['heldout_score_mean']:.3f})", flush=True)
            continue
        rec: dict[str, Any] = {"settings": settings, "folds": []}
        with C.measure(rec):
            for fold, (train, held) in enumerate(splits):
                model = fit_am(train, method, "ot", settings, seed=fold)
                score = model.score(tj.SnapshotPath(*stacked(held), interpolation="ot"), n_samples=40_000)
                per_k = []
                for k in range(1, len(held)):
                    tr = model.simulate(np.tile(held[k - 1], (repeats, 1)), k - 1, k, n_steps=50, seed=k, progress=False)
                    n = held[k - 1].shape[0]
                    per_k.append(float(np.mean([tj.metrics.w1(tr.X[-1][r * n:(r + 1) * n], held[k]) for r in range(repeats)])))
                rec["folds"].append({"heldout_score": score, "heldout_w1": per_k, "final_train_loss": float(np.mean(model.loss_curve_[-50:]))})
        rec["heldout_score_mean"] = float(np.mean([f["heldout_score"] for f in rec["folds"]]))
        rec["heldout_val_w1"] = np.mean([f["heldout_w1"] for f in rec["folds"]], axis=0).tolist()
        rec["heldout_val_w1_mean"] = float(np.mean(rec["heldout_val_w1"]))
        print(f"  tune {cand}: held-out score {rec['heldout_score_mean']:.3f}, held-out val W1 {np.round(rec['heldout_val_w1'], 3)} "
              f"({rec['fit_seconds']:.0f} s)", flush=True)
        results.append(rec)
    best = max(results, key=lambda r: r["heldout_score_mean"])
    return {"method": method, "seed_per_fold": True, "folds": folds, "held_out_per_label": hold, "repeats": repeats, "criterion": "highest mean held-out score",
            "candidates": results, "chosen": best["settings"]}


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds: tiny budgets (smoke test)")
    parser.add_argument("--out", type=Path, default=C.RESULTS)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeats", type=int, default=None, help="stochastic repeats (full 100, quick 2)")
    parser.add_argument("--n-iter", type=int, default=None, help="trajinfer iterations (full 1500)")
    parser.add_argument("--n-steps", type=int, default=None, help="Euler(-Maruyama) steps per unit interval (full 100)")
    parser.add_argument("--no-tune", action="store_true",
                        help="skip the val-only selection (use the choice in --out/eb_tuning.json when present, else defaults)")
    parser.add_argument("--peers", default="mioflow,otcfm,sf2m")
    parser.add_argument("--mioflow-epochs", type=int, default=None, help="MIOFlow epochs (full: its default 100)")
    parser.add_argument("--cfm-iters", type=int, default=None, help="OT-CFM / SF2M iterations (full 2000)")
    parser.add_argument("--metric-repeats", type=int, default=None, help="repeats scored by W2 and MMD (full 20; W1 uses all)")
    parser.add_argument("--tune-only", action="store_true", help="run only the val-only selection (writes eb_tuning.json)")
    parser.add_argument("--retune", action="store_true",
                        help="refit every tuning candidate (default: reuse those already scored in --out/eb_tuning_<method>.json)")
    parser.add_argument("--only", choices=["eam", "ueam", "peers"], default=None,
                        help="run one group and write eb_part_<group>.json (for parallel processes; combine with --merge)")
    parser.add_argument("--interps", default="mixture,ot,sb", help="interpolations of the trajinfer group(s)")
    parser.add_argument("--merge", action="store_true", help="combine eb_part_*.json in --out into eb.json / eb.md")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="training seed of trajinfer and the peers (network initialisation, minibatches)")
    parser.add_argument("--seed-table", nargs="+", type=Path, default=None, metavar="DIR",
                        help="write eb_seeds.md/json in --out: W1 per k over the runs in DIR/eb.json or DIR/eb_part_*.json (one seed each)")
    parser.add_argument("--budget-curve", default=None, metavar="ITERS",
                        help="comma-separated eAM iteration budgets: write eb_budget.md/json (time to accuracy against MIOFlow)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds of --budget-curve")
    parser.add_argument("--defaults", action="store_true",
                        help="fit trajinfer with tj.fit's defaults (no tuning): the row users get")
    parser.add_argument("--laplacian-seeds", default=None, metavar="SEEDS",
                        help="with --loo: the mixture path with the exact and the Hutchinson Laplacian over these comma-separated "
                             "training seeds (eb_loo_seeds.md/json)")
    parser.add_argument("--reuse-peers", type=Path, default=None, metavar="JSON",
                        help="with --loo: read the peers' rows from this earlier eb_loo.json instead of refitting them")
    parser.add_argument("--loo", action="store_true",
                        help="leave-one-time-point-out protocol: write eb_loo.md/json (trajinfer defaults and the peers)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.merge:
        return merge(args.out)
    if args.seed_table:
        return seed_table(args.seed_table, args.out)
    quick = args.quick
    repeats = args.repeats or (2 if quick else 100)
    n_iter = args.n_iter or (10 if quick else 1500)
    metric_repeats = args.metric_repeats or (2 if quick else 20)
    n_steps = args.n_steps or (10 if quick else 100)
    peer_budget = {"mioflow": args.mioflow_epochs or (1 if quick else 100), "otcfm": args.cfm_iters or (10 if quick else 2000),
                   "sf2m": args.cfm_iters or (10 if quick else 2000)}
    base = {"hidden_dims": (32, 32) if quick else (128, 128, 128), "n_iter": n_iter, "batch_size": 64 if quick else 256, "lr": 1e-3}
    if args.defaults or args.loo:
        base = {"hidden_dims": (32, 32) if quick else defaults.ON_SNAPSHOTS['hidden_dims'], "n_iter": args.n_iter or (10 if quick else defaults.ON_SNAPSHOTS['n_iter']),
                "batch_size": 64 if quick else defaults.BATCH_SIZE, "lr": defaults.ON_SNAPSHOTS['lr']}
    prov = C.provenance({"mode": "quick" if quick else "full"}, argv, f"benchmarks/{Path(__file__).name}")
    print(C.provenance_md(prov), flush=True)

    val, test = load(args.data)
    if quick:
        val = [v[:40] for v in val]
        test = [t[:60] for t in test]
    bws = [bandwidth(t) for t in test]
    n_val, n_test = [len(v) for v in val], [len(t) for t in test]
    floor = [distances(val[k], test[k], None, bws[k]) for k in range(len(test))]
    no_move = [distances(test[k - 1], test[k], None, bws[k]) for k in range(1, len(test))]
    print("floor W1", [round(f["w1"], 3) for f in floor], "no-move W1", [round(f["w1"], 3) for f in no_move], flush=True)

    groups = [args.only] if args.only else ["eam", "ueam", "peers"]
    tunings: dict[str, Any] = {}
    settings = {}
    for method in [g for g in ("eam", "ueam") if g in groups]:
        tuning_file = args.out / f"eb_tuning_{method}.json"
        if args.defaults or args.loo:
            settings[method] = dict(base)
            print(f"trajinfer {method} settings (tj.fit defaults):", settings[method], flush=True)
            continue
        if args.tune_only or not (args.no_tune or args.budget_curve):
            cands = [{"lr": 1e-3}, {"lr": 5e-3}] if quick else TUNING_CANDIDATES
            previous = None if args.retune or not tuning_file.exists() else json.loads(tuning_file.read_text())
            tunings[method] = tune(val, method, cands, base, folds=2 if quick else 4, hold=10 if quick else 50, repeats=2 if quick else 5,
                                   previous=previous)
            tunings[method]["provenance"] = prov
            if previous is not None:
                tunings[method]["earlier_provenance"] = previous.get("provenance")
            args.out.mkdir(parents=True, exist_ok=True)
            C.write_json(tuning_file, tunings[method])
        elif tuning_file.exists():
            tunings[method] = json.loads(tuning_file.read_text())
            tunings[method]["note"] = f"separate --tune-only run (read from {tuning_file.name}), whose choice this run used"
        settings[method] = {**base, **tunings[method]["chosen"]} if method in tunings else dict(base)
        print(f"trajinfer {method} settings:", settings[method], flush=True)
    if args.tune_only:
        return tunings
    if args.loo and args.laplacian_seeds:
        return loo_laplacian_seeds(val, test, settings.get("eam", base), [int(s) for s in args.laplacian_seeds.split(",")],
                                   repeats, n_steps, args, prov)
    if args.loo:
        return loo(val, test, settings.get("eam", base), repeats, n_steps, peer_budget, args, prov)
    if args.budget_curve:
        budgets = [int(b) for b in args.budget_curve.split(",")]
        seeds = [int(x) for x in args.seeds.split(",")]
        return budget_curve(val, test, bws, settings["eam"], budgets, seeds, repeats, n_steps, peer_budget["mioflow"], prov, args.out)

    methods: dict[str, dict[str, Any]] = {}
    for method in [g for g in ("eam", "ueam") if g in groups]:
        for interp in [i for i in ("mixture", "ot", "sb") if i in args.interps.split(",")]:
            name = f"trajinfer {'eAM' if method == 'eam' else 'ueAM'} ({interp})"
            rec: dict[str, Any] = {"kind": "trajinfer", "method": method, "interpolation": interp, "settings": settings[method]}
            with C.measure(rec):
                model, err = C.safe_run(lambda: fit_am(val, method, interp, settings[method], seed=args.seed))  # noqa: B023
            if err:
                rec["error"] = err
            else:
                rec["sigma"] = float(model.sigma)
                rec["final_train_loss"] = float(np.mean(model.loss_curve_[-50:]))
                rec["per_k"] = evaluate(am_push(model, n_steps), test, repeats, bws, metric_repeats)
                rec["n_steps_per_interval"] = n_steps
            methods[name] = rec
            print(f"{name}: fit {rec['fit_seconds']:.0f} s;", err or [round(r["w1"], 3) for r in rec["per_k"]], flush=True)

    peer_fns = {}
    try:
        from peers import fit_mioflow, fit_otcfm, fit_sf2m

        peer_fns = {"mioflow": ("MIOFlow", fit_mioflow, False), "otcfm": ("TorchCFM OT-CFM", fit_otcfm, False), "sf2m": ("TorchCFM SF2M", fit_sf2m, True)}
    except Exception as err:
        import_error = f"{type(err).__name__}: {err}"
        peer_fns = {p: (p, None, False) for p in ("mioflow", "otcfm", "sf2m")}
    for key in [p for p in args.peers.split(",") if p and "peers" in groups]:
        name, fn, stochastic = peer_fns[key]
        rec = {"kind": "peer", "peer": key}
        if fn is None:
            rec["error"] = import_error
            methods[name] = rec
            continue
        budget = peer_budget[key]
        kw = {"n_epochs": budget} if key == "mioflow" else {"n_iter": budget}
        with C.measure(rec):
            model, err = C.safe_run(lambda: fn(val, list(range(len(val))), seed=args.seed, **kw))  # noqa: B023
        if err:
            rec["error"] = err
        else:
            rec["settings"] = model.settings
            per_k, err = C.safe_run(lambda: evaluate(peer_push(model, stochastic), test, repeats if stochastic else 1, bws, metric_repeats))  # noqa: B023
            if err:
                rec["error"] = err
            else:
                rec["per_k"] = per_k
        methods[name] = rec
        print(f"{name}: fit {rec['fit_seconds']:.0f} s;", rec.get("error") or [round(r["w1"], 3) for r in rec["per_k"]], flush=True)

    payload = {
        "benchmark": "embryoid body, NLSB protocol (train val split, evaluate test split)",
        "provenance": prov,
        "metric_note": W1_LABEL + "; w2 is the true 2-Wasserstein distance; mmd is the unbiased Gaussian MMD² "
        "with the median-heuristic bandwidth of test_k (fixed per k).",
        "n_val_per_label": n_val,
        "n_test_per_label": n_test,
        "repeats": repeats,
        "metric_repeats_w2_mmd": metric_repeats,
        "trajinfer_settings": settings,
        "tuning": tunings,
        "peer_budgets": peer_budget,
        "floor_val_vs_test": floor,
        "no_move": no_move,
        "published": {"note": PUBLISHED_NOTE, "w1": PUBLISHED},
        "methods": methods,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only:
        if args.only == "peers":
            tag = "peers" if args.peers == "mioflow,otcfm,sf2m" else "peers_" + args.peers.replace(",", "_")
        else:
            tag = args.only if args.interps == "mixture,ot,sb" else f"{args.only}_{args.interps.replace(',', '_')}"
        C.write_json(args.out / f"eb_part_{tag}.json", payload)
        return payload
    C.write_json(args.out / "eb.json", payload)
    C.write_text(args.out / "eb.md", markdown(payload))
    print((args.out / "eb.md").read_text())
    return payload


def loo_fit(val: list[np.ndarray], test: list[np.ndarray], k: int, interpolation: str, settings: dict[str, Any], seed: int,
            repeats: int, n_steps: int) -> tuple[float, float]:
    """W1 of trajinfer fitted without label k, pushing the test cells of k−1 to k; and the fit seconds."""
    keep = [j for j in range(len(val)) if j != k]
    rec: dict[str, Any] = {}
    with C.measure(rec):
        model = fit_am([val[j] for j in keep], "eam", interpolation, settings, seed=seed, times=keep)
    src, tgt = test[k - 1], test[k]
    X_end, _ = am_push(model, n_steps)(src, k - 1, k, repeats, k)
    n = len(src)
    return float(np.mean([tj.metrics.w1(X_end[r * n:(r + 1) * n], tgt) for r in range(repeats)])), rec["fit_seconds"]


def loo_laplacian_seeds(val: list[np.ndarray], test: list[np.ndarray], settings: dict[str, Any], seeds: list[int], repeats: int,
                        n_steps: int, args: argparse.Namespace, prov: dict[str, Any]) -> dict[str, Any]:
    """The leave-one-out protocol for the default (mixture) path with the exact Laplacian and with
    Hutchinson's one-probe estimate, over training seeds: is the cheaper estimate within the seed
    spread?"""
    held_out = list(range(1, len(val) - 1))
    rows = []
    for laplacian in ("exact", "hutchinson"):
        for seed in seeds:
            w1 = [loo_fit(val, test, k, "mixture", {**settings, "laplacian": laplacian}, seed, repeats, n_steps)[0] for k in held_out]
            rows.append({"laplacian": laplacian, "seed": seed, "w1": w1, "mean": float(np.mean(w1))})
            print(f"[loo-seeds] {laplacian} seed {seed}: {[round(w, 3) for w in w1]}", flush=True)
    table = [[r["laplacian"], r["seed"], *[C.fmt(w) for w in r["w1"]], C.fmt(r["mean"])] for r in rows]
    for laplacian in ("exact", "hutchinson"):
        means = [r["mean"] for r in rows if r["laplacian"] == laplacian]
        table.append([f"**{laplacian}: mean ± std over seeds**", "", "", "", "", C.pm(np.mean(means), np.std(means))])
    md = "\n".join([
        "# Embryoid body, leave one time point out: exact against Hutchinson Laplacian, over seeds", "", C.provenance_md(prov), "",
        f"The protocol of `eb_loo.md` for the mixture path with `tj.fit`'s other defaults ({settings}), {repeats} stochastic "
        "repeats, the Laplacian of the training loss exact or estimated with one Rademacher probe per sample.", "",
        C.md_table(["Laplacian", "seed", *[f"k={k}" for k in held_out], "mean"], table), ""])
    C.write_json(args.out / "eb_loo_seeds.json", {"provenance": prov, "settings": settings, "rows": rows})
    C.write_text(args.out / "eb_loo_seeds.md", md)
    print(md)
    return {"rows": rows}


def loo(val: list[np.ndarray], test: list[np.ndarray], settings: dict[str, Any], repeats: int, n_steps: int,
        peer_budget: dict[str, int], args: argparse.Namespace, prov: dict[str, Any]) -> dict[str, Any]:
    """Leave one time point out: fit on the val split without label k, push the test cells of
    label k−1 to the time of k, compare with the test cells of k by W1 (k = 1, 2, 3).

    trajinfer runs with tj.fit's defaults for each interpolation; the peers with their defaults.
    MIOFlow takes the rank of each time label as its time, so with label k held out its push
    ends halfway between the ranks of k−1 and k+1 (the labels are equally spaced).
    """
    from peers import fit_mioflow, fit_otcfm, fit_sf2m

    held_out = list(range(1, len(val) - 1))
    rows: dict[str, dict[str, Any]] = {}
    reused: dict[str, dict[str, Any]] = {}
    if args.reuse_peers:  # the peers' rows do not depend on trajinfer's settings
        earlier = json.loads(args.reuse_peers.read_text())["rows"]
        reused = {name: {field: {int(k): v for k, v in values.items()} for field, values in row.items()}
                  for name, row in earlier.items() if not name.startswith("trajinfer")}

    def record(name: str, k: int, w1: float, fit_s: float) -> None:
        row = rows.setdefault(name, {"w1": {}, "fit_seconds": {}})
        row["w1"][k], row["fit_seconds"][k] = w1, fit_s
        print(f"[loo] {name} k={k}: W1 {w1:.3f} (fit {fit_s:.0f} s)", flush=True)

    for k in held_out:
        keep = [j for j in range(len(val)) if j != k]
        train = [val[j] for j in keep]
        src, tgt = test[k - 1], test[k]
        for interp in [i for i in ("ot", "mixture", "sb") if i in args.interps.split(",")]:
            w1, fit_s = loo_fit(val, test, k, interp, settings, args.seed, repeats, n_steps)
            record(f"trajinfer eAM ({interp}), defaults", k, w1, fit_s)
        for key, name, fn, stochastic in (("mioflow", "MIOFlow", fit_mioflow, False), ("otcfm", "TorchCFM OT-CFM", fit_otcfm, False),
                                          ("sf2m", "TorchCFM SF2M", fit_sf2m, True)):
            if key not in args.peers.split(",") or name in reused:
                continue
            budget = peer_budget[key]
            kw = {"n_epochs": budget} if key == "mioflow" else {"n_iter": budget}
            times = list(range(len(keep))) if key == "mioflow" else keep
            rec = {}
            with C.measure(rec):
                model = fn(train, times, seed=args.seed, **kw)
            start, end = (k - 1, k - 0.5) if key == "mioflow" else (k - 1, k)
            copies = repeats if stochastic else 1
            out, _ = model.push(np.tile(src, (copies, 1)), start, end, seed=k)
            n = len(src)
            w1 = float(np.mean([tj.metrics.w1(out[r * n:(r + 1) * n], tgt) for r in range(copies)]))
            record(name, k, w1, rec["fit_seconds"])
    rows.update(reused)
    no_move = {k: tj.metrics.w1(test[k - 1], test[k]) for k in held_out}
    floor = {k: tj.metrics.w1(val[k], test[k]) for k in held_out}
    header = ["method", *[f"k={k}" for k in held_out], "mean", "fit s (mean)"]
    table = [[name, *[C.fmt(r["w1"][k]) for k in held_out], C.fmt(np.mean(list(r["w1"].values()))),
              C.fmt(np.mean(list(r["fit_seconds"].values())), 1)] for name, r in rows.items()]
    table.append(["no move (test k−1 vs test k)", *[C.fmt(no_move[k]) for k in held_out], C.fmt(np.mean(list(no_move.values()))), ""])
    table.append(["finite-sample floor W1(val k, test k)", *[C.fmt(floor[k]) for k in held_out], C.fmt(np.mean(list(floor.values()))), ""])
    md = "\n".join([
        "# Embryoid body, leave one time point out", "", C.provenance_md(prov), "",
        f"Fit on the val split without label k, push the test cells of label k−1 to label k, {W1_LABEL} against the test "
        f"cells of k. trajinfer: `tj.fit` defaults ({settings}), {repeats} stochastic repeats (SF2M too); peers: their "
        "package defaults. One CPU thread, one fit at a time."
        + (f" The peers' rows (independent of trajinfer's settings) were read from the earlier run in {args.reuse_peers}."
           if reused else ""), "",
        C.md_table(header, table), ""])
    payload = {"provenance": prov, "settings": settings, "repeats": repeats, "rows": rows, "no_move": no_move, "floor": floor}
    args.out.mkdir(parents=True, exist_ok=True)
    C.write_json(args.out / "eb_loo.json", payload)
    C.write_text(args.out / "eb_loo.md", md)
    print(md)
    return payload


def budget_curve(val: list[np.ndarray], test: list[np.ndarray], bws: list[float], settings: dict[str, Any], budgets: list[int],
                 seeds: list[int], repeats: int, n_steps: int, mioflow_epochs: int, prov: dict[str, Any], out: Path) -> dict[str, Any]:
    """Time to accuracy: eAM (OT) over iteration budgets against MIOFlow, same process, same seeds."""
    runs: list[dict[str, Any]] = []
    for n_iter in budgets:
        for seed in seeds:
            rec: dict[str, Any] = {}
            with C.measure(rec):  # the same wall-clock timer as MIOFlow's fit below
                model = fit_am(val, "eam", "ot", {**settings, "n_iter": n_iter}, seed=seed)
            w1 = [r["w1"] for r in evaluate(am_push(model, n_steps), test, repeats, bws, metric_repeats=1)]
            runs.append({"method": "trajinfer eAM (ot)", "budget": f"{n_iter} iterations", "seed": seed, "fit_seconds": rec["fit_seconds"], "w1": w1})
            print(f"eAM {n_iter} it, seed {seed}: fit {rec['fit_seconds']:.1f} s, W1 {np.round(w1, 3)}", flush=True)
    from peers import fit_mioflow

    for seed in seeds:
        rec = {}
        with C.measure(rec):
            model = fit_mioflow(val, list(range(len(val))), seed=seed, n_epochs=mioflow_epochs)
        w1 = [r["w1"] for r in evaluate(peer_push(model, False), test, 1, bws, metric_repeats=1)]
        runs.append({"method": "MIOFlow", "budget": f"{mioflow_epochs} epochs", "seed": seed, "fit_seconds": rec["fit_seconds"], "w1": w1})
        print(f"MIOFlow seed {seed}: fit {rec['fit_seconds']:.1f} s, W1 {np.round(w1, 3)}", flush=True)

    rows, summary = [], []
    for key in dict.fromkeys((r["method"], r["budget"]) for r in runs):
        rs = [r for r in runs if (r["method"], r["budget"]) == key]
        w1 = np.array([r["w1"] for r in rs])
        fit = float(np.mean([r["fit_seconds"] for r in rs]))
        summary.append({"method": key[0], "budget": key[1], "fit_seconds": fit, "w1": w1.mean(0).tolist(), "mean_w1": float(w1.mean())})
        rows.append([key[0], key[1]] + [C.fmt(v) for v in w1.mean(0)] + [C.fmt(w1.mean()), C.fmt(fit, 1)])
    reference = next(r for r in summary if r["method"] == "MIOFlow")
    reached = [r for r in summary if r["method"] != "MIOFlow" and r["mean_w1"] <= reference["mean_w1"]]
    fastest = min(reached, key=lambda r: r["fit_seconds"]) if reached else None
    speedup = reference["fit_seconds"] / fastest["fit_seconds"] if fastest else None
    verdict = (f"Fastest eAM budget at or below MIOFlow's mean W1 ({reference['mean_w1']:.3f}): {fastest['budget']}, "
               f"mean W1 {fastest['mean_w1']:.3f} in {fastest['fit_seconds']:.1f} s against MIOFlow's {reference['fit_seconds']:.1f} s: "
               f"**{speedup:.1f}× faster** (target ≥ 10×: **{speedup >= 10}**)." if fastest else
               f"No eAM budget reached MIOFlow's mean W1 ({reference['mean_w1']:.3f}).")
    md = "\n".join([
        "# Embryoid body: time to accuracy against MIOFlow", "", C.provenance_md(prov), "",
        f"Each row: mean over training seeds {seeds} of the test W1 per k ({W1_LABEL}) and of the fit wall time (single thread, "
        f"same process, one fit at a time). eAM: OT interpolation, `{ {k: v for k, v in settings.items() if k != 'n_iter'} }`, "
        f"{repeats} stochastic repeats; MIOFlow: its defaults, deterministic push.", "",
        C.md_table(["method", "budget", "k=1", "k=2", "k=3", "k=4", "mean", "fit s"], rows), "", verdict, ""])
    payload = {"provenance": prov, "seeds": seeds, "repeats": repeats, "settings": settings, "runs": runs, "summary": summary,
               "speedup_to_mioflow_accuracy": speedup}
    out.mkdir(parents=True, exist_ok=True)
    C.write_json(out / "eb_budget.json", payload)
    C.write_text(out / "eb_budget.md", md)
    print(md)
    return payload


def targets_note(p: dict[str, Any], floor: list[float]) -> str:
    """The issue's targets, checked on the best trajinfer row (lowest mean W1)."""
    ours = {n: [r["w1"] for r in rec["per_k"]] for n, rec in p["methods"].items() if rec.get("kind") == "trajinfer" and "per_k" in rec}
    peers = {n: [r["w1"] for r in rec["per_k"]] for n, rec in p["methods"].items() if rec.get("kind") == "peer" and "per_k" in rec}
    if not ours:
        return "Targets: no trajinfer row finished."
    best = min(ours, key=lambda n: np.mean(ours[n]))
    w1 = ours[best]
    ratios = ", ".join(f"k={k + 1}: {a / f:.2f}×" for k, (a, f) in enumerate(zip(w1, floor)))
    lost = [f"k={k + 1} ({n} {v[k]:.3f} < {w1[k]:.3f})" for k in range(len(w1)) for n, v in peers.items() if v[k] < w1[k]]
    return (f"Targets (best trajinfer row by mean W1: {best}): within 10% of the floor at every k: "
            f"**{all(a <= 1.1 * f for a, f in zip(w1, floor))}** ({ratios}); no worse than every peer at every k: "
            f"**{not lost}**" + (f" (behind at {'; '.join(lost)})" if lost else "") + ".")


def budget_note(p: dict[str, Any]) -> str:
    peers = {n: r.get("settings", {}) for n, r in p["methods"].items() if r.get("kind") == "peer"}
    bits = [f"{n} {r.get('n_epochs', r.get('n_iter'))} {'epochs' if 'n_epochs' in r else 'iterations'}" for n, r in peers.items() if r]
    ours = [f"{m} {s['n_iter']} iterations" for m, s in p["trajinfer_settings"].items()]
    load = p["provenance"]["machine"].get("load_average_at_start")
    return (f"Compute: each group of rows (eAM, ueAM, peers) ran as its own single-threaded process on a shared "
            f"{p['provenance']['machine']['cpu_cores']}-core CPU machine (load average at the start of the first part: {load}; "
            f"the parts' own load averages are in the JSON provenance); *fit s* is wall-clock time of the fit alone, longer "
            f"when the machine was busy. Budgets: trajinfer " + ", ".join(ours) + "; " + "; ".join(bits) +
            f"; {p['repeats']} stochastic repeats.")


def seed_table(dirs: list[Path], out: Path) -> dict[str, Any]:
    """W1 per k of every method over training seeds (one run directory per seed): mean, min and max."""
    runs = []
    for d in dirs:
        files = [d / "eb.json"] if (d / "eb.json").exists() else sorted(d.glob("eb_part_*.json"))
        for f in files:
            payload = json.loads(f.read_text())
            seed = C.seed_of_command(payload["provenance"]["command"])
            for name, rec in payload["methods"].items():
                if "per_k" in rec:
                    runs.append({"method": name, "seed": seed, "w1": [r["w1"] for r in rec["per_k"]], "command": payload["provenance"]["command"]})
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(r)
    rows = []
    for name, rs in by_method.items():
        w1 = np.array([r["w1"] for r in rs])
        cells = [f"{m:.3f} ({lo:.3f}–{hi:.3f})" for m, lo, hi in zip(w1.mean(0), w1.min(0), w1.max(0))]
        rows.append([name, ", ".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))] + cells + [f"{w1.mean():.3f}"])
    md = "\n".join(["# Embryoid body: W1 over training seeds", "",
                    "Each run is one training seed (network initialisation and minibatches); the split, the metric and the "
                    "evaluation repeats are those of `eb.md`. Cells: mean over seeds (min–max).", "",
                    C.md_table(["method", "seeds", "k=1", "k=2", "k=3", "k=4", "mean"], rows), "",
                    "Commands: " + " ; ".join(sorted({f"`{r['command']}`" for r in runs})), ""])
    out.mkdir(parents=True, exist_ok=True)
    payload = {"runs": runs}
    C.write_json(out / "eb_seeds.json", payload)
    (out / "eb_seeds.md").write_text(md)
    print(md)
    return payload


def merge(out: Path) -> dict[str, Any]:
    order = {"eam": 0, "ueam": 1, "peers": 2}
    interp_order = {"mixture": 0, "ot": 1, "sb": 2}

    def key(f: Path) -> tuple:
        tag = f.stem[len("eb_part_"):].split("_")
        return (order.get(tag[0], 9), [interp_order.get(x, 9) for x in tag[1:]])

    parts = {f.stem[len("eb_part_"):]: json.loads(f.read_text()) for f in sorted(out.glob("eb_part_*.json"), key=key)}
    if not parts:
        raise FileNotFoundError(f"No eb_part_*.json in {out}.")
    payload = dict(next(iter(parts.values())))
    payload["methods"] = {}
    payload["provenance"] = dict(payload["provenance"])
    payload["provenance"]["parts"] = {g: p["provenance"] for g, p in parts.items()}
    payload["provenance"]["command"] = " ; ".join(p["provenance"]["command"] for p in parts.values()) + " ; " + C.command_line()
    for part in parts.values():
        payload["methods"].update(part["methods"])
    for method in ("eam", "ueam"):  # configurations whose process did not finish
        for interp in ("mixture", "ot", "sb"):
            name = f"trajinfer {'eAM' if method == 'eam' else 'ueAM'} ({interp})"
            if name not in payload["methods"]:
                payload["methods"][name] = {"kind": "trajinfer", "method": method, "interpolation": interp,
                                            "error": "not finished within the session (process stopped before writing results); rerun "
                                                     f"`python benchmarks/eb.py --no-tune --only {method} --interps {interp}` then `--merge`"}
    payload["trajinfer_settings"] = {m: s for g, p in parts.items() if not g.startswith("peers") for m, s in p["trajinfer_settings"].items()}
    payload["tuning"] = {m: t for g, p in parts.items() if not g.startswith("peers") for m, t in (p["tuning"] or {}).items()}
    C.write_json(out / "eb.json", payload)
    C.write_text(out / "eb.md", markdown(payload))
    print((out / "eb.md").read_text())
    return payload


def markdown(p: dict[str, Any]) -> str:
    floor = [f["w1"] for f in p["floor_val_vs_test"][1:]]
    ks = ["k=1", "k=2", "k=3", "k=4"]
    rows = []
    for name, rec in p["methods"].items():
        if "per_k" not in rec:
            rows.append([name, f"error: {rec.get('error')}"] + [""] * 8)
            continue
        w1 = [r["w1"] for r in rec["per_k"]]
        cells = [C.pm(r["w1"], r["w1_std"]) for r in rec["per_k"]]
        ratio = np.mean([a / b for a, b in zip(w1, floor)])
        rows.append([name] + cells + [C.fmt(np.mean(w1)), C.fmt(ratio, 2), rec["per_k"][0]["n_repeats"], C.fmt(rec["fit_seconds"], 0), C.fmt(rec["fit_rss_increase_mb"], 0)])
    rows.append(["no-move baseline W1(test_{k−1}, test_k)"] + [C.fmt(r["w1"]) for r in p["no_move"]]
                + [C.fmt(np.mean([r["w1"] for r in p["no_move"]])), C.fmt(np.mean([r["w1"] / f for r, f in zip(p["no_move"], floor)]), 2), "", "", ""])
    rows.append(["finite-sample floor W1(val_k, test_k)"] + [C.fmt(f) for f in floor] + [C.fmt(np.mean(floor)), "1.00", "", "", ""])
    for name, vals in p["published"]["w1"].items():
        rows.append([f"{name} ({p['published']['note']})"] + [f"{v:.2f}" for v in vals] + [C.fmt(np.mean(vals)), C.fmt(np.mean([a / b for a, b in zip(vals, floor)]), 2), "", "", ""])
    header = ["method"] + ks + ["mean", "mean ratio to floor", "repeats", "fit s", "fit peak RSS increase MB"]
    parts = [
        "# Embryoid body (NLSB protocol): side by side",
        "",
        C.provenance_md(p["provenance"]),
        "",
        f"Train: NLSB val split ({p['n_val_per_label'][0]} cells/label); evaluate: test split ({p['n_test_per_label'][0]} cells/label). "
        "For k = 1..4 all test cells of label k−1 are pushed to label k and compared with the test cells of label k. "
        "Stochastic methods: mean ± std over the repeats listed (independent Brownian paths); deterministic ones: 1 run.",
        "",
        f"## {W1_LABEL}",
        "",
        C.md_table(header, rows),
        "",
        budget_note(p),
        "",
        targets_note(p, floor),
        "",
        "Floor: W1 between the val and test cells of the same label — what a perfect model trained on "
        f"{p['n_val_per_label'][0]} cells/label can be expected to reach; the published rows were trained on ~2,700 cells/label and "
        "evaluated on the NLSB test split, so their ratio to this floor is only indicative.",
        "",
        f"## True W2 and MMD² (mean ± std over the first {p['metric_repeats_w2_mmd']} repeats of stochastic methods)",
        "",
    ]
    rows2 = []
    for name, rec in p["methods"].items():
        if "per_k" in rec:
            rows2.append([name] + [C.pm(r["w2"], r["w2_std"]) for r in rec["per_k"]] + [C.pm(r["mmd"], r["mmd_std"]) for r in rec["per_k"]])
    rows2.append(["no-move baseline"] + [C.fmt(r["w2"]) for r in p["no_move"]] + [C.fmt(r["mmd"]) for r in p["no_move"]])
    rows2.append(["floor (val_k vs test_k)"] + [C.fmt(r["w2"]) for r in p["floor_val_vs_test"][1:]] + [C.fmt(r["mmd"]) for r in p["floor_val_vs_test"][1:]])
    parts.append(C.md_table(["method"] + [f"W2 {k}" for k in ks] + [f"MMD² {k}" for k in ks], rows2))
    steps = next((r.get("n_steps_per_interval") for r in p["methods"].values() if r.get("n_steps_per_interval")), "–")
    parts += ["", "## Settings", "", "sigma = `tj.tl.default_sigma` of the val cells; ueAM with equal masses (the val split has equal "
              f"counts per label); simulation by Euler–Maruyama, {steps} steps per unit interval."]
    for method, settings in p["trajinfer_settings"].items():
        parts += ["", f"trajinfer {method} (every interpolation): `{settings}`."]
        t = p["tuning"].get(method)
        if not t:
            parts.append("These are `tj.fit`'s defaults, not tuned on this data: they were chosen by leave-one-time-point-out "
                         "W1 on training data across the embryoid body, dyngen and petals (`defaults.md`); the smoothing is "
                         "`smoothing=\"auto\"`." if settings.get("lr") == defaults.ON_SNAPSHOTS['lr'] and settings.get("n_iter") == defaults.ON_SNAPSHOTS['n_iter']
                         else "No val-only selection was run for it; the settings were fixed beforehand.")
            continue
        chosen = {k: v for k, v in t["chosen"].items() if k != "batch_size"}
        parts.append(f"Val-only selection ({t.get('note') or 'run before the main fits; its choice was used'}): {t['folds']}-fold "
                     f"cross-validation on the val split, {t['held_out_per_label']} val cells/label held out per fold, {method} (OT "
                     f"interpolation) fitted on the other val cells{', training seed = fold number' if t.get('seed_per_fold') else ''}; criterion: {t['criterion']} (negative Action Matching loss on the OT "
                     f"path through the held-out cells). Chosen: `{chosen}`. No test cells are used.")
        parts.append("")
        rows = [[f"`{ {k: v for k, v in c['settings'].items() if k != 'batch_size'} }`"
                 + (" (earlier run)" if c.get("reused_from_earlier_run") else ""), C.fmt(c["heldout_score_mean"]),
                 C.fmt(c["heldout_val_w1_mean"]), str([round(x, 3) for x in c["heldout_val_w1"]]), C.fmt(c["fit_seconds"], 0)] for c in t["candidates"]]
        parts.append(C.md_table(["candidate", "held-out score (higher is better)", "held-out val W1 mean", "held-out val W1 per k",
                                 "fit s (all folds)"], rows))
    parts.append("")
    parts.append("Peers (each with its package's own defaults / tutorial settings):")
    for name, rec in p["methods"].items():
        if rec["kind"] == "peer":
            parts.append(f"- {name}: `{rec.get('settings', rec.get('error'))}`")
    parts.append("")
    return "\n".join(parts)


if __name__ == "__main__":
    main()
