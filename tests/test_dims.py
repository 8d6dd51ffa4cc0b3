"""The dimension sweep's smoke mode: synthetic SDE only, cached entries skipped on a rerun."""

from __future__ import annotations

import json

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
        assert 0 <= rec["drift_rel_error"] and "diagnostics" in rec
    base = payload["baselines"]["sde|noise10|loo"]
    assert sorted(base) == ["1", "2", "3"] and all(b["no_move"] > b["floor"] > 0 for b in base.values())
    md = (tmp_path / "dims.md").read_text()
    assert "gap closed" in md and "not run" in md and "drift error" in md
    # a rerun reads every entry from the cache instead of refitting
    again = dims.main(["--quick", "--out", str(tmp_path), *only])
    assert len(again["runs"]) == 2
    assert {k: again["entries"][k]["w1"] for k in keys} == {k: payload["entries"][k]["w1"] for k in keys}
    assert json.loads((tmp_path / "dims.json").read_text())["entries"].keys() == again["entries"].keys()
