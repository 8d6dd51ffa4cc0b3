"""The dimension sweep's smoke mode (synthetic SDE only, cached entries skipped on a rerun) and the held-out bounds."""

from __future__ import annotations

import json

import pytest
from conftest import load_benchmark


def test_dims_quick_is_resumable(tmp_path, single_thread):
    dims = load_benchmark("dims")
    only = ["--only", "sde:noise10:tj:loo"]
    payload = dims.main(["--quick", "--out", str(tmp_path), *only])
    keys = {f"sde|noise10|loo|tj|{h}" for h in (1, 2, 3)}
    assert keys <= set(payload["entries"])
    for key in keys:
        rec = payload["entries"][key]
        assert rec["w1"] > 0 and rec["n_repeats"] == 2 and rec["fit_seconds"] > 0
        assert rec["energy"] > 0 and 0 <= rec["drift_rel_error"] and "diagnostics" in rec
    base = payload["baselines"]["sde|noise10|loo"]
    assert sorted(base) == ["1", "2", "3"] and all(b["no_move"] > b["floor"] > 0 for b in base.values())
    # the unbiased energy distance puts a second sample of the truth near zero, far below not moving
    assert all(abs(b["floor_energy"]) < 0.1 * b["no_move_energy"] for b in base.values())
    md = (tmp_path / "dims.md").read_text()
    assert "gap closed" in md and "not run" in md and "drift error" in md and "(energy distance)" in md
    # a rerun reads every entry from the cache instead of refitting
    again = dims.main(["--quick", "--out", str(tmp_path), *only])
    assert len(again["runs"]) == 2
    assert {k: again["entries"][k]["w1"] for k in keys} == {k: payload["entries"][k]["w1"] for k in keys}
    assert json.loads((tmp_path / "dims.json").read_text())["entries"].keys() == again["entries"].keys()
    # an entry scored before the energy distance is refitted by --rescore, and only then
    key = "sde|noise10|loo|tj|1"
    del again["entries"][key]["energy"]
    (tmp_path / "dims.json").write_text(json.dumps(again))
    assert "energy" not in dims.main(["--quick", "--out", str(tmp_path), *only])["entries"][key]
    assert dims.main(["--quick", "--out", str(tmp_path), "--rescore", *only])["entries"][key]["energy"] > 0


def test_held_out_bounds_on_the_embryoid_body(tmp_path, shared_data, single_thread):
    """``loo_timing.py`` and ``w1_shrink.py`` (no model) at 5 PCs: the time rule reads the OT
    interpolation half way, the oracle picks λ on the grid, and c = 1 is ``dims.py``'s floor."""
    timing = load_benchmark("loo_timing").main(["--reps", "std5", "--data", str(shared_data), "--out", str(tmp_path)])
    folds = timing["entries"]["std5"]
    assert sorted(folds) == ["1", "2", "3"]
    for fold in folds.values():
        assert fold["lambda"]["time"] == 0.5 and 0.1 <= fold["lambda"]["oracle λ"] <= 0.9
        assert fold["floor"] < min(fold["w1"].values()) and fold["no_move"] > fold["floor"]
    shrink = load_benchmark("w1_shrink").main(["--reps", "std5", "--data", str(shared_data), "--out", str(tmp_path)])
    floors = [folds[h]["floor"] for h in ("1", "2", "3")]
    assert shrink["entries"]["std5"]["w1"]["1.0"] == pytest.approx(floors, rel=1e-12)
    energy = shrink["entries"]["std5"]["energy"]
    assert min(energy, key=lambda c: sum(energy[c])) == "1.0"  # unbiased: no contraction beats the truth's second sample
    assert (tmp_path / "loo_timing.md").exists() and (tmp_path / "w1_shrink.md").exists()
