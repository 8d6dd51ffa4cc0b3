"""Fingerprint of small fits: proves a refactoring keeps every fit the same, bit for bit.

A set of short fits covers each variant (am, eam, uam, ueam, c-AM), each path (mixture and OT
snapshots, a function drawing fresh samples), the residual potential, the adaptive time
proposal, gradient accumulation and the AnnData front end. Their loss curves, velocities,
actions, growth rates, simulations, likelihoods, scores and diagnostics are saved to an
``.npz`` file. Run it on two checkouts (same machine, same torch) and compare:

    python benchmarks/fingerprint.py --out before.npz          # on the old checkout
    python benchmarks/fingerprint.py --out after.npz           # on the new one
    python benchmarks/fingerprint.py --compare before.npz after.npz

The comparison lists every entry that differs; the diagnostics' ``fit_time`` (wall clock) is
left out of the fingerprint, so a behaviour-preserving change reports no difference.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

import trajinfer as tj

RUN = tj.RunConfig(device="cpu", progress=False)


def _ou(t: torch.Tensor) -> torch.Tensor:
    """Samples of a Gaussian whose mean moves as 2t and whose scale grows as 1 + t."""
    return torch.randn(t.shape[0], 2) * (1 + t[:, None]) + 2 * t[:, None]


def fingerprint() -> dict[str, np.ndarray]:
    """Run the fits and return their fingerprints by name."""
    import anndata as ad

    out: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(150, 5)) + k * np.array([1.0, 0.5, 0, 0, 0]) for k in range(3)])
    times = np.repeat([0.0, 1.0, 2.5], 150)
    points = rng.normal(size=(20, 5)).astype(np.float32)
    adata = ad.AnnData(X.astype(np.float32))
    adata.obs["day"] = times
    for method in ("eam", "ueam", "am"):
        for interpolation in ("mixture", "ot"):
            model = tj.fit(adata, time_key="day", method=method, interpolation=interpolation, n_iter=120, progress=False,
                           device="cpu", masses="counts" if method == "ueam" else None)
            key = f"fit_{method}_{interpolation}"
            traj = model.simulate(points, 0.0, 2.5, n_steps=10, seed=1)
            out[key + "_loss"] = model.loss_curve_
            out[key + "_velocity"] = model.velocity(points, 1.3)
            out[key + "_simulated"], out[key + "_log_weights"] = traj.X, traj.log_weights
            out[key + "_obsm"] = adata.obsm["tj_velocity"]
            diagnostics = {k: v for k, v in model.diagnostics_.items() if k != "fit_time"}
            out[key + "_diagnostics"] = np.array([float(v) for _, v in sorted(diagnostics.items())
                                                  if isinstance(v, (int, float)) and not isinstance(v, bool)])
            if method == "am":
                out[key + "_score"] = np.array([model.score(tj.SnapshotPath(X, times), n_samples=512)])
    for method, params in (("am", {}), ("eam", {"sigma": 0.3}), ("am", {"cost": "power"}),
                           ("am", {"potential": "residual", "hidden_dims": (32, 32)})):
        est = tj.ActionMatching(method, n_iter=150, seed=3, run=RUN, **params).fit(_ou, t_range=(0.0, 2.0))
        key = f"callable_{method}_{params.get('cost', params.get('potential', ''))}"
        out[key + "_loss"] = est.loss_curve_
        out[key + "_velocity"] = est.velocity(points[:, :2], 0.7)
        out[key + "_action"] = est.action(points[:, :2], 0.7)
        if method == "am" and not params:
            out[key + "_log_likelihood"] = est.log_likelihood(points[:, :2], lambda x: -0.5 * (x**2).sum(1), n_steps=10)
    path = tj.SnapshotPath(X, times, masses=[1.0, 2.0, 3.0])
    est = tj.ActionMatching("uam", n_iter=100, seed=2, run=RUN).fit(path)
    out["uam_loss"], out["uam_growth"] = est.loss_curve_, est.growth(points, 1.0)
    est = tj.ActionMatching("eam", sigma=0.2, n_iter=100, seed=2, time_proposal="adaptive", run=RUN).fit(path)
    out["adaptive_loss"] = est.loss_curve_
    est = tj.ActionMatching("am", n_iter=60, seed=2, run=RUN.replace(grad_accumulation=2)).fit(path)
    out["accumulation_loss"] = est.loss_curve_
    return out


def compare(before: Path, after: Path) -> list[str]:
    """Names of the entries that differ between two fingerprint files (or exist in one only)."""
    a, b = np.load(before), np.load(after)
    names = sorted(set(a.files) | set(b.files))
    return [name for name in names if name not in a.files or name not in b.files
            or not (a[name].shape == b[name].shape and np.array_equal(a[name], b[name], equal_nan=True))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the fingerprint to this .npz file")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="compare two fingerprint files")
    args = parser.parse_args(argv)
    if args.compare:
        different = compare(*args.compare)
        print(f"{len(different)} entries differ" + (": " + ", ".join(different) if different else ""))
        return 1 if different else 0
    if args.out is None:
        parser.error("give --out FILE or --compare BEFORE AFTER")
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tj.diagnostics.FitWarning)  # short fits: their checks are expected to fail
        prints = fingerprint()
    np.savez(args.out, **prints)
    print(f"{len(prints)} entries written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
