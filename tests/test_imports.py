"""What ``import trajinfer`` and the command line load: heavy libraries wait for the functions that use them."""

from __future__ import annotations

import json
import subprocess
import sys

# Libraries the top-level package and ``trajinfer --help`` must not load.
DEFERRED = ("ot", "scanpy", "matplotlib.pyplot", "anndata", "torchdiffeq", "sklearn", "scipy", "pandas")

_PROBE = """
import json, sys
import trajinfer
package = [m for m in {deferred!r} if m in sys.modules]
import trajinfer.cli
cli = [m for m in {deferred!r} if m in sys.modules]
print(json.dumps({{"package": package, "cli": cli}}))
"""


def test_import_trajinfer_leaves_heavy_libraries_unloaded():
    probe = _PROBE.format(deferred=DEFERRED)
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert loaded == {"package": [], "cli": []}
