"""The ``trajinfer`` command line: help, fit, simulate, demo, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import anndata
import numpy as np
import pytest

import trajinfer as tj
from trajinfer.cli import main

FAST_FIT = ["--n-iter", "20", "--hidden-dims", "16,16", "--batch-size", "32", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def h5ad(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "petals.h5ad"
    tj.datasets.petals(n_times=4, n_per_time=30, seed=0).write_h5ad(path)
    return str(path)


@pytest.fixture(scope="module")
def fitted(h5ad, tmp_path_factory) -> tuple[str, str]:
    out = tmp_path_factory.mktemp("fit")
    model, annotated = str(out / "model.pt"), str(out / "fitted.h5ad")
    assert main(["fit", h5ad, "--time-key", "time", "--model", model, "--output", annotated, *FAST_FIT]) == 0
    return model, annotated


def _one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("command", [[], ["fit"], ["simulate"], ["demo"]])
def test_help_exits_zero(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: trajinfer" in capsys.readouterr().out


def test_fit_writes_model_and_annotated_data(fitted, h5ad):
    model_path, annotated_path = fitted
    annotated = anndata.read_h5ad(annotated_path)
    assert annotated.obsm["tj_velocity"].shape == (annotated.n_obs, 2)
    assert annotated.uns["tj"]["loss_curve"].shape == (20,)
    model = tj.load(model_path)
    assert model.method == "eam" and model.n_iter_ == 20
    assert model.metadata_["time_key"] == "time" and model.metadata_["use_rep"] == "X"
    assert "tj_velocity" not in anndata.read_h5ad(h5ad).obsm  # the input file is untouched


def test_simulate_writes_trajectories(fitted, tmp_path, capsys):
    model_path, annotated_path = fitted
    out = tmp_path / "traj.npz"
    assert main(["simulate", model_path, annotated_path, "--from", "0", "--to", "2", "--n-steps", "8", "--output", str(out)]) == 0
    saved = np.load(out)
    assert saved["times"].shape == (9,) and saved["times"][[0, -1]].tolist() == [0.0, 2.0]
    assert saved["X"].shape == (9, 30, 2)
    assert saved["log_weights"].shape == (9, 30)
    assert saved["cells"].shape == (30,)
    assert "Simulated 30 cells" in capsys.readouterr().out


def test_missing_input_file_exits_2(tmp_path, capsys):
    code = main(["fit", str(tmp_path / "missing.h5ad"), "--time-key", "time", "--model", str(tmp_path / "m.pt")])
    assert code == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith("trajinfer: error:") and "missing.h5ad" in line
    assert not (tmp_path / "m.pt").exists()


def test_missing_time_key_exits_2(h5ad, tmp_path, capsys):
    assert main(["fit", h5ad, "--time-key", "day", "--model", str(tmp_path / "m.pt"), *FAST_FIT]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith("trajinfer: error:") and "'day'" in line and "time_key" in line


def test_bad_arguments_exit_2_in_one_line(h5ad, fitted, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", h5ad, "--time-key", "time", "--method", "magic", "--model", str(tmp_path / "m.pt")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'magic'" in _one_line_error(capsys.readouterr().err)

    model_path, annotated_path = fitted
    assert main(["simulate", model_path, annotated_path, "--from", "7", "--output", str(tmp_path / "t.npz")]) == 2
    assert "known labels" in _one_line_error(capsys.readouterr().err)
    assert main(["simulate", h5ad, h5ad, "--from", "0", "--output", str(tmp_path / "t.npz")]) == 2
    assert "is not a saved trajinfer ActionMatching model" in _one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize(
    "outputs,clash",
    [
        (["--model", "{data}"], "--model '{data}' is the input file '{data}'"),
        (["--model", "{dir}/m.pt", "--output", "{data}"], "--output '{data}' is the input file '{data}'"),
        (["--model", "{dir}/m.pt", "--output", "{dir}/m.pt"], "--output '{dir}/m.pt' is also the --model path"),
    ],
    ids=["model-is-input", "output-is-input", "output-is-model"],
)
def test_fit_refuses_to_overwrite_its_input(h5ad, tmp_path, capsys, outputs, clash):
    data = tmp_path / "data.h5ad"
    shutil.copy(h5ad, data)
    before = data.read_bytes()
    names = {"data": data, "dir": tmp_path}
    code = main(["fit", str(data), "--time-key", "time", *[arg.format(**names) for arg in outputs], *FAST_FIT])
    assert code == 2
    line = _one_line_error(capsys.readouterr().err)
    assert clash.format(**names) in line and "choose another path" in line
    assert data.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5ad"]  # refused before fitting


def test_simulate_needs_a_model_fitted_on_an_anndata(fitted, tmp_path, capsys):
    _, annotated_path = fitted
    model = tmp_path / "arrays.pt"
    snapshots = [np.random.default_rng(0).normal(size=(20, 2)) + shift for shift in (0.0, 1.0)]
    tj.ActionMatching(method="am", n_iter=5, hidden_dims=(8,), run=dict(device="cpu", progress=False)).fit(
        tj.SnapshotPath(snapshots, [0.0, 1.0])
    ).save(model)
    capsys.readouterr()  # the fit's own summary line is not the command's output
    assert main(["simulate", str(model), annotated_path, "--from", "0", "--output", str(tmp_path / "t.npz")]) == 2
    assert "was not fitted on an AnnData; simulate it from Python" in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "t.npz").exists()


def test_simulate_refuses_to_overwrite_its_inputs(fitted, tmp_path, capsys):
    model_path, annotated_path = fitted
    model = tmp_path / "model.pt"
    shutil.copy(model_path, model)
    before = model.read_bytes()
    for target, what in [(str(model), "model file"), (annotated_path, "input file")]:
        assert main(["simulate", str(model), annotated_path, "--from", "0", "--output", target]) == 2
        assert f"is the {what}" in _one_line_error(capsys.readouterr().err)
    assert model.read_bytes() == before


def test_crash_while_writing_annotated_data_keeps_the_previous_file(h5ad, tmp_path, capsys, monkeypatch):
    output = tmp_path / "annotated.h5ad"
    shutil.copy(h5ad, output)
    before = output.read_bytes()

    def crash(adata, filename, *args, **kwargs):
        with open(filename, "wb") as file:
            file.write(before[: len(before) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(anndata.AnnData, "write_h5ad", crash)
    model = tmp_path / "model.pt"
    code = main(["fit", h5ad, "--time-key", "time", "--model", str(model), "--output", str(output), *FAST_FIT])
    assert code == 2 and "No space left on device" in _one_line_error(capsys.readouterr().err)
    assert output.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.h5ad", "model.pt"]  # no temporary left behind


def test_simulate_with_truncated_model_prints_the_loader_message(fitted, tmp_path, capsys):
    model_path, annotated_path = fitted
    data = open(model_path, "rb").read()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    assert main(["simulate", str(truncated), annotated_path, "--from", "0", "--output", str(tmp_path / "t.npz")]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert f"{truncated} is not a saved trajinfer ActionMatching model: the file is truncated" in line
    assert "save the model again" in line and "Errno" not in line
    assert not (tmp_path / "t.npz").exists()


def test_python_m_entry_point_reports_errors_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "trajinfer", "simulate", str(tmp_path / "none.pt"), "x.h5ad", "--from", "0", "--output", "t.npz"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert _one_line_error(result.stderr) == f"trajinfer: error: model file '{tmp_path / 'none.pt'}' does not exist or is not a file."


def test_demo_quick_beats_no_move_baseline(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert (out / "demo.png").stat().st_size > 10_000
    results = json.loads((out / "results.json").read_text())
    assert [row["time"] for row in results["rows"]] == [1.0, 2.0, 3.0, 4.0]
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if "±" in line]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    _, model, _, _, no_move, _ = rows[-1]  # time, model mean, ±, sd, no-move, floor
    assert float(model) < float(no_move)
    assert results["rows"][-1]["w1_model"] < results["rows"][-1]["w1_no_move"]
