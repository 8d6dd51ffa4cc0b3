"""The README's biology example runs as written.

The example is the first ``.. code-block:: python`` under the README's "A biology example"
heading. It reads the dyngen files from ``../shared/data``, relative to the working directory
(the repository root when a user runs it), so the test runs it in a temporary directory beside a
link ``../shared/data`` to the shared data directory: files the example saves land there, not in
the repository.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

import trajinfer as tj

README = Path(__file__).resolve().parents[1] / "README.rst"
PACKAGE = Path(tj.__file__).resolve().parent
HEADING = "A biology example"


def readme_example(text: str, heading: str = HEADING) -> tuple[str, int]:
    """The first ``.. code-block:: python`` of the README section titled ``heading``, dedented.

    Returns the code and the README line number (1-based) of its first line.
    """
    lines = text.splitlines()

    def is_title(i: int) -> bool:  # a section title underlined with dashes
        return bool(lines[i].strip()) and i + 1 < len(lines) and set(lines[i + 1]) == {"-"}

    start = next((i for i in range(len(lines)) if is_title(i) and lines[i].strip() == heading), None)
    assert start is not None, f"README.rst has no section {heading!r}"
    end = next((i for i in range(start + 2, len(lines)) if is_title(i)), len(lines))
    directive = next((i for i in range(start + 2, end) if re.fullmatch(r"\.\. code-block:: python\s*", lines[i])), None)
    assert directive is not None, f"the README section {heading!r} has no '.. code-block:: python'"
    block = directive + 1
    while block < end and not lines[block].strip():
        block += 1  # blank lines between the directive and the code
    stop = block
    while stop < end and (not lines[stop].strip() or lines[stop].startswith("   ")):
        stop += 1  # the block ends at the first unindented line
    code = "\n".join(line[3:] for line in lines[block:stop]).rstrip()
    assert code, f"the code block of the README section {heading!r} is empty"
    return code + "\n", block + 1


def test_readme_example_is_found():
    code, first = readme_example(README.read_text(encoding="utf-8"))
    assert README.read_text(encoding="utf-8").splitlines()[first - 1].strip() == code.splitlines()[0].strip()
    assert "tj.fit(" in code and "tj.datasets.dyngen(" in code


@pytest.mark.slow
def test_readme_biology_example_runs(shared_data, tmp_path, monkeypatch):
    pytest.importorskip("scanpy")
    pytest.importorskip("igraph")
    code, first = readme_example(README.read_text(encoding="utf-8"))
    work = tmp_path / "repo"
    work.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data, target_is_directory=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MPLBACKEND", "agg")
    namespace: dict = {"__name__": "__readme__"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile("\n" * (first - 1) + code, str(README), "exec"), namespace)

    # a deprecated call, in the example or inside trajinfer on its behalf, would greet a newcomer
    deprecated = [
        f"{w.filename}:{w.lineno}: {w.message}" for w in caught
        if issubclass(w.category, (FutureWarning, DeprecationWarning))
        and (w.filename == str(README) or Path(w.filename).resolve().is_relative_to(PACKAGE))
    ]
    assert not deprecated, "the README example calls deprecated API:\n" + "\n".join(deprecated)

    adata, model = namespace["adata"], namespace["model"]
    assert adata.obsm["tj_velocity"].shape == adata.obsm["X_pca"].shape
    assert isinstance(model, tj.ActionMatching) and model.dynamics_.dim == adata.obsm["X_pca"].shape[1]
    assert any(work.glob("*.pt")), "the example saves its model in the working directory"
