"""Petals benchmark (MIOFlow's branching-and-merging synthetic data), trajinfer eAM vs MIOFlow (and TorchCFM, ``--loo``).

For 5, 10 and 15 time steps (``tj.datasets.petals``), fit on all time points, simulate from the
t_0 cells to every later time and compare with the data there by W1 (EMD, Euclidean ground
cost), true W2 and unbiased Gaussian MMD² (median-heuristic bandwidth of the data at that
time, fixed per time for every method). eAM is stochastic: ``--repeats`` Brownian repeats,
mean ± std. MIOFlow (``benchmarks/peers``) is deterministic: one run. A figure shows the
metrics against time for each number of time steps.

The comparison with the training cells is MIOFlow's protocol; a model can score below the
sampling noise there by reproducing the training cells themselves. The same simulated cells are
therefore also compared with an independent draw of the same distribution (``seed=1``, the
same number of cells), beside the floor W1(training cells, independent draw) at each time.

trajinfer runs with ``tj.fit``'s defaults (``trajinfer._defaults``: interpolation, iterations,
learning rate, network, ``smoothing="auto"``), the row users get; MIOFlow keeps its package default
of 100 epochs; the fit times of both are in the tables.

``--loo`` runs the leave-one-time-point-out protocol at 5 time points instead: for k = 1, 2, 3 fit
without time point k, push the cells of k−1 to the time of k and compare with the cells of k (and
with the independent draw), for trajinfer, MIOFlow (which takes the rank of each time label as
its time, so its push ends halfway between the ranks of k−1 and k+1) and TorchCFM's OT-CFM and
SF2M (package defaults, the same protocol as ``benchmarks/eb.py --loo``).

Usage::

    python benchmarks/petals.py --quick --out /tmp/petals
    python benchmarks/petals.py
    python benchmarks/petals.py --loo          # petals_loo.md/json
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

METRICS = ("w1", "w2", "mmd")
LABELS = {"w1": "W1 (EMD, Euclidean cost)", "w2": "W2 (true)", "mmd": "MMD²"}


def bandwidth(y: np.ndarray) -> float:
    d2 = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return float(np.sqrt(np.median(d2[np.triu_indices(len(y), 1)]) / 2.0))


def score(traj_X: list[np.ndarray], snaps: list[np.ndarray], repeats: int, weights=None) -> list[dict[str, Any]]:
    """traj_X[k]: (repeats*n0, d) positions at time k (k = 1..K-1)."""
    n0 = snaps[0].shape[0]
    out = []
    for k in range(1, len(snaps)):
        bw = bandwidth(snaps[k])
        rows = []
        for r in range(repeats):
            sl = slice(r * n0, (r + 1) * n0)
            w = None if weights is None else weights[k][sl]
            rows.append({"w1": tj.metrics.w1(traj_X[k][sl], snaps[k], wa=w), "w2": tj.metrics.w2(traj_X[k][sl], snaps[k], wa=w),
                         "mmd": tj.metrics.mmd(traj_X[k][sl], snaps[k], wa=w, bandwidth=bw)})
        res = {"t": k, "n_repeats": repeats}
        for m in METRICS:
            v = np.array([row[m] for row in rows])
            res[m], res[f"{m}_std"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
        out.append(res)
    return out


def run_one(n_times: int, args, quick: bool) -> dict[str, Any]:
    adata = tj.datasets.petals(n_times=n_times, n_per_time=args.n_per_time, noise=0.1, seed=0)
    X = np.asarray(adata.X, dtype=np.float64)
    t = adata.obs["time"].to_numpy()
    snaps = [X[t == k] for k in range(n_times)]
    held_out = tj.datasets.petals(n_times=n_times, n_per_time=args.n_per_time, noise=0.1, seed=1)
    held = [np.asarray(held_out.X, dtype=np.float64)[held_out.obs["time"].to_numpy() == k] for k in range(n_times)]
    result: dict[str, Any] = {"n_times": n_times, "n_per_time": args.n_per_time, "methods": {}}
    steps_per_unit = 5 if quick else 50

    # trajinfer eAM
    sigma = default_sigma(X, t)
    settings = {"hidden_dims": defaults.ON_SNAPSHOTS['hidden_dims'], "n_iter": args.n_iter, "batch_size": defaults.BATCH_SIZE, "lr": args.lr}
    rec: dict[str, Any] = {"settings": {**settings, "sigma": sigma, "interpolation": args.interpolation, "smoothing": args.smoothing}}
    with C.measure(rec):
        path = tj.SnapshotPath(X, t, interpolation=args.interpolation, sigma=sigma, smoothing=args.smoothing)
        model = tj.ActionMatching(method="eam", sigma=sigma, seed=0, run=tj.RunConfig(progress=False, device="cpu"), **settings).fit(path)
    t0 = time.perf_counter()
    tr = model.simulate(np.tile(snaps[0], (args.repeats, 1)), 0, n_times - 1, n_steps=steps_per_unit * (n_times - 1), seed=0, progress=False)
    idx = [k * steps_per_unit for k in range(n_times)]
    traj = [tr.X[i].astype(np.float64) for i in idx]
    rec["simulate_seconds"] = time.perf_counter() - t0
    rec["per_t"] = score(traj, snaps, args.repeats)
    rec["per_t_heldout"] = score(traj, held, args.repeats)
    result["methods"]["trajinfer eAM"] = rec
    print(f"  n_times={n_times} eAM fit {rec['fit_seconds']:.0f} s W1 {[round(r['w1'], 3) for r in rec['per_t']]}", flush=True)

    # MIOFlow (its rows do not depend on trajinfer's settings: --reuse-peers reads them back)
    earlier = next((r for r in args.earlier.get("runs", []) if r["n_times"] == n_times and r["n_per_time"] == args.n_per_time), None)
    if earlier is not None and "per_t" in earlier["methods"].get("MIOFlow", {}):
        rec = {**earlier["methods"]["MIOFlow"], "reused_from": str(args.reuse_peers)}
    else:
        rec = mioflow_row(snaps, held, n_times, args)
    result["methods"]["MIOFlow"] = rec
    print(f"  n_times={n_times} MIOFlow", rec.get("error") or f"fit {rec['fit_seconds']:.0f} s W1 {[round(r['w1'], 3) for r in rec['per_t']]}", flush=True)
    result["no_move"] = score([None] + [snaps[0]] * (n_times - 1), snaps, 1)
    result["floor_heldout"] = score([None] + snaps[1:], held, 1)
    return result


def figure(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = payload["runs"]
    fig, axes = plt.subplots(len(METRICS), len(runs), figsize=(4 * len(runs), 3 * len(METRICS)), squeeze=False)
    styles = {"trajinfer eAM": "C0", "MIOFlow": "C1"}
    for j, run in enumerate(runs):
        for i, m in enumerate(METRICS):
            ax = axes[i, j]
            for name, rec in run["methods"].items():
                if "per_t" not in rec:
                    continue
                ts = [r["t"] for r in rec["per_t"]]
                ax.errorbar(ts, [r[m] for r in rec["per_t"]], yerr=[r[f"{m}_std"] for r in rec["per_t"]], label=name, color=styles.get(name), marker="o", ms=3, capsize=2)
            ax.plot([r["t"] for r in run["no_move"]], [r[m] for r in run["no_move"]], "k:", label="no move (t_0 data)")
            ax.set_title(f"{run['n_times']} time steps")
            ax.set_xlabel("time label")
            ax.set_ylabel(LABELS[m])
            if m == "mmd":
                ax.set_yscale("symlog", linthresh=1e-3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(p: dict[str, Any]) -> str:
    parts = ["# Petals: trajinfer eAM vs MIOFlow", "", C.provenance_md(p["provenance"]), "",
             "Simulated from the t_0 cells; metrics against the data at each time label. eAM: mean ± std over "
             f"{p['repeats']} Brownian repeats; MIOFlow: deterministic, one run. W1 = EMD with Euclidean ground cost; "
             "W2 = true 2-Wasserstein; MMD² unbiased, Gaussian kernel with the median-heuristic bandwidth of the data at that time.", "",
             f"Compute budget: eAM {p['n_iter']} iterations (settings in the JSON), MIOFlow {p['mioflow_epochs']} epochs (package default 100); "
             f"single-threaded processes on a {p['provenance']['machine']['cpu_cores']}-core machine (load average at start "
             f"{p['provenance']['machine'].get('load_average_at_start')}); *fit s* is the wall-clock time of the fit alone.", "",
             "![metrics vs time](petals.png)", ""]
    reused = sorted({r["methods"]["MIOFlow"]["reused_from"] for r in p["runs"] if r["methods"].get("MIOFlow", {}).get("reused_from")})
    if reused:
        parts += [f"MIOFlow's rows (which do not depend on trajinfer's settings) were read from the earlier run in {', '.join(reused)}, "
                  "made with the same data and budget; their fit times are that run's.", ""]
    for run in p["runs"]:
        parts += [f"## {run['n_times']} time steps ({run['n_per_time']} cells per time)", ""]
        header = ["method", "metric"] + [f"t={r['t']}" for r in run["no_move"]] + ["mean", "fit s", "fit peak RSS increase MB"]
        rows = []
        for name, rec in run["methods"].items():
            if "per_t" not in rec:
                rows.append([name, f"error: {rec.get('error')}"] + [""] * (len(header) - 2))
                continue
            for m in METRICS:
                rows.append([name, LABELS[m]] + [C.pm(r[m], r[f"{m}_std"]) for r in rec["per_t"]]
                            + [C.fmt(np.mean([r[m] for r in rec["per_t"]])), C.fmt(rec["fit_seconds"], 0) if m == "w1" else "",
                               C.fmt(rec["fit_rss_increase_mb"], 0) if m == "w1" else ""])
        for m in METRICS:
            rows.append(["no move (t_0 data)", LABELS[m]] + [C.fmt(r[m]) for r in run["no_move"]] + [C.fmt(np.mean([r[m] for r in run["no_move"]])), "", ""])
        parts += [C.md_table(header, rows), ""]
        parts += ["Against an independent draw of the same distribution (generalisation):", ""]
        rows = []
        for name, rec in run["methods"].items():
            if "per_t_heldout" in rec:
                rows += [[name, LABELS[m]] + [C.pm(r[m], r[f"{m}_std"]) for r in rec["per_t_heldout"]]
                         + [C.fmt(np.mean([r[m] for r in rec["per_t_heldout"]]))] for m in ("w1", "mmd")]
        rows += [["floor: training cells vs independent draw", LABELS[m]] + [C.fmt(r[m]) for r in run["floor_heldout"]]
                 + [C.fmt(np.mean([r[m] for r in run["floor_heldout"]]))] for m in ("w1", "mmd")]
        parts += [C.md_table(header[:-2], rows), ""]
    parts += ["Settings:", ""]
    for name, rec in p["runs"][0]["methods"].items():
        parts.append(f"- {name}: `{rec.get('settings', rec.get('error'))}`")
    parts.append("")
    return "\n".join(parts)


def mioflow_row(snaps: list[np.ndarray], held: list[np.ndarray], n_times: int, args) -> dict[str, Any]:
    """Fit MIOFlow on the snapshots and score its push from t_0 against the cells and the independent draw."""
    rec: dict[str, Any] = {}
    try:
        from peers import fit_mioflow
    except Exception as err:
        rec["error"] = f"{type(err).__name__}: {err}"
        return rec
    with C.measure(rec):
        mf, err = C.safe_run(lambda: fit_mioflow(snaps, list(range(n_times)), n_epochs=args.mioflow_epochs, seed=0))
    if err:
        rec["error"] = err
        return rec
    rec["settings"] = mf.settings

    def pushes():
        from torchdiffeq import odeint

        x = torch.as_tensor((snaps[0] - mf.mf.mean_vals) / mf.mf.std_vals, dtype=torch.float32)
        mf.mf.ode_model.eval().reset_momentum()
        with torch.no_grad():
            out = odeint(mf.mf.ode_model, x, torch.arange(n_times, dtype=torch.float32))
        return [o.numpy().astype(np.float64) * mf.mf.std_vals + mf.mf.mean_vals for o in out]

    traj, err = C.safe_run(pushes)
    if err:
        rec["error"] = err
    else:
        rec["per_t"] = score(traj, snaps, 1)
        rec["per_t_heldout"] = score(traj, held, 1)
    return rec


PEERS = (("mioflow", "MIOFlow", False), ("otcfm", "TorchCFM OT-CFM", False), ("sf2m", "TorchCFM SF2M", True))


def loo(args, quick: bool, prov: dict[str, Any]) -> dict[str, Any]:
    """Leave one time point out at 5 time points: trajinfer (tj.fit defaults), MIOFlow and
    TorchCFM's OT-CFM and SF2M, each with its package defaults."""
    import peers

    n_times = 5
    adata = tj.datasets.petals(n_times=n_times, n_per_time=args.n_per_time, noise=0.1, seed=0)
    X, t = np.asarray(adata.X, dtype=np.float64), adata.obs["time"].to_numpy()
    snaps = [X[t == k] for k in range(n_times)]
    other = tj.datasets.petals(n_times=n_times, n_per_time=args.n_per_time, noise=0.1, seed=1)
    held = [np.asarray(other.X, dtype=np.float64)[other.obs["time"].to_numpy() == k] for k in range(n_times)]
    trajinfer_row = "trajinfer eAM, defaults"
    rows: dict[str, dict[str, Any]] = {trajinfer_row: {}, **{name: {} for _, name, _ in PEERS}}
    # the peers' rows do not depend on trajinfer's settings: read them from an earlier petals_loo.json
    earlier = args.earlier.get("rows", {})
    reused = {name: {int(k): v for k, v in earlier[name].items()} for _, name, _ in PEERS if name in earlier}
    rows.update(reused)

    def record(name: str, k: int, pieces: list[np.ndarray], fit_seconds: float) -> None:
        rows[name][k] = {"w1": float(np.mean([tj.metrics.w1(p, snaps[k]) for p in pieces])),
                         "w1_independent": float(np.mean([tj.metrics.w1(p, held[k]) for p in pieces])), "fit_seconds": fit_seconds}
        print(f"[loo] k={k}: {name} {rows[name][k]['w1']:.3f} (fit {fit_seconds:.0f} s)", flush=True)

    for k in range(1, n_times - 1):
        keep = [j for j in range(n_times) if j != k]
        train = [snaps[j] for j in keep]
        n = len(snaps[k - 1])
        Xk, tk = np.concatenate(train), np.concatenate([np.full(len(snaps[j]), float(j)) for j in keep])
        rec: dict[str, Any] = {}
        with C.measure(rec):
            model = tj.fit(tj_adata(Xk, tk), "time", n_iter=args.n_iter, lr=args.lr, interpolation=args.interpolation,
                           smoothing=args.smoothing, progress=False, device="cpu")
        out = model.simulate(np.tile(snaps[k - 1], (args.repeats, 1)), k - 1, k, n_steps=50, seed=k, progress=False).X[-1]
        record(trajinfer_row, k, [out[r * n:(r + 1) * n].astype(np.float64) for r in range(args.repeats)], rec["fit_seconds"])
        for key, name, stochastic in PEERS:
            if name in reused:
                continue
            # MIOFlow takes the rank of each time label as its time: with k held out its push ends
            # halfway between the ranks of k−1 and k+1; TorchCFM takes the labels themselves
            rec = {}
            with C.measure(rec):
                if key == "mioflow":
                    peer = peers.fit_mioflow(train, list(range(len(keep))), n_epochs=args.mioflow_epochs, seed=0)
                else:
                    peer = getattr(peers, f"fit_{key}")(train, keep, seed=0, **({"n_iter": 20} if quick else {}))
            copies = args.repeats if stochastic else 1
            pushed, _ = peer.push(np.tile(snaps[k - 1], (copies, 1)), k - 1, k - 0.5 if key == "mioflow" else k, seed=k)
            record(name, k, [np.asarray(pushed[r * n:(r + 1) * n], dtype=np.float64) for r in range(copies)], rec["fit_seconds"])
    ks = list(range(1, n_times - 1))
    no_move = {k: tj.metrics.w1(snaps[k - 1], snaps[k]) for k in ks}
    floor = {k: tj.metrics.w1(snaps[k], held[k]) for k in ks}
    table = []
    for name, r in rows.items():
        table.append([name, *[f"{C.fmt(r[k]['w1'])} / {C.fmt(r[k]['w1_independent'])}" for k in ks],
                      C.fmt(np.mean([r[k]["w1"] for k in ks])), C.fmt(np.mean([r[k]["fit_seconds"] for k in ks]), 1)])
    table.append(["no move", *[C.fmt(no_move[k]) for k in ks], C.fmt(np.mean(list(no_move.values()))), ""])
    table.append(["floor W1(cells, independent draw)", *[C.fmt(floor[k]) for k in ks], C.fmt(np.mean(list(floor.values()))), ""])
    md = "\n".join(["# Petals, leave one time point out (5 time points)", "", C.provenance_md(prov), "",
                    "Fit without time point k, push the cells of k−1 to k; W1 to the cells of k / to an independent draw. "
                    f"trajinfer: `tj.fit` defaults (eAM, interpolation {args.interpolation}, {args.n_iter} iterations, lr {args.lr}), "
                    f"{args.repeats} stochastic repeats (SF2M too); MIOFlow: {args.mioflow_epochs} epochs; TorchCFM: the adapter's "
                    "package defaults (benchmarks/peers). One CPU thread, one fit at a time."
                    + (f" The peers' rows were read from the earlier run in {args.reuse_peers}." if reused else ""), "",
                    C.md_table(["method", *[f"k={k}" for k in ks], "mean (cells)", "fit s"], table), ""])
    payload = {"provenance": prov, "rows": rows, "no_move": no_move, "floor": floor, "n_iter": args.n_iter, "repeats": args.repeats}
    args.out.mkdir(parents=True, exist_ok=True)
    C.write_json(args.out / "petals_loo.json", payload)
    C.write_text(args.out / "petals_loo.md", md)
    print(md)
    return payload


def tj_adata(X: np.ndarray, t: np.ndarray):
    import anndata as ad
    import pandas as pd

    return ad.AnnData(X.astype(np.float32), obs=pd.DataFrame({"time": t}, index=[str(i) for i in range(len(X))]))


def merge(out: Path) -> dict[str, Any]:
    import json

    files = sorted(out.glob("petals_part_*.json"), key=lambda f: int(f.stem.rsplit("_", 1)[1]))
    if not files:
        raise FileNotFoundError(f"No petals_part_*.json in {out}.")
    parts = [json.loads(f.read_text()) for f in files]
    payload = dict(parts[0])
    payload["runs"] = [p["runs"][0] for p in parts]
    payload["provenance"] = dict(payload["provenance"])
    payload["provenance"]["parts"] = [p["provenance"] for p in parts]
    payload["provenance"]["command"] = " ; ".join(p["provenance"]["command"] for p in parts) + " ; " + C.command_line()
    C.write_json(out / "petals.json", payload)
    figure(payload, out / "petals.png")
    C.write_text(out / "petals.md", markdown(payload))
    print((out / "petals.md").read_text())
    return payload


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=C.RESULTS)
    parser.add_argument("--n-times", default="5,10,15")
    parser.add_argument("--n-per-time", type=int, default=None)
    parser.add_argument("--n-iter", type=int, default=None)
    parser.add_argument("--mioflow-epochs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--interpolation", default=defaults.INTERPOLATION)
    parser.add_argument("--lr", type=float, default=defaults.ON_SNAPSHOTS['lr'], help="trajinfer learning rate")
    parser.add_argument("--smoothing", default="auto", help="snapshot kernel width (data units) or 'auto'")
    parser.add_argument("--loo", action="store_true", help="leave-one-time-point-out protocol at 5 time points (petals_loo.md/json)")
    parser.add_argument("--reuse-peers", type=Path, default=None, metavar="JSON",
                        help="read the peers' rows from an earlier petals.json (or petals_loo.json with --loo; same time points "
                             "and cells) instead of refitting")
    parser.add_argument("--part", action="store_true", help="write petals_part_<n_times>.json only (parallel processes; combine with --merge)")
    parser.add_argument("--merge", action="store_true", help="combine petals_part_*.json in --out into petals.json/.md/.png")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.merge:
        return merge(args.out)
    quick = args.quick
    args.n_per_time = args.n_per_time or (30 if quick else 200)
    args.n_iter = args.n_iter or (20 if quick else defaults.ON_SNAPSHOTS['n_iter'])
    if args.smoothing != "auto":
        args.smoothing = float(args.smoothing)
    args.mioflow_epochs = args.mioflow_epochs or (2 if quick else 100)
    args.repeats = args.repeats or (2 if quick else 20)
    args.earlier = json.loads(args.reuse_peers.read_text()) if args.reuse_peers else {}  # petals.json or petals_loo.json
    n_times_list = [3] if quick and args.n_times == "5,10,15" else [int(x) for x in args.n_times.split(",")]
    prov = C.provenance({"mode": "quick" if quick else "full"}, argv, f"benchmarks/{Path(__file__).name}")
    print(C.provenance_md(prov), flush=True)
    if args.loo:
        return loo(args, quick, prov)
    runs = [run_one(n, args, quick) for n in n_times_list]
    payload = {"benchmark": "petals (MIOFlow synthetic data), simulate from t_0", "provenance": prov, "repeats": args.repeats,
               "n_iter": args.n_iter, "mioflow_epochs": args.mioflow_epochs, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part:
        for run in runs:
            C.write_json(args.out / f"petals_part_{run['n_times']}.json", {**payload, "runs": [run]})
        return payload
    C.write_json(args.out / "petals.json", payload)
    figure(payload, args.out / "petals.png")
    C.write_text(args.out / "petals.md", markdown(payload))
    print((args.out / "petals.md").read_text())
    return payload


if __name__ == "__main__":
    main()
