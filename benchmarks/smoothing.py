"""How wide the snapshots' kernel should be: the sweep that sets ``trajinfer.paths.KDE_FACTOR``.

Embryoid body (``dims.py``'s representations), leave one time point out, one default fit per
candidate and fold. Candidates:

- ``prev``: ``smoothing="auto"`` without the density bandwidth (``KDE_FACTOR = 0``), the rule
  before it;
- ``default``: ``smoothing="auto"`` as it is now;
- ``scott=c``: one explicit ``smoothing = c · s · n^{-1/(d+4)}`` for all time points, ``s`` the
  median over the training time points of the RMS per-feature standard deviation of their
  cells, ``n`` the median number of cells, ``d`` the dimension.

Two scores per fit, both W1 at the held-out label h:

- *training LOO* (what chooses the default): push the training cells of h−1 (they are in the
  fit) and compare with the training cells of h (not in the fit);
- *test LOO* (``dims.py``'s protocol, reported, not used to choose): push the test cells of h−1
  and compare with the test cells of h.

Usage::

    python benchmarks/smoothing.py                                  # all representations, h = 1, 2, 3
    python benchmarks/smoothing.py --reps std5,std50 --candidates prev,default
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import dims

import trajinfer as tj

CANDIDATES = ("prev", "scott=0.5", "scott=1")
REPS = ("std5", "raw5", "std20", "std50", "raw50")


def fit(train: list[np.ndarray], times: list[float], candidate: str, seed: int) -> tuple[tj.ActionMatching, float]:
    """``dims.fit_trajinfer`` with ``candidate``'s smoothing; the model and the fit's wall-clock seconds."""
    kw: dict[str, Any] = {}
    factor = tj.paths.KDE_FACTOR
    if candidate == "prev":
        factor = 0.0
    elif candidate.startswith("scott="):
        n = np.median([len(s) for s in train])
        spread = np.median([np.sqrt(s.var(0).mean()) for s in train])
        kw["smoothing"] = float(candidate.split("=")[1]) * float(spread) * n ** (-1.0 / (train[0].shape[1] + 4))
    elif candidate != "default":
        raise ValueError(candidate)
    start = time.perf_counter()
    with dims.density_factor(factor):
        model, _ = dims.fit_trajinfer(train, times, None, seed, False, **kw)
    return model, time.perf_counter() - start


def pushed(model: tj.ActionMatching, cells: np.ndarray, span: tuple[float, float], seed: int) -> np.ndarray:
    """``cells`` simulated from ``span[0]`` to ``span[1]`` (100 Euler–Maruyama steps)."""
    return model.simulate(cells, *span, n_steps=100, seed=seed, progress=False).X[-1].astype(np.float64)


def run(args: argparse.Namespace, payload: dict[str, Any], out: Path) -> None:
    entries = payload["entries"]
    for rep in args.reps:
        ds = dims.load("eb", rep, args.data)
        for h in args.folds:
            keep = [j for j in range(len(ds.times)) if j != h]
            train, times = [ds.train[j] for j in keep], [ds.times[j] for j in keep]
            for cand in args.candidates:
                key = f"{rep}|{h}|{cand}"
                if key in entries:
                    continue
                model, seconds = fit(train, times, cand, args.seed)
                span = (ds.times[h - 1], ds.times[h])
                entries[key] = {
                    "train_loo": tj.metrics.w1(pushed(model, ds.train[h - 1], span, 2), ds.train[h]),
                    "train_no_move": tj.metrics.w1(ds.train[h - 1], ds.train[h]),
                    "test_loo": tj.metrics.w1(pushed(model, ds.test[h - 1], span, 1), ds.test[h]),
                    "test_no_move": tj.metrics.w1(ds.test[h - 1], ds.test[h]),
                    "floor": tj.metrics.w1(ds.train[h], ds.test[h]),
                    "fit_seconds": seconds,
                }
                print(f"[smoothing] {key}: training LOO {entries[key]['train_loo']:.3f}, test LOO {entries[key]['test_loo']:.3f}", flush=True)
                save(payload, out)


def markdown(payload: dict[str, Any]) -> str:
    entries = payload["entries"]
    reps = list(dict.fromkeys(k.split("|")[0] for k in entries))
    cands = list(dict.fromkeys(k.split("|")[2] for k in entries))
    rows = []
    for rep in reps:
        for cand in cands:
            recs = [entries[k] for k in entries if k.startswith(f"{rep}|") and k.endswith(f"|{cand}")]
            if not recs:
                continue
            folds = sorted(int(k.split("|")[1]) for k in entries if k.startswith(f"{rep}|") and k.endswith(f"|{cand}"))
            tr = np.mean([r["train_loo"] for r in recs])
            te = np.mean([r["test_loo"] for r in recs])
            no_move = np.mean([r["test_no_move"] for r in recs])
            floor = np.mean([r["floor"] for r in recs])
            rows.append([rep, cand, ",".join(map(str, folds)), C.fmt(tr), C.fmt(np.mean([r["train_no_move"] for r in recs])),
                         C.fmt(te), C.fmt(no_move), C.fmt((no_move - te) / (no_move - floor), 2),
                         C.fmt(np.mean([r["fit_seconds"] for r in recs]), 1)])
    table = C.md_table(["representation", "candidate", "folds h", "training LOO W1", "training no move", "test LOO W1",
                        "test no move", "test gap closed", "fit s"], rows)
    return C.results_page("Snapshot smoothing: the density bandwidth factor", C.provenance_md(payload["provenance"]), __doc__,
                          [table, ""], payload.get("observations"))


def save(payload: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    C.write_json(out / "smoothing.json", payload)
    C.write_text(out / "smoothing.md", markdown(payload))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=lambda s: s.split(","), default=list(REPS))
    parser.add_argument("--folds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3])
    parser.add_argument("--candidates", type=lambda s: s.split(","), default=list(CANDIDATES))
    parser.add_argument("--data", type=Path, default=dims.DATA)
    parser.add_argument("--out", type=Path, default=C.RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--observations", type=Path, default=None)
    args = parser.parse_args(argv)
    path = args.out / "smoothing.json"
    payload = json.loads(path.read_text()) if path.exists() else {"entries": {}}
    payload["provenance"] = C.provenance(argv=argv, script="benchmarks/smoothing.py")
    if args.observations:
        payload["observations"] = args.observations.read_text().strip()
    run(args, payload, args.out)
    save(payload, args.out)
    return payload


if __name__ == "__main__":
    main()
