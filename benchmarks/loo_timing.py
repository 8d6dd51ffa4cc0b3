"""What bounds leave-one-time-point-out: where along the path the held-out population lies is
not predictable from the other time points.

No model is fitted. For each representation of the embryoid body and of dyngen, and each
held-out label h (``dims.py``'s protocol: the
training cells without label h; W1, Euclidean ground cost, against the test cells of h), the
exact-OT displacement interpolation of the training cells of h−1 and h+1 is read at a fraction
λ of the way and scored, for four rules of choosing λ:

- ``time``: λ proportional to time (½ here: the labels are evenly spaced). Every interpolation
  between h−1 and h+1 at constant speed, trajinfer's included, does this.
- ``arc length``: λ from the Wasserstein-2 arc length of the training time points, interpolated
  at the held-out time by a monotone cubic (PCHIP) through the cumulative lengths: a path through
  every time point that carries the population's speed from the neighbouring intervals over.
- ``mean spline``: λ = ½, every interpolated cell shifted by the difference between a natural
  cubic spline through the training time points' means and the straight line between the means
  of h−1 and h+1 at the held-out time: the curvature of the mean path.
- ``oracle λ``: the λ of a grid (0.1 to 0.9) whose interpolation is nearest in W1 to the
  *training* cells of h, the held-out label: it uses what leave-one-out hides, so it bounds what
  any choice of the timing along this path can reach.

Gap closed = (no move − W1) / (no move − floor), from the means over h, as in ``dims.py``; the
same interpolations are scored by the unbiased energy distance too (``dims.py``'s companion metric).

Usage::

    python benchmarks/loo_timing.py                     # std5, raw5, std50, raw50, pca10, pca50
    python benchmarks/loo_timing.py --reps std5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import dims

import trajinfer as tj

REPS = ("std5", "raw5", "std50", "raw50", "pca10", "pca50")
RULES = ("time", "arc length", "mean spline", "oracle λ")
GRID = np.round(np.arange(0.1, 0.91, 0.05), 2)


def ot_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``a`` and ``b`` coupled by the exact OT plan for the squared Euclidean cost, and the plan's weight of each pair."""
    import ot

    plan = ot.emd(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), ot.dist(a, b), numItermax=10_000_000)
    rows, cols = np.nonzero(plan > 0)
    return a[rows], b[cols], plan[rows, cols]


def w2(a: np.ndarray, b: np.ndarray) -> float:
    import ot

    cost = ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), ot.dist(a, b), numItermax=10_000_000)
    return float(np.sqrt(max(cost, 0.0)))


def fold(ds: dims.Dataset, h: int) -> dict[str, Any]:
    """Every rule's λ and test W1 at held-out label ``h``."""
    from scipy.interpolate import CubicSpline, PchipInterpolator

    keep = [j for j in range(len(ds.times)) if j != h]
    times = np.array([ds.times[j] for j in keep])
    train = [ds.train[j] for j in keep]
    source, target, weights = ot_pairs(ds.train[h - 1], ds.train[h + 1])
    t_prev, t_h, t_next = ds.times[h - 1], ds.times[h], ds.times[h + 1]
    lam_time = (t_h - t_prev) / (t_next - t_prev)
    at = keep.index(h - 1)
    lengths = np.concatenate([[0.0], np.cumsum([w2(train[k], train[k + 1]) for k in range(len(train) - 1)])])
    arc = float(PchipInterpolator(times, lengths)(t_h))
    lam_arc = (arc - lengths[at]) / (lengths[at + 1] - lengths[at])
    means = np.array([x.mean(0) for x in train])
    shift = CubicSpline(times, means, axis=0, bc_type="natural")(t_h) - ((1 - lam_time) * means[at] + lam_time * means[at + 1])

    def interpolated(lam: float) -> np.ndarray:
        return (1 - lam) * source + lam * target

    to_train = {float(lam): tj.metrics.w1(interpolated(lam), ds.train[h], wa=weights) for lam in GRID}
    lam_oracle = min(to_train, key=to_train.get)
    test = ds.test[h]
    scores = {"time": dims.distances(interpolated(lam_time), test, weights),
              "arc length": dims.distances(interpolated(lam_arc), test, weights),
              "mean spline": dims.distances(interpolated(lam_time) + shift, test, weights),
              "oracle λ": dims.distances(interpolated(lam_oracle), test, weights)}
    out: dict[str, Any] = {"lambda": {"time": lam_time, "arc length": lam_arc, "mean spline": lam_time, "oracle λ": lam_oracle}}
    baselines = {"no_move": dims.distances(ds.test[h - 1], test), "floor": dims.distances(ds.train[h], test)}
    for metric in dims.METRICS:
        for kind, values in baselines.items():
            out[dims.baseline_key(kind, metric)] = values[metric]
        out[metric] = {rule: score[metric] for rule, score in scores.items()}
    return out


def markdown(payload: dict[str, Any]) -> str:
    rows = []
    for rep, folds in payload["entries"].items():
        hs = sorted(folds, key=int)
        gaps = {}
        for metric in dims.METRICS:
            no_move = np.mean([folds[h][dims.baseline_key("no_move", metric)] for h in hs])
            floor = np.mean([folds[h][dims.baseline_key("floor", metric)] for h in hs])
            gaps[metric] = (no_move, floor)
        for rule in RULES:
            cells = []
            for metric, (no_move, floor) in gaps.items():
                v = [folds[h][metric][rule] for h in hs]
                cells += [" ".join(C.fmt(x) for x in v), C.fmt(np.mean(v)), C.fmt((no_move - np.mean(v)) / (no_move - floor), 2)]
            rows.append([rep, rule, " ".join(f"{folds[h]['lambda'][rule]:.2f}" for h in hs), *cells])
        cells = []
        for metric, (no_move, floor) in gaps.items():
            cells += [" ".join(C.fmt(folds[h][dims.baseline_key("no_move", metric)]) for h in hs) + " / "
                      + " ".join(C.fmt(folds[h][dims.baseline_key("floor", metric)]) for h in hs), f"{C.fmt(no_move)} / {C.fmt(floor)}", ""]
        rows.append([rep, "no move / floor", "", *cells])
    header = ["representation", "rule", "λ at h = 1 2 3"]
    for name in dims.METRICS.values():
        header += [f"{name} at h = 1 2 3", f"mean {name}", f"gap closed ({name})"]
    table = C.md_table(header, rows)
    return C.results_page("Leave one time point out: what the timing along the path bounds", C.provenance_md(payload["provenance"]),
                          __doc__, [table, ""], payload.get("observations"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=lambda s: s.split(","), default=list(REPS))
    parser.add_argument("--data", type=Path, default=dims.DATA)
    parser.add_argument("--out", type=Path, default=C.RESULTS)
    parser.add_argument("--observations", type=Path, default=None)
    args = parser.parse_args(argv)
    payload: dict[str, Any] = {"provenance": C.provenance(argv=argv, script="benchmarks/loo_timing.py"), "entries": {}}
    for rep in args.reps:
        dataset = next(name for name, reps in dims.REPRESENTATIONS.items() if rep in reps)
        ds = dims.load(dataset, rep, args.data)
        payload["entries"][rep] = {str(h): fold(ds, h) for h in (1, 2, 3)}
        print(f"[loo_timing] {rep}: " + ", ".join(f"{r} {np.mean([f['w1'][r] for f in payload['entries'][rep].values()]):.3f}" for r in RULES), flush=True)
    C.save_results(args.out, "loo_timing", payload, markdown, args.observations)
    return payload


if __name__ == "__main__":
    main()
