"""The GPU checks, as one short script (under 8 minutes on one data-centre GPU).

1. ``eb``: the embryoid body's default fit, ``tj.fit(adata, "time", device=...)`` on the NLSB val
   split (time points 0..4), then the test cells of each day pushed to the next (one-step W1, 10 repeats);
2. ``simulate``: that model simulating 1,000,000 cells for 100 Euler–Maruyama steps;
3. ``atlas``: the whole AnnData workflow of ``benchmarks/atlas.py`` (fit, simulate, fate,
   transition matrix, CellRank kernel, held-out time point, plots) at its defaults on
   ``--atlas-cells`` cells of the synthetic atlas, on the GPU ``device="auto"`` picks; seconds
   and peak memory per stage;
4. ``digits``: Action Matching generation on scikit-learn's digits at a larger budget than the
   CPU benchmark (``--digits-iter`` iterations, batch 256), Fréchet distance in the features of
   the digit classifier of ``benchmarks/vision.py``, beside flow matching at the same budget.

Writes ``gpu.json`` and ``gpu.md`` in ``--out``. Without a GPU the script says so and exits
(``--allow-cpu`` runs it on the CPU, with ``--quick`` sizes, as a smoke test).

Usage::

    python benchmarks/gpu.py                                  # on a GPU machine
    python benchmarks/gpu.py --quick --allow-cpu --out /tmp/gpu
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import atlas as AB
import eb as EB
import vision as VB

import trajinfer as tj
from trajinfer import vision
from trajinfer._device import resolve_device

DATA = C.REPO.parent / "shared" / "data"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_eb(device: torch.device, data: Path, quick: bool) -> tuple[dict[str, Any], tj.ActionMatching, np.ndarray]:
    adata = tj.datasets.embryoid_body(data, split="val")
    _, test = EB.load(data)
    if quick:
        adata = adata[::10].copy()
        test = [t[:50] for t in test]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model = tj.fit(adata, "time", device=device, progress=False, **({"n_iter": 20} if quick else {}))
        synchronize(device)
        fit_s = time.perf_counter() - start
    bws = [EB.bandwidth(t) for t in test]
    per_k = EB.evaluate(EB.am_push(model, 10 if quick else 100), test, 2 if quick else 10, bws, metric_repeats=1)
    row = {"task": "eb default fit", "fit_s": fit_s, "n_iter": model.n_iter_, "w1": [r["w1"] for r in per_k]}
    return row, model, test[0]


def run_simulate(model: tj.ActionMatching, start: np.ndarray, device: torch.device, quick: bool) -> dict[str, Any]:
    n_cells, n_steps = (10_000, 10) if quick else (1_000_000, 100)
    X0 = start[np.random.default_rng(0).integers(0, len(start), n_cells)]
    t0, t1 = model.t_range_
    began = time.perf_counter()
    traj = model.simulate(X0, t0, t1, n_steps=n_steps, seed=0, progress=False)
    synchronize(device)
    seconds = time.perf_counter() - began
    return {"task": "simulate", "n_cells": n_cells, "n_steps": n_steps, "seconds": seconds,
            "cell_steps_per_s": n_cells * n_steps / seconds, "finite": bool(np.isfinite(traj.X[-1]).all())}


def run_atlas(n_cells: int, quick: bool, out: Path) -> dict[str, Any]:
    """``benchmarks/atlas.py``'s workflow on ``n_cells`` cells, in this process (its plots go to ``out``)."""
    began = time.perf_counter()
    rec = AB.run_size(n_cells, quick, out)
    return {"task": "atlas", "n_cells": n_cells, "seconds": time.perf_counter() - began,
            "stages": {name: {k: v for k, v in stage.items() if k in ("seconds", "peak_increase_mb", "error", "skipped")}
                       for name, stage in rec["stages"].items()},
            "accuracy": rec.get("accuracy", {})}


def run_digits(device: torch.device, n_iter: int, quick: bool, seed: int = 0) -> list[dict[str, Any]]:
    digits = vision.load_digits()
    train, test = digits.split(0.2, seed=seed)
    if quick:
        train, test = train.subset(slice(0, 128)), test.subset(slice(0, 64))
    unet = VB.QUICK.unet if quick else VB.FULL.unet
    batch, steps = (16, 3) if quick else (256, 25)
    evaluator = VB.Evaluator("digits", train, test, 2 if quick else VB.FULL.classifier_epochs, seed)
    path = vision.LinearPath(train.images, bin_width=digits.bin_width, device=device)
    x0 = path.prior_sample(len(test), torch.Generator(device=device).manual_seed(seed + 1))
    args = argparse.Namespace(seed=seed, device=device, progress=False)
    rows = []
    start = time.perf_counter()
    est = VB._am(path, unet, n_iter, batch, VB.FULL.lr, args)
    synchronize(device)
    am_s = time.perf_counter() - start
    rows.append({"task": "digits generation", "model": "AM", "n_iter": n_iter, "batch_size": batch, "fit_s": am_s,
                 "fd": evaluator.fd(path.to_images(VB._am_sample(est, path, x0, steps)))})
    start = time.perf_counter()
    fm = vision.FlowMatching(VB._seeded(seed, vision.UNet, digits.image_shape, **unet), n_iter=n_iter, batch_size=batch,
                             lr=VB.FULL.lr, device=device, seed=seed, progress=False).fit(path)
    synchronize(device)
    fm_s = time.perf_counter() - start
    samples = vision.ode_sample(fm.field(), x0, n_steps=steps, solver="rk4")
    rows.append({"task": "digits generation", "model": "Flow Matching", "n_iter": n_iter, "batch_size": batch,
                 "fit_s": fm_s, "fd": evaluator.fd(path.to_images(samples))})
    return rows


def markdown(payload: dict[str, Any]) -> str:
    lines = ["# GPU checks", "", C.provenance_md(payload["provenance"]), "", f"Device: {payload['device_name']}.", ""]
    for row in payload["rows"]:
        if row["task"] == "eb default fit":
            lines.append(f"- Embryoid body, `tj.fit` defaults ({row['n_iter']} iterations): fit {row['fit_s']:.1f} s; "
                         "one-step W1 at k = 1..4: " + " / ".join(C.fmt(w) for w in row["w1"]) + ".")
        elif row["task"] == "simulate":
            lines.append(f"- Simulate {row['n_cells']:,} cells × {row['n_steps']} steps: {row['seconds']:.1f} s "
                         f"({row['cell_steps_per_s']:.3g} cell-steps per second; all finite: {row['finite']}).")
        elif row["task"] == "atlas":
            stages = ", ".join(f"{name} {stage['seconds']:.1f} s" if "seconds" in stage else f"{name} {stage.get('skipped', '–')}"
                               for name, stage in row["stages"].items())
            lines.append(f"- Atlas workflow at defaults on {row['n_cells']:,} cells: {row['seconds']:.0f} s in all ({stages}).")
        else:
            lines.append(f"- Digits generation, {row['model']}, {row['n_iter']} iterations of batch {row['batch_size']}: "
                         f"fit {row['fit_s']:.1f} s, FD-digits-classifier {C.fmt(row['fd'], 2)}.")
    lines.append(f"\nTotal: {payload['total_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (with --quick: a smoke test)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=C.RESULTS)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--atlas-cells", type=int, default=1_000_000, help="cells of the atlas workflow (quick: 1,500)")
    parser.add_argument("--digits-iter", type=int, default=10_000, help="AM and flow-matching iterations on digits")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type != "cuda" and not args.allow_cpu:
        print("No GPU found (torch.cuda.is_available() is False); nothing run. Pass --allow-cpu for a CPU smoke run.")
        return None
    began = time.perf_counter()
    eb_row, model, start = run_eb(device, args.data, args.quick)
    rows = [eb_row, run_simulate(model, start, device, args.quick),
            run_atlas(1_500 if args.quick else args.atlas_cells, args.quick, args.out),
            *run_digits(device, 20 if args.quick else args.digits_iter, args.quick)]
    payload = {"provenance": C.provenance(argv=argv), "rows": rows, "total_s": time.perf_counter() - began,
               "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"}
    C.write_json(args.out / "gpu.json", payload)
    C.write_text(args.out / "gpu.md", markdown(payload))
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
