"""Import cost: CPU seconds of ``import trajinfer`` beyond torch's own import, and of ``trajinfer --help``.

Every figure comes from a fresh Python process, so nothing is cached in memory; the rounds are
interleaved (one of each measurement per round) so that a change in the machine's load touches
all of them alike, and the table gives the median over rounds (after one discarded warm-up
round that also writes any missing bytecode caches).

- ``import torch``: CPU time (``time.process_time``, all threads) of the statement, measured
  inside the child process.
- ``import trajinfer`` after torch: the same child imports torch first, then times
  ``import trajinfer`` alone, so the figure is what trajinfer adds to torch.
- ``import sklearn.base`` after torch: scikit-learn's estimator base, measured the same way in
  a child of its own: what ``import trajinfer`` would cost if ``ActionMatching`` inherited it
  (it implements scikit-learn's parameter contract itself instead).
- ``python -c "import torch"`` and ``python -m trajinfer --help``: user + system CPU time of
  the whole child process (``getrusage(RUSAGE_CHILDREN)``), interpreter start included; their
  difference, taken round by round, is what the command line costs beyond torch.

The issue's target: ``import trajinfer`` under 1 s of CPU beyond torch.

Usage::

    python benchmarks/imports.py                 # 7 rounds: about two minutes of CPU
    python benchmarks/imports.py --quick --out /tmp/imports
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

TARGET_CPU_S = 1.0
# Libraries that ``import trajinfer`` should leave to the functions that need them.
WATCHED = ("anndata", "matplotlib", "matplotlib.pyplot", "ot", "pandas", "scanpy", "scipy", "sklearn", "torchdiffeq")

_TIMED_IMPORT = """
import json, sys, time
cpu0, wall0 = time.process_time(), time.perf_counter()
import torch
cpu1, wall1 = time.process_time(), time.perf_counter()
import {module}
cpu2, wall2 = time.process_time(), time.perf_counter()
print(json.dumps({{"torch_cpu": cpu1 - cpu0, "torch_wall": wall1 - wall0, "cpu": cpu2 - cpu1, "wall": wall2 - wall1,
                  "loaded": [m for m in {watched!r} if m in sys.modules]}}))
"""

# name -> module imported after torch in the child
IMPORTS = {"trajinfer": "trajinfer", "sklearn.base": "sklearn.base"}
# name -> arguments of a whole child process
PROCESSES = {
    "python -c \"import torch\"": ["-c", "import torch"],
    "python -m trajinfer --help": ["-m", "trajinfer", "--help"],
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(args: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``python *args`` in the repository; return the result, its CPU and its wall seconds."""
    cpu, wall = _children_cpu(), time.perf_counter()
    run = subprocess.run([sys.executable, *args], cwd=C.REPO, capture_output=True, text=True, timeout=300)
    cpu, wall = _children_cpu() - cpu, time.perf_counter() - wall
    if run.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} failed with status {run.returncode}: {run.stderr[-2000:]}")
    return run, cpu, wall


def timed_import(module: str) -> dict[str, Any]:
    """CPU and wall seconds of ``import torch`` and then of ``import module`` in a fresh process."""
    run, _, _ = _run(["-c", _TIMED_IMPORT.format(module=module, watched=WATCHED)])
    return json.loads(run.stdout.strip().splitlines()[-1])


def timed_process(args: list[str]) -> dict[str, float]:
    """CPU (user + system) and wall seconds of a whole ``python *args`` process."""
    _, cpu, wall = _run(args)
    return {"cpu": cpu, "wall": wall}


def one_round() -> dict[str, dict[str, Any]]:
    """One measurement of each kind, keyed by the row name of the table."""
    out: dict[str, dict[str, Any]] = {}
    for name, module in IMPORTS.items():
        record = timed_import(module)
        if name == "trajinfer":
            out["import torch"] = {"cpu": record["torch_cpu"], "wall": record["torch_wall"]}
        out[f"import {name} after torch"] = record
    for name, args in PROCESSES.items():
        out[name] = timed_process(args)
    help_row, torch_row = out["python -m trajinfer --help"], out["python -c \"import torch\""]
    out["trajinfer --help beyond torch"] = {k: help_row[k] - torch_row[k] for k in ("cpu", "wall")}
    return out


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for name in rounds[0]:
        cpu = [r[name]["cpu"] for r in rounds]
        wall = [r[name]["wall"] for r in rounds]
        rows.append({
            "measurement": name, "cpu_s": cpu, "wall_s": wall, "cpu_median": statistics.median(cpu),
            "cpu_min": min(cpu), "cpu_max": max(cpu), "wall_median": statistics.median(wall),
        })
    return rows


def markdown(payload: dict[str, Any]) -> str:
    rows = {r["measurement"]: r for r in payload["rows"]}
    table = C.md_table(
        ["measurement", "CPU s (median)", "CPU s (min–max)", "wall s (median)"],
        [[r["measurement"], C.fmt(r["cpu_median"]), f"{C.fmt(r['cpu_min'])}–{C.fmt(r['cpu_max'])}",
          C.fmt(r["wall_median"])] for r in payload["rows"]],
    )
    trajinfer, sklearn = rows["import trajinfer after torch"], rows["import sklearn.base after torch"]
    verdict = "meets" if payload["meets_target"] else "misses"
    loaded = ", ".join(f"`{m}`" for m in payload["loaded_by_import_trajinfer"]) or "none"
    return (
        "# Import cost\n\n" + C.provenance_md(payload["provenance"]) + "\n\n"
        + f"Fresh Python processes, {payload['repeats']} interleaved round{'s' if payload['repeats'] != 1 else ''} "
        "(median, min and max), CPU time of all "
        "threads. `import … after torch` is timed inside a process that has already imported torch; the two "
        "`python …` rows are whole processes (interpreter start included), and the last row is their "
        "difference, round by round.\n\n"
        + table + "\n\n"
        + f"`import trajinfer` costs {C.fmt(trajinfer['cpu_median'], 2)} s of CPU beyond torch: it {verdict} the "
        f"target of {payload['target_cpu_s']:g} s. scikit-learn's `sklearn.base`, which `ActionMatching` does "
        f"not inherit (it implements scikit-learn's parameter contract itself), would cost {C.fmt(sklearn['cpu_median'], 2)} s "
        "after torch (it loads SciPy and pandas). "
        f"Of the watched libraries, `import trajinfer` loads: {loaded}.\n"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, no warm-up")
    parser.add_argument("--repeats", type=int, default=7, help="measured rounds (default: 7)")
    parser.add_argument("--out", type=Path, default=C.RESULTS)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    prov = C.provenance({"mode": "quick" if args.quick else "full"}, argv, f"benchmarks/{Path(__file__).name}")
    if not args.quick:
        one_round()
    rounds = [one_round() for _ in range(repeats)]
    rows = summarise(rounds)
    trajinfer = next(r for r in rows if r["measurement"] == "import trajinfer after torch")
    payload = {
        "provenance": prov, "repeats": repeats, "rows": rows, "target_cpu_s": TARGET_CPU_S,
        "meets_target": trajinfer["cpu_median"] < TARGET_CPU_S,
        "loaded_by_import_trajinfer": rounds[-1]["import trajinfer after torch"]["loaded"],
    }
    for r in rows:
        print(f"[imports] {r['measurement']}: {r['cpu_median']:.3f} s CPU (median of {repeats})", flush=True)
    C.write_json(args.out / "imports.json", payload)
    C.write_text(args.out / "imports.md", markdown(payload))
    return payload


if __name__ == "__main__":
    main()
