"""Run settings (``tj.RunConfig``): one ``run`` parameter of the estimator, checked by name; the
settings it replaced still work as keywords for one release, with a FutureWarning."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
from sklearn.base import clone

import trajinfer as tj
from trajinfer import _train
from trajinfer._run import RUN_SETTINGS, as_run_config

FAST = dict(method="am", hidden_dims=(8,), n_iter=3, batch_size=16, seed=0)
# three iterations learn nothing, which the fit checks rightly say: these tests are about the run settings
pytestmark = pytest.mark.filterwarnings("ignore::trajinfer.diagnostics.FitWarning")


def _snapshots() -> tj.SnapshotPath:
    rng = np.random.default_rng(0)
    return tj.SnapshotPath([rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) + 1.0], [0.0, 1.0])


def test_defaults_and_the_settings_it_groups():
    run = tj.RunConfig()
    assert RUN_SETTINGS == (
        "device", "progress", "grad_accumulation", "distributed", "checkpoint_file", "checkpoint_every", "resume", "compile",
        "mixed_precision",
    )
    assert (run.device, run.progress, run.grad_accumulation, run.checkpoint_file, run.checkpoint_every) == ("auto", True, 1, None, 500)
    assert not (run.distributed or run.resume or run.compile or run.mixed_precision)
    run.validate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.progress = False
    changed = run.replace(progress=False, device="cpu")
    assert changed == tj.RunConfig(device="cpu", progress=False) and run.progress is True


@pytest.mark.parametrize(
    "settings,error,match",
    [
        (dict(device="tpu"), ValueError, r"Unknown device 'tpu'; use 'auto', 'cpu', 'cuda', 'cuda:N' or a torch\.device"),
        (dict(checkpoint_every=0), ValueError, r"checkpoint_every must be a positive integer, got 0"),
        (dict(checkpoint_every=2.5), TypeError, r"checkpoint_every must be a positive integer, got 2\.5 of type float"),
        (dict(grad_accumulation=0), ValueError, r"grad_accumulation must be a positive integer, got 0"),
        (dict(resume=True), ValueError, r"resume=True needs checkpoint_file, the file to resume from"),
    ],
)
def test_validation_names_the_setting(settings, error, match):
    with pytest.raises(error, match=match):
        tj.RunConfig(**settings).validate()
    est = tj.ActionMatching(**FAST, run=settings)
    with pytest.raises(error, match=match):  # the estimator checks its run settings before fitting
        est.fit(_snapshots())
    assert "dynamics_" not in vars(est)


def test_a_checkpoint_folder_that_does_not_exist_is_named(tmp_path):
    file = tmp_path / "absent" / "fit.ckpt"
    match = rf"checkpoint_file={re.escape(repr(str(file)))}: its folder does not exist"
    with pytest.raises(ValueError, match=match):
        tj.RunConfig(checkpoint_file=file).validate()
    with pytest.raises(ValueError, match=match):
        tj.ActionMatching(**FAST, run=dict(device="cpu", progress=False, checkpoint_file=file)).fit(_snapshots())
    assert not file.parent.exists()


def test_dict_form_is_accepted_and_takes_effect(tmp_path):
    file = tmp_path / "fit.ckpt"
    est = tj.ActionMatching(**FAST, run=dict(device="cpu", progress=False, checkpoint_file=file, checkpoint_every=2))
    assert est.run == dict(device="cpu", progress=False, checkpoint_file=file, checkpoint_every=2)  # stored as passed
    assert as_run_config(est.run) == tj.RunConfig(device="cpu", progress=False, checkpoint_file=file, checkpoint_every=2)
    est.fit(_snapshots())
    assert est.device_ == torch.device("cpu") and torch.load(file, weights_only=True)["iteration"] == 3
    # the same settings as a RunConfig give the same fit
    again = tj.ActionMatching(**FAST, run=tj.RunConfig(device="cpu", progress=False)).fit(_snapshots())
    np.testing.assert_array_equal(again.loss_curve_, est.loss_curve_)


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match=r"Unknown run settings \['gpus', 'verbose'\]; RunConfig takes \['device', 'progress', "):
        as_run_config({"device": "cpu", "gpus": 2, "verbose": True})
    with pytest.raises(TypeError, match="run must be a trajinfer.RunConfig, a dict of its settings or None; got list"):
        as_run_config(["cpu"])
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        tj.RunConfig(gpus=2)
    assert as_run_config(None) == tj.RunConfig()


@pytest.fixture
def bars(monkeypatch) -> list[bool]:
    """Whether each fit's training loop was asked to show its progress bar (how a shown bar is
    drawn depends on where the output goes; here the setting is what counts)."""
    shown = []

    class RecordingLoop(_train.TrainingLoop):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            shown.append(self.progress)

    monkeypatch.setattr(_train, "TrainingLoop", RecordingLoop)
    return shown


def test_progress_setting_shows_or_hides_the_bar(bars):
    tj.ActionMatching(**FAST, run=dict(device="cpu", progress=True)).fit(_snapshots())
    tj.ActionMatching(**FAST, run=dict(device="cpu", progress=False)).fit(_snapshots())
    assert bars == [True, False]


def test_deprecated_run_keywords_warn_and_still_take_effect(bars):
    message = r"ActionMatching\(device='cpu', progress=False\) is deprecated .*ActionMatching\(run=tj\.RunConfig\(device='cpu', progress=False\)\)"
    with pytest.warns(FutureWarning, match=message):
        est = tj.ActionMatching(**FAST, device="cpu", progress=False)
    assert est.run == tj.RunConfig(device="cpu", progress=False)
    assert "device" not in est.get_params() and "progress" not in est.get_params()
    est.fit(_snapshots())
    assert bars == [False]  # progress=False took effect
    assert est.device_ == torch.device("cpu")
    # a keyword is folded into the run passed beside it
    with pytest.warns(FutureWarning, match=r"ActionMatching\(progress=True\) is deprecated.*run=tj\.RunConfig\(progress=True\)"):
        shown = tj.ActionMatching(**FAST, run=dict(device="cpu", grad_accumulation=2), progress=True)
    assert shown.run == tj.RunConfig(device="cpu", grad_accumulation=2, progress=True)
    shown.fit(_snapshots())
    assert bars == [False, True]


def test_checkpoint_path_is_an_earlier_name_of_checkpoint_file(tmp_path):
    file = tmp_path / "fit.ckpt"
    with pytest.warns(FutureWarning, match="The run setting 'checkpoint_path' is now called 'checkpoint_file'"):
        run = as_run_config(dict(checkpoint_path=file))
    assert run == tj.RunConfig(checkpoint_file=file)
    with pytest.warns(FutureWarning) as caught:
        est = tj.ActionMatching(**FAST, run=dict(device="cpu", progress=False), checkpoint_path=file)
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert any("now called 'checkpoint_file'" in m for m in messages), messages
    assert any("run=tj.RunConfig(checkpoint_file=" in m for m in messages), messages
    est.fit(_snapshots())
    assert torch.load(file, weights_only=True)["iteration"] == 3


def test_an_unknown_keyword_raises_type_error():
    with pytest.raises(TypeError, match=r"ActionMatching got unexpected keyword argument\(s\) \['learning_rate'\]"):
        tj.ActionMatching(learning_rate=1e-3)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['warmup'\]"):
        tj.ActionMatching(progress=False, warmup=5)


def test_run_is_a_parameter_that_clone_and_set_params_keep():
    run = tj.RunConfig(device="cpu", progress=False, grad_accumulation=3)
    est = tj.ActionMatching(lr=5e-3, run=run)
    assert "run" in est.get_params() and est.get_params()["run"] is run
    twin = clone(est)
    assert twin.run == run and twin.get_params() == est.get_params()
    assert "run=RunConfig(device='cpu', progress=False, grad_accumulation=3" in repr(est)
    assert est.set_params(run=dict(progress=True)) is est and est.run == dict(progress=True)
    assert clone(est).run == dict(progress=True)
    assert repr(tj.ActionMatching()) == "ActionMatching()"  # run=None is the default
