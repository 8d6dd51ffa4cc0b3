"""The documentation builds with warnings as errors, and its main pages and gallery exist.

Runs ``python -m sphinx -W --keep-going -b html docs <tmp>`` in a subprocess with the fast
gallery settings (``TRAJINFER_DOCS_FAST=1``). ``-W`` turns every warning into an error, so a
broken internal cross-reference, a docstring that does not parse, or a failing gallery
example fails this test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
EXAMPLES = REPO / "examples"

MAIN_PAGES = ["index", "install", "quickstart", "theory", "api", "benchmarks", "changelog", "auto_examples/index"]
API_PAGES = ["generated/api/trajinfer", "generated/api/trajinfer.ActionMatching", "generated/api/trajinfer_metrics",
             "generated/api/trajinfer.tl.fit", "generated/api/trajinfer.metrics.w1"]


def _optional_module_missing(module: str) -> bool:
    try:
        __import__(module)
    except Exception:  # noqa: BLE001
        return True
    return False


@pytest.mark.slow
@pytest.mark.skipif(not (DOCS / "conf.py").exists(), reason="no docs/ in this checkout")
def test_docs_build_warning_free(tmp_path: Path) -> None:
    pytest.importorskip("sphinx")
    pytest.importorskip("furo")
    pytest.importorskip("sphinx_gallery")
    pytest.importorskip("numpydoc")
    out = tmp_path / "html"
    env = dict(os.environ, TRAJINFER_DOCS_FAST="1", MPLBACKEND="agg")
    env.pop("TRAJINFER_DOCS_GALLERY", None)
    env.pop("TRAJINFER_DOCS_INTERSPHINX", None)  # the build must pass offline
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-d", str(tmp_path / "doctrees"),
           str(DOCS), str(out)]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    log = result.stdout[-4000:] + "\n" + result.stderr[-8000:]
    assert result.returncode == 0, f"docs build failed (exit {result.returncode}):\n{log}"

    for page in MAIN_PAGES + API_PAGES:
        assert (out / f"{page}.html").is_file(), f"missing page {page}.html"
    for script in sorted(EXAMPLES.glob("plot_*.py")):
        if script.name == "plot_hydrogen.py" and _optional_module_missing("trajinfer.quantum"):
            continue
        if script.name == "plot_digits.py" and _optional_module_missing("trajinfer.vision"):
            continue
        html = out / "auto_examples" / f"{script.stem}.html"
        assert html.is_file(), f"gallery page of {script.name} is missing"
        assert "sphx-glr-single-img" in html.read_text() or "sphx-glr-multi-img" in html.read_text(), (
            f"{script.name} produced no figure"
        )
    benchmarks = (out / "benchmarks.html").read_text()
    assert "generated/benchmarks/" in benchmarks, "benchmark pages are not linked from benchmarks.html"


def test_readme_is_valid_restructuredtext():
    """README.rst is the package's long description: it must parse without warnings."""
    docutils_core = pytest.importorskip("docutils.core")
    docutils_core.publish_string(
        (REPO / "README.rst").read_text(encoding="utf-8"), writer_name="null",
        settings_overrides={"report_level": 2, "halt_level": 2},
    )
