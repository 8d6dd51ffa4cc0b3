"""Model and checkpoint files: atomic writes, clear errors on damaged files, safe loading, parameter checks."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import trajinfer as tj
from trajinfer._io import atomic_path
from trajinfer.persistence import MODEL

FAST = dict(hidden_dims=(16, 16), n_iter=10, batch_size=32, device="cpu", progress=False, seed=0)


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
    tj.ActionMatching(method="am", checkpoint_path=path, checkpoint_every=5, **FAST).fit(_snapshots())
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


# ---------------------------------------------------------------------------- atomic writes
@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_crash_while_saving_keeps_the_previous_model(fitted, model_bytes, tmp_path, monkeypatch, error):
    path = tmp_path / "model.pt"
    path.write_bytes(model_bytes)
    monkeypatch.setattr(torch, "save", _crashing_save(model_bytes, error))
    with pytest.raises(type(error)):
        fitted.save(path)
    assert path.read_bytes() == model_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary left behind
    monkeypatch.undo()
    assert tj.load(path, device="cpu").n_iter_ == fitted.n_iter_


def test_crash_while_checkpointing_keeps_the_previous_checkpoint(checkpoint_bytes, tmp_path, monkeypatch):
    path = tmp_path / "fit.ckpt"
    path.write_bytes(checkpoint_bytes)
    monkeypatch.setattr(torch, "save", _crashing_save(checkpoint_bytes, RuntimeError("disk full")))
    with pytest.raises(RuntimeError, match="disk full"):
        tj.ActionMatching(method="am", checkpoint_path=path, checkpoint_every=5, **FAST).fit(_snapshots())
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
    with pytest.raises(ValueError, match=_unreadable(partial, "lacks potential_config, state_dict, fitted")):
        tj.load(partial)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_resume_from_damaged_checkpoint_gives_a_clear_error(checkpoint_bytes, tmp_path, fraction):
    path = tmp_path / "fit.ckpt"
    path.write_bytes(checkpoint_bytes[: int(fraction * len(checkpoint_bytes))])
    est = tj.ActionMatching(method="am", checkpoint_path=path, resume=True, **FAST)
    problem = "empty" if fraction == 0 else "truncated"
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is not a trajinfer fit checkpoint: .*{problem}.*resume=False"):
        est.fit(_snapshots())


def test_saved_model_holds_nothing_of_this_machine(tmp_path):
    checkpoint = tmp_path / "private_folder" / "fit.ckpt"
    checkpoint.parent.mkdir()
    est = tj.ActionMatching(method="am", checkpoint_path=checkpoint, **FAST).fit(_snapshots())
    path = tmp_path / "model.pt"
    est.save(path)
    assert b"private_folder" not in path.read_bytes()
    loaded = tj.load(path, device="cpu")
    assert loaded.checkpoint_path is None and loaded.resume is False and loaded.device == "cpu"


# ------------------------------------------------------------------- parameter validation
@pytest.mark.parametrize(
    "params,error,match",
    [
        (dict(lr="0.1"), TypeError, r"lr must be a positive number or 'auto', got '0\.1' of type str"),
        (dict(lr=-1e-3), ValueError, r"lr must be a positive number or 'auto', got -0\.001"),
        (dict(hidden_dims=(0,)), ValueError, r"hidden_dims must be a non-empty sequence of positive integers or 'auto', got \(0,\)"),
        (dict(hidden_dims=(-4,)), ValueError, r"hidden_dims must be .*, got \(-4,\)"),
        (dict(hidden_dims=()), ValueError, r"hidden_dims must be a non-empty sequence"),
        (dict(hidden_dims=16), TypeError, r"hidden_dims must be a non-empty sequence of positive integers or 'auto', got 16 of type int"),
        (dict(hidden_dims=(16.0, 16.0)), TypeError, r"hidden_dims must be .*of type tuple"),
        (dict(n_iter=0), ValueError, r"n_iter must be a positive integer or 'auto', got 0"),
        (dict(n_iter=2.5), TypeError, r"n_iter must be a positive integer or 'auto', got 2\.5 of type float"),
        (dict(batch_size=1), ValueError, r"batch_size must be an integer >= 2, got 1"),
        (dict(batch_size="32"), TypeError, r"batch_size must be an integer >= 2, got '32' of type str"),
        (dict(weight_decay=-0.1), ValueError, r"weight_decay must be a non-negative number, got -0\.1"),
        (dict(grad_clip=0.0), ValueError, r"grad_clip must be a positive number or None, got 0\.0"),
        (dict(ema_decay=1.0), ValueError, r"ema_decay must be a number in \(0, 1\) or None, got 1\.0"),
        (dict(n_probes=0), ValueError, r"n_probes must be a positive integer, got 0"),
        (dict(checkpoint_every=0), ValueError, r"checkpoint_every must be a positive integer, got 0"),
        (dict(checkpoint_every=True), TypeError, r"checkpoint_every must be a positive integer, got True of type bool"),
        (dict(grad_accumulation=0), ValueError, r"grad_accumulation must be a positive integer, got 0"),
        (dict(method="sde"), ValueError, r"Unknown method 'sde'; choose one of \('am', 'eam', 'uam', 'ueam'\)"),
        (dict(laplacian="trace"), ValueError, r"Unknown laplacian 'trace'; choose one of \('auto', 'exact', 'hutchinson'\)"),
        (dict(lr_schedule="step"), ValueError, r"Unknown lr_schedule 'step'; choose one of \('cosine', 'constant'\)"),
        (dict(time_proposal="importance"), ValueError, r"Unknown time_proposal 'importance'; choose one of"),
        (dict(activation="relu6"), ValueError, r"Unknown activation 'relu6'; choose one of \('silu'"),
        (dict(device="tpu"), ValueError, r"Unknown device 'tpu'; use 'auto', 'cpu', 'cuda', 'cuda:N' or a torch\.device"),
        (dict(device=0), TypeError, r"Unknown device 0"),
    ],
)
def test_bad_parameters_name_the_parameter_value_and_allowed_values(params, error, match):
    est = tj.ActionMatching(**{**FAST, **params})
    with pytest.raises(error, match=match):
        est.fit(_snapshots())
    assert not hasattr(est, "potential_")  # refused before any training


def test_fit_and_from_potential_use_the_same_checks():
    with pytest.raises(TypeError, match=r"n_iter must be a positive integer or 'auto', got '5' of type str"):
        tj.ActionMatching(**FAST).fit(_snapshots(), n_iter="5")

    class Zero(torch.nn.Module):
        def forward(self, x, t):
            return 0 * x.sum(1) + 0 * t

    with pytest.raises(TypeError, match="lr must be a positive number"):
        tj.ActionMatching.from_potential(Zero(), dim=2, device="cpu", lr="0.1")


@pytest.mark.parametrize(
    "params",
    [
        dict(hidden_dims=[8], checkpoint_every=np.int64(5), lr=np.float32(1e-3), weight_decay=0),
        dict(grad_clip=None, ema_decay=None, device=torch.device("cpu"), hidden_dims=np.array([8, 8])),
    ],
    ids=["list-numpy-scalars", "none-device-array"],
)
def test_accepted_parameter_values(params):
    est = tj.ActionMatching(**{**FAST, "n_iter": 2, **params}).fit(_snapshots())
    assert est.n_iter_ == 2
