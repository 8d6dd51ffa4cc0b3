"""The documentation builds with warnings as errors, and its main pages and gallery exist.

Runs ``python -m sphinx -W --keep-going -b html docs <tmp>`` in a subprocess with the fast
gallery settings (``TRAJINFER_DOCS_FAST=1``). ``-W`` turns every warning into an error, so a
broken internal cross-reference, a docstring that does not parse, or a failing gallery
example fails this test.

A build writes into its source folder (the gallery's ``auto_examples/``, the generated API and
benchmark pages, ``sg_execution_times.rst``), so the test builds a copy of ``docs/``,
``examples/`` and ``benchmarks/results/`` in a temporary folder: running the tests never
leaves pages in the source tree for a later docs build to show stale.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import shutil
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
    except Exception:
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
    source = _source_copy(tmp_path / "src")
    before = _tree_state()
    env = dict(os.environ, TRAJINFER_DOCS_FAST="1", MPLBACKEND="agg")
    env.pop("TRAJINFER_DOCS_GALLERY", None)
    env.pop("TRAJINFER_DOCS_INTERSPHINX", None)  # the build must pass offline
    shared = REPO.parent / "shared" / "data"
    if "TRAJINFER_SHARED_DATA" not in env and shared.is_dir():
        env["TRAJINFER_SHARED_DATA"] = str(shared)  # the gallery's data, as beside the repository
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-d", str(tmp_path / "doctrees"),
           str(source / "docs"), str(out)]
    result = subprocess.run(cmd, cwd=source, env=env, capture_output=True, text=True, timeout=1800)
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
    assert _tree_state() == before, "the docs build wrote into the source tree"


def _source_copy(root: Path) -> Path:
    """``docs/`` (without build outputs), ``examples/`` and ``benchmarks/results/`` copied under ``root``."""
    outputs = shutil.ignore_patterns("_build", "auto_examples", "generated", "sg_execution_times.rst", "__pycache__")
    shutil.copytree(DOCS, root / "docs", ignore=outputs)
    shutil.copytree(EXAMPLES, root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    results = REPO / "benchmarks" / "results"
    if results.is_dir():
        shutil.copytree(results, root / "benchmarks" / "results")
    return root


def _tree_state() -> tuple[set[str], dict[str, float]]:
    """Which files there are under ``docs/`` and ``examples/``, and the modification times of those
    where a build writes (the gallery, the generated pages, ``sg_execution_times.rst``)."""
    files = {path for folder in (DOCS, EXAMPLES) for path in folder.rglob("*") if path.is_file()}
    outputs = [DOCS / "auto_examples", DOCS / "generated", DOCS / "sg_execution_times.rst"]
    written = {str(p): p.stat().st_mtime for p in files if any(p == out or out in p.parents for out in outputs)}
    return {str(p) for p in files}, written


def test_the_docs_build_never_writes_into_the_source_tree(tmp_path):
    """Without Sphinx: the copy the build runs on holds everything ``conf.py`` reads and no build outputs."""
    source = _source_copy(tmp_path / "src")
    assert (source / "docs" / "conf.py").is_file() and (source / "examples" / "plot_scverse_dyngen.py").is_file()
    assert not any((source / "docs" / name).exists() for name in ("auto_examples", "generated", "_build", "sg_execution_times.rst"))
    conf = (DOCS / "conf.py").read_text()
    assert '"examples_dirs": "../examples"' in conf and '"gallery_dirs": "auto_examples"' in conf  # relative to the copy


def _python_blocks(text: str) -> dict[str, list[str]]:
    """The ``.. code-block:: python`` blocks of an reST page, by section title, dedented."""
    lines, sections, title = text.splitlines(), {}, ""
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and lines[i].strip() and re.fullmatch(r"-{3,}|={3,}", lines[i + 1].strip()):
            title = lines[i].strip()
        if re.fullmatch(r"\s*\.\. code-block:: python\s*", lines[i]):
            indent = len(lines[i]) - len(lines[i].lstrip()) + 3
            j, block = i + 1, []
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) >= indent):
                block.append(lines[j][indent:])
                j += 1
            sections.setdefault(title, []).append("\n".join(block))
            i = j
            continue
        i += 1
    return sections


def _undefined_names(code: str) -> set[str]:
    """Names a piece of code reads that it never assigns or imports (nor are builtins)."""
    tree = ast.parse(code)
    defined, used = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (defined if isinstance(node.ctx, ast.Store) else used).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    return used - defined


def test_the_quick_start_scverse_section_runs_on_its_own_names():
    """The scanpy/scvelo/CellRank snippet defines everything it uses (it once drew an undefined ``traj``)."""
    sections = _python_blocks((DOCS / "quickstart.rst").read_text(encoding="utf-8"))
    (code,) = sections["With scanpy, scvelo and CellRank"]
    assert _undefined_names(code) == set()
    assert "normalize_total(" not in code and "log1p(" not in code  # dyngen's X is log2(1 + counts) already


def test_readme_is_valid_restructuredtext():
    """README.rst is the package's long description: it must parse without warnings."""
    docutils_core = pytest.importorskip("docutils.core")
    docutils_core.publish_string(
        (REPO / "README.rst").read_text(encoding="utf-8"), writer_name="null",
        settings_overrides={"report_level": 2, "halt_level": 2},
    )
