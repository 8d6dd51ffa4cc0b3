"""Model and checkpoint files: atomic writes, clear errors on damaged files, safe loading, older formats."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import anndata
import numpy as np
import pytest
import torch
from conftest import merged

import trajinfer as tj
from trajinfer import persistence
from trajinfer._io import atomic_path
from trajinfer.networks import MLPPotential
from trajinfer.persistence import DYNAMICS, MODEL

FAST = dict(hidden_dims=(16, 16), n_iter=10, batch_size=32, run=dict(device="cpu", progress=False), seed=0)


def _snapshots() -> tj.SnapshotPath:
    rng = np.random.default_rng(0)
    return tj.SnapshotPath([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + [2.0, 0.0]], [0.0, 1.0])


@pytest.fixture(scope="module")
def fitted() -> tj.ActionMatching:
    return tj.ActionMatching(method="am", **FAST).fit(_snapshots())


@pytest.fixture(scope="module")
def model_bytes(fitted, tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("model") / "model.pt"
    fitted.save(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("checkpoint") / "fit.ckpt"
    tj.ActionMatching(method="am", **merged(FAST, run=dict(checkpoint_file=path, checkpoint_every=5))).fit(_snapshots())
    return path.read_bytes()


def _crashing_save(data: bytes, error: BaseException):
    """A ``torch.save`` that writes the first half of ``data`` to its target, then raises ``error``."""

    def crash(obj, f, *args, **kwargs):
        Path(f).write_bytes(data[: len(data) // 2])
        raise error

    return crash


def _unreadable(path: Path, problem: str) -> str:
    """Pattern of the loader's error for ``path``: the file, the problem and a remedy."""
    return rf"{re.escape(str(path))} is not a saved trajinfer ActionMatching model: .*{problem}.*save the model again"


# torch's report of a write that stopped short (a full disk, a file-size limit)
_TORCH_WRITE_ERROR = "[enforce fail at inline_container.cc:672] . unexpected pos 832 vs 726"


# ---------------------------------------------------------------------------- atomic writes
@pytest.mark.parametrize(
    "error,raised", [(RuntimeError(_TORCH_WRITE_ERROR), OSError), (KeyboardInterrupt(), KeyboardInterrupt)], ids=["error", "interrupt"],
)
def test_crash_while_saving_keeps_the_previous_model(fitted, model_bytes, tmp_path, monkeypatch, error, raised):
    path = tmp_path / "model.pt"
    path.write_bytes(model_bytes)
    monkeypatch.setattr(torch, "save", _crashing_save(model_bytes, error))
    with pytest.raises(raised) as info:
        fitted.save(path)
    if raised is OSError:  # torch's RuntimeError becomes an OSError naming the file and the remedy
        assert str(info.value).startswith(f"Could not write {path}: ") and "Free disk space" in str(info.value)
        assert info.value.__cause__ is error
    assert path.read_bytes() == model_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary left behind
    monkeypatch.undo()
    assert tj.load(path, device="cpu").n_iter_ == fitted.n_iter_


def test_crash_while_checkpointing_keeps_the_previous_checkpoint(checkpoint_bytes, tmp_path, monkeypatch):
    path = tmp_path / "fit.ckpt"
    path.write_bytes(checkpoint_bytes)
    monkeypatch.setattr(torch, "save", _crashing_save(checkpoint_bytes, RuntimeError(_TORCH_WRITE_ERROR)))
    with pytest.raises(OSError, match=rf"Could not write {re.escape(str(path))}: .*unexpected pos"):
        tj.ActionMatching(method="am", **merged(FAST, run=dict(checkpoint_file=path, checkpoint_every=5))).fit(_snapshots())
    assert path.read_bytes() == checkpoint_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.ckpt"]


def test_atomic_path_replaces_on_success_only(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".json" and not tmp.exists()
        tmp.write_text("new")
        assert target.read_text() == "old"  # replaced only once the block completes
    assert target.read_text() == "new"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise KeyboardInterrupt
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_atomic_path_writes_through_a_symbolic_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with atomic_path(link) as tmp:
        tmp.write_text("new")
    assert link.is_symlink() and real.read_text() == "new"


# ------------------------------------------------------------------------ damaged files
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_truncated_model_gives_a_clear_error(model_bytes, tmp_path, fraction):
    path = tmp_path / "model.pt"
    path.write_bytes(model_bytes[: int(fraction * len(model_bytes))])
    with pytest.raises(ValueError, match=_unreadable(path, "truncated")) as err:
        tj.load(path)
    assert "weights_only" not in str(err.value)


def test_empty_and_random_files_give_clear_errors(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=_unreadable(empty, "empty")):
        tj.load(empty)
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=_unreadable(noise, "not written by trajinfer")) as err:
        tj.load(noise)
    assert "weights_only" not in str(err.value)


class _Exploit:
    """Unpickling this object creates the file ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_pickle_is_not_run(tmp_path, writer):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Exploit(probe))).close()
    assert probe.exists()  # the payload does run when unpickled unsafely

    marker = tmp_path / "marker"
    path = tmp_path / "model.pt"
    payload = {"format": MODEL.format, "version": MODEL.version, "params": _Exploit(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    problem = "objects other than tensors" if writer == "torch.save" else "not written by trajinfer"
    with pytest.raises(ValueError, match=_unreadable(path, problem)) as err:
        tj.load(path)
    assert not marker.exists()
    assert "weights_only" not in str(err.value)


def test_newer_format_version_is_refused(model_bytes, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(model_bytes)
    payload = torch.load(path, weights_only=True)
    payload["version"] = MODEL.version + 1
    torch.save(payload, path)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} was written by a newer trajinfer .*Upgrade trajinfer"):
        tj.load(path)


def test_checkpoint_is_not_a_model_and_lacking_entries_are_named(checkpoint_bytes, tmp_path):
    path = tmp_path / "fit.ckpt"
    path.write_bytes(checkpoint_bytes)
    with pytest.raises(ValueError, match=_unreadable(path, "'trajinfer.ActionMatching.checkpoint' file")):
        tj.load(path)
    partial = tmp_path / "partial.pt"
    torch.save({"format": MODEL.format, "version": MODEL.version, "params": {}}, partial)
    with pytest.raises(ValueError, match=_unreadable(partial, "lacks fitted")):
        tj.load(partial)
    torch.save({"format": MODEL.format, "version": MODEL.version}, partial)
    with pytest.raises(ValueError, match=_unreadable(partial, "lacks params, fitted")):
        tj.load(partial)


@pytest.mark.parametrize("version,entries", [(2, ["dynamics"]), (1, ["potential_config", "state_dict"])], ids=["v2", "v1"])
def test_model_file_lacking_its_network_names_what_is_missing(fitted, model_bytes, tmp_path, version, entries):
    path = tmp_path / "model.pt"
    if version == 2:
        path.write_bytes(model_bytes)
    else:
        _version_1_file(fitted, path)
    payload = torch.load(path, weights_only=True)
    for entry in entries:
        del payload[entry]
    torch.save(payload, path)
    entries = ", ".join(entries)
    with pytest.raises(ValueError, match=_unreadable(path, f"lacks {entries}")):
        tj.load(path)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_resume_from_damaged_checkpoint_gives_a_clear_error(checkpoint_bytes, tmp_path, fraction):
    path = tmp_path / "fit.ckpt"
    path.write_bytes(checkpoint_bytes[: int(fraction * len(checkpoint_bytes))])
    est = tj.ActionMatching(method="am", **merged(FAST, run=dict(checkpoint_file=path, resume=True)))
    problem = "empty" if fraction == 0 else "truncated"
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is not a trajinfer fit checkpoint: .*{problem}.*resume=False"):
        est.fit(_snapshots())


def test_saved_model_holds_nothing_of_this_machine(tmp_path):
    checkpoint = tmp_path / "private_folder" / "fit.ckpt"
    checkpoint.parent.mkdir()
    est = tj.ActionMatching(method="am", **merged(FAST, run=dict(checkpoint_file=checkpoint))).fit(_snapshots())
    path = tmp_path / "model.pt"
    est.save(path)
    assert b"private_folder" not in path.read_bytes()
    assert "run" not in torch.load(path, weights_only=True)["params"]
    loaded = tj.load(path, device="cpu")
    assert loaded.run == tj.RunConfig(device="cpu")  # the defaults, on the device asked for
    assert loaded.run.checkpoint_file is None and loaded.run.resume is False


# ------------------------------------------------------------------------ failed writes
_LIMITED_WRITE = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    import trajinfer as tj

    model, dynamics, trajectories, h5ad = sys.argv[1:5]
    from anndata import AnnData
    from trajinfer._io import write_atomically
    rng = np.random.default_rng(0)
    path = tj.SnapshotPath([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 1.0], [0.0, 1.0])
    est = tj.ActionMatching(hidden_dims=(64, 64), n_iter=2, batch_size=16, run=dict(device="cpu", progress=False))
    est.fit(path)
    est.save(model)                # complete files, written before the limit
    est.dynamics_.save(dynamics)
    traj = est.simulate(rng.normal(size=(200, 2)), t_start=0.0, t_end=1.0, n_steps=20, progress=False)
    traj.save(trajectories)
    adata = AnnData(rng.normal(size=(300, 20)).astype(np.float32))
    write_atomically(h5ad, adata.write_h5ad)
    # a file-size limit far below the files' size: writing beyond it fails with EFBIG
    # (SIGXFSZ, which would kill the process, is ignored) as on a full disk
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    errors = {{}}
    for name, save, file in (("model", est.save, model), ("dynamics", est.dynamics_.save, dynamics),
                             ("trajectories", traj.save, trajectories),
                             ("h5ad", lambda f: write_atomically(f, adata.write_h5ad), h5ad)):
        try:
            save(file)
        except OSError as err:
            errors[name] = str(err)
    print(json.dumps(errors), flush=True)
    os._exit(0)  # h5py can crash while closing the handles of the failed file at exit
    """
)


@pytest.mark.skipif(os.name != "posix", reason="file-size limits (RLIMIT_FSIZE) are POSIX")
def test_a_genuinely_failed_write_raises_oserror_naming_the_file_and_keeps_the_previous_one(tmp_path):
    model, dynamics = tmp_path / "model.pt", tmp_path / "dynamics.pt"
    trajectories, h5ad = tmp_path / "trajectories.npz", tmp_path / "cells.h5ad"
    run = subprocess.run(
        [sys.executable, "-c", _LIMITED_WRITE.format(), str(model), str(dynamics), str(trajectories), str(h5ad)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    errors = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(errors) == {"model", "dynamics", "trajectories", "h5ad"}, errors
    files = {"model": model, "dynamics": dynamics, "trajectories": trajectories, "h5ad": h5ad}
    for name, file in files.items():
        assert errors[name].startswith(f"Could not write {file}: "), errors[name]
        assert "Free disk space or choose another folder" in errors[name]
    # the files written before the limit are intact, and no temporary is left beside them
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files.values())
    assert all(file.stat().st_size > 4096 for file in files.values())
    assert tj.Trajectories.load(trajectories).X.shape == (21, 200, 2)
    assert anndata.read_h5ad(h5ad).shape == (300, 20)
    loaded, loaded_dynamics = tj.load(model, device="cpu"), tj.Dynamics.load(dynamics, device="cpu")
    X = np.random.default_rng(1).normal(size=(10, 2))
    np.testing.assert_array_equal(loaded.velocity(X, 0.5), loaded_dynamics.velocity(X, 0.5))


def test_write_payload_turns_a_torch_write_failure_into_an_oserror(tmp_path, monkeypatch):
    target = tmp_path / "out.pt"
    target.write_bytes(b"previous")

    def failing_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"part")
        raise RuntimeError(_TORCH_WRITE_ERROR)

    monkeypatch.setattr(persistence.torch, "save", failing_save)
    with pytest.raises(OSError, match=rf"^Could not write {re.escape(str(target))}: .*unexpected pos") as info:
        persistence.write_payload({"format": "x"}, target)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["out.pt"]


# ------------------------------------------------------------------------ file formats
def test_model_file_is_format_version_2_holding_the_dynamics(fitted, model_bytes, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(model_bytes)
    payload = torch.load(path, weights_only=True)
    assert MODEL.version == 2 and payload["format"] == MODEL.format and payload["version"] == 2
    assert set(payload) == {"format", "version", "params", "dynamics", "fitted", "metadata"}
    assert not set(tj.RunConfig.__dataclass_fields__) & set(payload["params"])  # run settings are not saved
    dynamics = payload["dynamics"]
    assert dynamics["format"] == DYNAMICS.format and set(DYNAMICS.keys) <= set(dynamics)
    assert dynamics["dim"] == 2 and dynamics["t_range"] == [0.0, 1.0] and dynamics["method"] == "am"
    # the dynamics entry is a complete Dynamics payload
    X = np.random.default_rng(2).normal(size=(15, 2))
    rebuilt = tj.Dynamics.from_payload(dynamics, device="cpu")
    np.testing.assert_array_equal(rebuilt.velocity(X, 0.3), fitted.velocity(X, 0.3))


def _version_1_file(est: tj.ActionMatching, file: Path, **old_params) -> None:
    """Write ``est`` in the layout of format version 1 (trajinfer before Dynamics and RunConfig):
    run settings and ``warmup`` among the parameters, the network beside them, the domain in
    ``fitted``; no device, checkpoint file or resume flag. ``old_params`` override parameters."""
    params = {key: persistence.to_plain(value) for key, value in est.get_params().items() if key not in ("cost", "run")}
    params.update(
        cost=est.cost_.config(), seed=int(est.seed), warmup=0, progress=False, grad_accumulation=1, distributed=False,
        checkpoint_every=500, compile=False, mixed_precision=False,
    )
    params.update(old_params)
    torch.save({
        "format": "trajinfer.ActionMatching",
        "version": 1,
        "params": params,
        "potential_config": est.potential_.config,
        "state_dict": {key: value.detach().cpu() for key, value in est.potential_.state_dict().items()},
        "fitted": {
            "dim_": est.dim_, "t_range_": list(est.t_range_), "loss_curve_": torch.as_tensor(est.loss_curve_),
            "n_iter_": est.n_iter_, "fit_time_": est.fit_time_, "lr_": est.lr_,
            "time_frequencies_": est.time_frequencies_, "hidden_dims_": list(est.hidden_dims_),
        },
        "metadata": {"note": "v1"},
    }, file)


@pytest.mark.parametrize(
    "params", [dict(method="am"), dict(method="eam", sigma=0.3, potential="residual"), dict(method="am", cost="power")],
    ids=["am", "eam-residual", "c-am-power"],
)
def test_version_1_model_files_still_load(tmp_path, params):
    est = tj.ActionMatching(**{**FAST, **params}).fit(_snapshots())
    file = tmp_path / "v1.pt"
    _version_1_file(est, file)
    loaded = tj.load(file, device="cpu")
    X = np.random.default_rng(3).normal(size=(25, 2))
    np.testing.assert_array_equal(loaded.velocity(X, 0.4), est.velocity(X, 0.4))
    np.testing.assert_array_equal(loaded.action(X, 0.8), est.action(X, 0.8))
    np.testing.assert_array_equal(loaded.loss_curve_, est.loss_curve_)
    assert loaded.dim_ == 2 and loaded.t_range_ == (0.0, 1.0) and loaded.n_iter_ == est.n_iter_
    assert type(loaded.cost_) is type(est.cost_) and loaded.dynamics_.method == est.dynamics_.method
    assert (loaded.lr_, loaded.time_frequencies_, loaded.hidden_dims_) == (est.lr_, est.time_frequencies_, est.hidden_dims_)
    assert loaded.metadata_ == {"note": "v1"}
    # the modelling parameters come back; the stored run settings go to run (warmup is dropped),
    # the device is the one asked for
    assert loaded.get_params() | {"cost": None, "run": None} == est.get_params() | {"cost": None, "run": None}
    assert loaded.run == tj.RunConfig(device="cpu", progress=False)
    # saving it again writes the current format
    again = tmp_path / "v2.pt"
    loaded.save(again)
    assert torch.load(again, weights_only=True)["version"] == MODEL.version
    np.testing.assert_array_equal(tj.load(again, device="cpu").velocity(X, 0.4), est.velocity(X, 0.4))


def test_version_1_file_with_removed_settings_loads_and_refuses_to_refit_with_them(fitted, tmp_path):
    file = tmp_path / "v1.pt"
    _version_1_file(fitted, file, time_proposal="uniform", warmup=10)
    loaded = tj.load(file, device="cpu")
    X = np.random.default_rng(4).normal(size=(10, 2))
    np.testing.assert_array_equal(loaded.velocity(X, 0.5), fitted.velocity(X, 0.5))
    assert "warmup" not in loaded.get_params() and loaded.time_proposal == "uniform"
    with pytest.raises(ValueError, match=r"Unknown time_proposal 'uniform'; choose one of \('quasi-uniform', 'adaptive'\)"):
        loaded.fit(_snapshots())
    assert loaded.set_params(time_proposal="quasi-uniform").fit(_snapshots()).n_iter_ == FAST["n_iter"]


def test_model_and_dynamics_files_are_told_apart(fitted, tmp_path):
    model, dynamics = tmp_path / "model.pt", tmp_path / "dynamics.pt"
    fitted.save(model)
    fitted.dynamics_.save(dynamics)
    with pytest.raises(ValueError, match=rf"{re.escape(str(model))} is not a saved trajinfer Dynamics: .*'trajinfer.ActionMatching' file.*Dynamics.save"):
        tj.Dynamics.load(model)
    with pytest.raises(ValueError, match=_unreadable(dynamics, "'trajinfer.Dynamics' file")):
        tj.load(dynamics)
    with pytest.raises(FileNotFoundError, match="No saved dynamics"):
        tj.Dynamics.load(tmp_path / "absent.pt")
    with pytest.raises(TypeError, match="built-in potentials"):
        tj.Dynamics(torch.nn.Identity(), dim=2).save(tmp_path / "custom.pt")
    with pytest.raises(TypeError, match="callable sigma"):
        tj.Dynamics(MLPPotential(2, (8,)), dim=2, method="eam", sigma=lambda t: 0.1 + 0 * t, device="cpu").save(tmp_path / "s.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynamics.pt", "model.pt"]


def test_trajectories_round_trip_with_extra_arrays(tmp_path):
    rng = np.random.default_rng(0)
    traj = tj.Trajectories(times=np.linspace(0, 1, 3), X=rng.normal(size=(3, 5, 2)), log_weights=rng.normal(size=(3, 5)))
    traj.save(tmp_path / "t.npz", cells=np.array(list("abcde")))
    loaded = tj.Trajectories.load(tmp_path / "t.npz")
    for name in ("times", "X", "log_weights"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(traj, name))
    assert list(np.load(tmp_path / "t.npz")["cells"]) == list("abcde")
    with pytest.raises(ValueError, match="own arrays"):
        traj.save(tmp_path / "u.npz", X=np.zeros(1))
