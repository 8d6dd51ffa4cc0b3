"""How W1 between finite samples in many dimensions rewards a prediction contracted towards its mean, and the energy distance does not.

No model is fitted. For each representation of ``dims.py`` and label h = 1, 2, 3 of the embryoid
body, the training cells of h (a second sample of the test cells' own population) are contracted
towards their mean by a factor c, ``mean + c (x − mean)``, and scored by W1 (Euclidean ground
cost) against the test cells of h. At c = 1 this is ``dims.py``'s finite-sample floor. A score
below it at c < 1 means a method that shrinks its predicted cloud scores better than the truth
itself would: between two finite samples in many dimensions every point is far from every
other, and a tighter cloud sits nearer all of them. The same copies are scored by
``tj.metrics.energy_distance`` (unbiased), the companion metric of ``dims.md``: it is smallest
at c = 1 whenever the estimate separates the factors.

Usage::

    python benchmarks/w1_shrink.py                         # std5, std50, raw50, std100, raw100
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

REPS = ("std5", "std50", "raw50", "std100", "raw100")
FACTORS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


def markdown(payload: dict[str, Any]) -> str:
    sections = []
    for metric, name in dims.METRICS.items():
        rows = []
        for rep, by_metric in payload["entries"].items():
            by_factor = by_metric[metric]
            floor = np.mean(by_factor["1.0"])
            best = min(by_factor, key=lambda c: np.mean(by_factor[c]))
            ratio = [C.fmt(np.mean(by_factor[best]) / floor, 3)] if metric == "w1" else []
            rows.append([rep] + [C.fmt(np.mean(by_factor[f"{c}"])) for c in FACTORS] + [best, *ratio])
        last = ["best / floor"] if metric == "w1" else []
        sections += [f"Mean {name} over h = 1, 2, 3:", "",
                     C.md_table(["representation", *[f"c = {c}" for c in FACTORS], "best c", *last], rows), ""]
    return C.results_page("W1 and a contracted prediction", C.provenance_md(payload["provenance"]), __doc__, sections,
                          payload.get("observations"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=lambda s: s.split(","), default=list(REPS))
    parser.add_argument("--data", type=Path, default=dims.DATA)
    parser.add_argument("--out", type=Path, default=C.RESULTS)
    parser.add_argument("--observations", type=Path, default=None)
    args = parser.parse_args(argv)
    payload: dict[str, Any] = {"provenance": C.provenance(argv=argv, script="benchmarks/w1_shrink.py"), "entries": {}}
    for rep in args.reps:
        ds = dims.load("eb", rep, args.data)
        by_metric: dict[str, dict[str, list[float]]] = {metric: {} for metric in dims.METRICS}
        for c in FACTORS:
            scores = []
            for h in (1, 2, 3):
                cells = ds.train[h]
                centre = cells.mean(0)
                scores.append(dims.distances(centre + c * (cells - centre), ds.test[h]))
            for metric in dims.METRICS:
                by_metric[metric][f"{c}"] = [s[metric] for s in scores]
        payload["entries"][rep] = by_metric
        for metric, by_factor in by_metric.items():
            print(f"[w1_shrink] {rep} {metric}: " + ", ".join(f"c={c} {np.mean(v):.3f}" for c, v in by_factor.items()), flush=True)
    C.save_results(args.out, "w1_shrink", payload, markdown, args.observations)
    return payload


if __name__ == "__main__":
    main()
