"""How far each method's held-out prediction is contracted: the spread of the pushed cells against the held-out cells'.

Embryoid body, ``dims.py``'s leave-one-out protocol (the same fits: its ``run_method``), one
representation per call. For each method and held-out label h: W1 against the test cells of h
and the *spread ratio*, the root mean square per-feature standard deviation of the prediction
over that of the test cells of h (1: the prediction is as wide as the population; below 1: it
is contracted, which ``w1_shrink.md`` shows W1 rewards in many dimensions). trajinfer rows use
one stochastic push (not the 100 of ``dims.md``), MIOFlow and OT-CFM their one deterministic push.

Usage::

    PYTHONPATH=/path/to/peers python benchmarks/spread.py --rep raw50 --methods tj,mioflow
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import dims

import trajinfer as tj


def spread(cells: np.ndarray) -> float:
    """Root mean square per-feature standard deviation."""
    return float(np.sqrt(cells.var(0).mean()))


def markdown(payload: dict[str, Any]) -> str:
    rows = []
    for key, rec in payload["entries"].items():
        rep, method = key.split("|")
        rows.append([rep, dims.NAMES[method], " ".join(C.fmt(x) for x in rec["w1"]), C.fmt(np.mean(rec["w1"])),
                     " ".join(C.fmt(x, 2) for x in rec["spread_ratio"]), C.fmt(np.mean(rec["spread_ratio"]), 2)])
    runs = [f"Run {i} ({', '.join(run['representations'])}): " + C.provenance_md(run["provenance"]) for i, run in enumerate(payload["runs"])]
    table = C.md_table(["representation", "method", "W1 at h = 1 2 3", "mean W1", "spread ratio at h = 1 2 3", "mean ratio"], rows)
    return C.results_page("Spread of the held-out predictions", "\n".join(runs), __doc__, [table, ""], payload.get("observations"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rep", default="raw50")
    parser.add_argument("--methods", type=lambda s: s.split(","), default=["tj", "mioflow"])
    parser.add_argument("--data", type=Path, default=dims.DATA)
    parser.add_argument("--out", type=Path, default=C.RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--observations", type=Path, default=None)
    args = parser.parse_args(argv)
    path = args.out / "spread.json"
    payload = json.loads(path.read_text()) if path.exists() else {"entries": {}, "runs": []}
    payload["runs"].append({"representations": [args.rep], "provenance": C.provenance(argv=argv, script="benchmarks/spread.py")})
    ds = dims.load("eb", args.rep, args.data)
    run_args = argparse.Namespace(quick=False, repeats=1)
    for method in args.methods:
        rec: dict[str, Any] = {"w1": [], "spread_ratio": []}
        for h in (1, 2, 3):
            keep = [j for j in range(len(ds.times)) if j != h]
            out = dims.run_method(method, ds, keep, ds.test[h - 1], h - 1, h, run_args, args.seed)
            pred = out["preds"][0]
            rec["w1"].append(tj.metrics.w1(pred, ds.test[h]))
            rec["spread_ratio"].append(spread(pred) / spread(ds.test[h]))
        payload["entries"][f"{args.rep}|{method}"] = rec
        print(f"[spread] {args.rep} {method}: W1 {np.mean(rec['w1']):.3f}, spread ratio {np.round(rec['spread_ratio'], 3)}", flush=True)
    C.save_results(args.out, "spread", payload, markdown, args.observations)
    return payload


if __name__ == "__main__":
    main()
