"""``tj.settings`` (verbosity, progress) and the progress bars, in a terminal, in a log and in a real Jupyter kernel."""

from __future__ import annotations

import io
import logging
import sys
import warnings

import numpy as np
import pytest

import trajinfer as tj
from trajinfer import _progress
from trajinfer.diagnostics import FitWarning

SMALL = dict(method="am", n_iter=120, hidden_dims=(16, 16), batch_size=64)


@pytest.fixture(autouse=True)
def _restore_settings():
    verbosity, progress = tj.settings.verbosity, tj.settings.progress
    yield
    tj.settings.verbosity, tj.settings.progress = verbosity, progress


@pytest.fixture(scope="module")
def path():
    rng = np.random.default_rng(0)
    return tj.SnapshotPath([rng.normal(size=(100, 2)) + k for k in range(3)], [0.0, 1.0, 2.0])


def _fit(path, **run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        return tj.ActionMatching(**SMALL, run=tj.RunConfig(device="cpu", **run)).fit(path)


def test_verbosity_two_prints_the_fit_summary_and_lower_ones_do_not(path, capsys):
    assert tj.settings.verbosity == 2 and tj.settings.progress is True  # the defaults
    _fit(path, progress=False)
    err = capsys.readouterr().err
    assert err.count("Fitted am in") == 1 and "120 iterations" in err
    for verbosity in (1, 0):
        tj.settings.verbosity = verbosity
        _fit(path, progress=False)
        assert "Fitted" not in capsys.readouterr().err
    tj.settings.verbosity = 3
    assert logging.getLogger("trajinfer").getEffectiveLevel() == logging.DEBUG
    for bad in (4, -1, True, "info"):
        with pytest.raises(ValueError, match="verbosity"):
            tj.settings.verbosity = bad
    with pytest.raises(ValueError, match="progress"):
        tj.settings.progress = "yes"
    assert "verbosity=3" in repr(tj.settings)


def test_a_fit_check_is_printed_once_by_its_warning(path, capsys):
    with pytest.warns(FitWarning, match="fit check"):
        tj.ActionMatching(method="am", n_iter=30, hidden_dims=(16, 16), lr=1e-4, run=tj.RunConfig(device="cpu", progress=False)).fit(path)
    assert "Fit check" not in capsys.readouterr().err  # the warning says it; the log line would repeat it


def test_a_console_handler_of_the_application_prints_each_line_once(path, capsys):
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)  # what logging.basicConfig() installs
    root.addHandler(handler)
    try:
        _fit(path, progress=False)
    finally:
        root.removeHandler(handler)
    assert capsys.readouterr().err.count("Fitted am in") == 1


def test_the_bar_suits_where_the_output_goes(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(_progress, "in_kernel", lambda: False)
    assert _progress.bar_kind(stream=Terminal()) == "text"
    assert _progress.bar_kind(stream=io.StringIO()) == "log"  # a file, a pipe, CI
    assert _progress.bar_kind(stream=io.StringIO(), leave=False) == "none"  # transient bars stay out of logs
    monkeypatch.setattr(_progress, "in_kernel", lambda: True)
    monkeypatch.setattr(_progress, "widgets_available", lambda: True)
    assert _progress.bar_kind() == "widget"
    monkeypatch.setattr(_progress, "widgets_available", lambda: False)
    assert _progress.bar_kind(stream=io.StringIO()) == "text"  # a kernel's stderr is no terminal, yet shows a bar
    assert _progress.bar_kind(leave=False) == "text"


def test_a_bar_in_a_log_is_whole_lines_and_the_switches_hide_it(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(_progress, "in_kernel", lambda: False)
    assert list(_progress.progress_bar(range(5), desc="work")) == list(range(5))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and lines[0].startswith("work:") and "5/5" in lines[-1]
    for show, setting in ((False, True), (True, False)):
        log.truncate(0)
        log.seek(0)
        tj.settings.progress = setting
        bar = _progress.progress_bar(range(5), desc="work", show=show)
        assert bar.disable and list(bar) == list(range(5)) and log.getvalue() == ""


def test_run_config_progress_false_silences_the_fit_bar(path, capsys, monkeypatch):
    monkeypatch.setattr(_progress, "in_kernel", lambda: True)  # where a bar would otherwise show
    monkeypatch.setattr(_progress, "widgets_available", lambda: False)
    _fit(path)
    assert "fit am:" in capsys.readouterr().err
    _fit(path, progress=False)
    assert "fit am:" not in capsys.readouterr().err


def test_a_fit_in_a_jupyter_kernel_shows_its_bar_and_summary(tmp_path):
    """Executed in a real kernel, outputs read as a notebook shows them: the bar (text without ipywidgets, as in
    the test environment; a widget with it, checked by hand) and the summary; neither at verbosity 1 without bar."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cells = [
        "import numpy as np, torch, warnings\nimport trajinfer as tj\ntorch.set_num_threads(1)\n"
        "warnings.simplefilter('ignore', tj.diagnostics.FitWarning)\nrng = np.random.default_rng(0)\n"
        "path = tj.SnapshotPath([rng.normal(size=(100, 2)) + k for k in range(3)], [0.0, 1.0, 2.0])\n"
        f"settings = {SMALL!r}",
        "tj.ActionMatching(**settings, run=tj.RunConfig(device='cpu')).fit(path);",
        "tj.settings.verbosity = 1\ntj.ActionMatching(**settings, run=tj.RunConfig(device='cpu', progress=False)).fit(path);",
        "tj.settings.verbosity = 2\ntj.settings.progress = False\ntj.ActionMatching(**settings, run=tj.RunConfig(device='cpu')).fit(path);",
        "from trajinfer._progress import bar_kind\nprint(bar_kind())",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    def stream(cell, name: str) -> str:
        return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream" and output.name == name)

    default, quiet, no_bar, kind = (notebook.cells[i] for i in range(1, 5))
    if _progress.widgets_available():  # tqdm's widget bar
        assert any("application/vnd.jupyter.widget-view+json" in output.get("data", {}) for output in default.outputs)
    else:  # the text bar on the cell's stderr
        assert "fit am:" in stream(default, "stderr") and "120/120" in stream(default, "stderr")
    assert "Fitted am in" in stream(default, "stderr")
    assert "IProgress" not in stream(default, "stderr")
    assert quiet.outputs == []
    assert "Fitted am in" in stream(no_bar, "stderr") and "fit am:" not in stream(no_bar, "stderr")
    expected = "widget" if _progress.widgets_available() else "text"
    assert stream(kind, "stdout").strip() == expected
