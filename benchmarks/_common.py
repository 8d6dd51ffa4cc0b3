"""Shared helpers of the benchmark scripts: provenance, timing, peak memory, JSON + markdown.

Result files written through :func:`write_text` and :func:`write_json` are replaced atomically:
an interrupted run leaves the previous results intact.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from trajinfer._io import atomic_path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def command_line(argv: Sequence[str] | None = None, script: str | None = None) -> str:
    """The exact command that produced the results (relative to the repository root).

    ``argv``/``script``: the arguments given to a script's ``main(argv)`` when it is called from
    Python (tests) rather than the command line.
    """
    if argv is None:
        return " ".join(["python"] + [shlex.quote(a) for a in sys.argv])
    return " ".join(["python", script or "benchmarks/?.py"] + [shlex.quote(str(a)) for a in argv])


def seed_of_command(command: str) -> int:
    """The ``--seed`` value of a recorded benchmark command (0 when the command has none)."""
    parts = command.replace("--seed=", "--seed ").split()
    return int(parts[parts.index("--seed") + 1]) if "--seed" in parts else 0


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "") if sha else "unknown"
    except Exception:
        return "unknown"


def package_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def matmul_gflops(seconds: float = 0.5) -> float:
    """The machine's speed now: GFLOP/s of a 256×128 by 128×128 float32 matrix product (a
    128-wide layer on a minibatch of 256, what carries most of a training step) on torch's
    current threads. This shared machine's speed changes with its neighbours' load, and every
    timing with it: results record this beside their times."""
    import torch

    a, b = torch.randn(256, 128), torch.randn(128, 128)
    for _ in range(20):
        a @ b
    n, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for _ in range(50):
            a @ b
        n += 50
    return 2 * 256 * 128 * 128 * n / (time.process_time() - start) / 1e9


def provenance(extra: dict[str, Any] | None = None, argv: Sequence[str] | None = None, script: str | None = None) -> dict[str, Any]:
    import torch

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    info = {
        "command": command_line(argv, script),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": load,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "matmul_gflops_at_start": matmul_gflops(),
        },
        "python": platform.python_version(),
        "torch": torch.__version__,
        "versions": {p: package_version(p) for p in ("trajinfer", "numpy", "pot", "mioflow", "torchcfm")},
    }
    if extra:
        info.update(extra)
    return info


def rss_peak_mb() -> float:
    """Peak resident set size of this process so far (MB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Resident set size now (MB), from /proc (Linux); falls back to the peak from getrusage."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return rss_peak_mb()


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ``clear_refs``); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def high_water_mb() -> float | None:
    """Peak resident set size since the last :func:`reset_peak` (``VmHWM``, MB); None without /proc."""
    try:
        found = re.search(r"^VmHWM:\s+(\d+)", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return float(found.group(1)) / 1024.0 if found else None


@contextmanager
def measure(record: dict[str, Any], key: str = "fit", interval: float = 0.02, traced: bool = False):
    """Wall time, CPU time and memory of a block, stored in ``record``.

    ``{key}_seconds``: wall-clock time. ``{key}_cpu_seconds``: CPU time of the whole process
    (all threads) during the block — the fairer figure on a shared, overloaded machine. ``{key}_peak_rss_mb``: the process's peak resident set
    size during the block (sampled every ``interval`` s by a thread; torch tensors included).
    ``{key}_rss_increase_mb``: that peak minus the RSS when the block started (the memory the
    block itself needed). With ``traced=True`` also ``{key}_peak_traced_mb``, the peak of
    Python-heap allocations (tracemalloc; it slows Python code, so timed blocks leave it off,
    and torch's tensor storage is not traced there anyway).
    """
    import threading

    before = current_rss_mb()
    peak = [before]
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], current_rss_mb())
            stop.wait(interval)

    thread = threading.Thread(target=poll, daemon=True)
    if traced:
        tracemalloc.start()
    thread.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        yield record
    finally:
        record[f"{key}_seconds"] = time.perf_counter() - start
        record[f"{key}_cpu_seconds"] = time.process_time() - cpu_start
        stop.set()
        thread.join()
        peak[0] = max(peak[0], current_rss_mb())
        if traced:
            record[f"{key}_peak_traced_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        record[f"{key}_peak_rss_mb"] = peak[0]
        record[f"{key}_rss_increase_mb"] = peak[0] - before


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating,)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, float):
        return None if not np.isfinite(obj) else obj
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, creating missing folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON (NaN and Inf as null) to ``path`` atomically."""
    write_text(path, json.dumps(to_jsonable(payload), indent=2) + "\n")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join("" if c is None else str(c) for c in row) + " |")
    return "\n".join(lines)


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if not np.isfinite(x):
        return "nan"
    if abs(x) != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def pm(mean: float | None, std: float | None, digits: int = 3) -> str:
    if mean is None:
        return "–"
    if std is None or std == 0:
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def provenance_md(prov: dict[str, Any]) -> str:
    m = prov["machine"]
    return (
        f"Command: `{prov['command']}`  \n"
        f"Date: {prov['date']}; git commit {prov['git_commit']}; torch {prov['torch']}; "
        f"{m['cpu_cores']} CPU cores ({m['processor']}), torch threads {m['torch_threads']}, "
        f"load average at start {m['load_average_at_start']}"
        + (f", one 256×128·128×128 matrix product at {m['matmul_gflops_at_start']:.0f} GFLOP/s"
           if m.get("matmul_gflops_at_start") else "")
        + f"; GPU: {m['cuda'] or 'none'}."
    )


def results_page(title: str, provenance: str, doc: str | None, body: Sequence[str], observations: str | None = None) -> str:
    """A results page: title, provenance, the script's docstring up to its usage, ``body`` and,
    when given, the "What this shows" paragraph."""
    parts = [f"# {title}", "", provenance, "", (doc or "").split("Usage::")[0].strip(), "", *body]
    if observations:
        parts += ["## What this shows", "", observations, ""]
    return "\n".join(parts)


def save_results(out: Path, name: str, payload: dict[str, Any], markdown: Callable[[dict[str, Any]], str],
                 observations: Path | None = None) -> None:
    """Write ``payload`` to ``out/name.json`` and its page to ``out/name.md``, with the "What
    this shows" paragraph read from the file ``observations`` when given."""
    if observations is not None:
        payload["observations"] = observations.read_text().strip()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", payload)
    write_text(out / f"{name}.md", markdown(payload))


def safe_run(fn: Callable[[], Any]) -> tuple[Any, str | None]:
    """Run ``fn``; on failure return (None, 'ExceptionType: message')."""
    try:
        return fn(), None
    except Exception as err:
        return None, f"{type(err).__name__}: {err}"
