"""Checkpoints of long fits: a killed fit resumes to the uninterrupted result; resuming checks the settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CLOUD_TIMES, FailingPath, drifting_clouds, same_weights, small_estimator

import trajinfer as tj


@pytest.mark.parametrize("interpolation", ["mixture", "learned"])
def test_resume_after_kill_reproduces_the_uninterrupted_fit(tmp_path, interpolation):
    X = drifting_clouds()
    params = dict(n_iter=16, time_proposal="adaptive")
    path_params = dict(interpolation=interpolation)
    full_path = tj.SnapshotPath(X, CLOUD_TIMES, **path_params)
    full = small_estimator(**params).fit(full_path)

    ckpt = tmp_path / "fit.ckpt"
    checkpoints = dict(checkpoint_file=ckpt, checkpoint_every=8)
    with pytest.raises(KeyboardInterrupt):  # killed at iteration 11, after the checkpoint at 8
        small_estimator(run=checkpoints, **params).fit(FailingPath(X, CLOUD_TIMES, at=11, error=KeyboardInterrupt, **path_params))
    assert torch.load(ckpt, weights_only=True)["iteration"] == 8

    resumed_path = tj.SnapshotPath(X, CLOUD_TIMES, **path_params)
    resumed = small_estimator(run=dict(checkpoints, resume=True), **params).fit(resumed_path)
    np.testing.assert_array_equal(resumed.loss_curve_, full.loss_curve_)
    assert resumed.n_iter_ == 16 and same_weights(resumed.potential_, full.potential_)
    if interpolation == "learned":  # the path resumes where it was, and learns on as it did
        assert same_weights(resumed_path.correction, full_path.correction)

    again = small_estimator(run=dict(checkpoints, resume=True), **params).fit(tj.SnapshotPath(X, CLOUD_TIMES, **path_params))
    np.testing.assert_array_equal(again.loss_curve_, full.loss_curve_)  # finished checkpoint: nothing to run
    assert same_weights(again.potential_, full.potential_)


def test_resume_without_checkpoint_starts_fresh_and_rejects_other_settings(tmp_path):
    X = drifting_clouds()
    ckpt = tmp_path / "fit.ckpt"
    plain = small_estimator(n_iter=4).fit(tj.SnapshotPath(X, CLOUD_TIMES))
    resume = dict(checkpoint_file=ckpt, resume=True)
    fresh = small_estimator(n_iter=4, run=resume).fit(tj.SnapshotPath(X, CLOUD_TIMES))
    np.testing.assert_array_equal(fresh.loss_curve_, plain.loss_curve_)
    assert same_weights(fresh.potential_, plain.potential_)
    assert ckpt.exists() and torch.load(ckpt, weights_only=True)["iteration"] == 4
    with pytest.raises(ValueError, match="batch_size"):
        small_estimator(n_iter=4, batch_size=16, run=resume).fit(tj.SnapshotPath(X, CLOUD_TIMES))
    with pytest.raises(ValueError, match="resume=True needs checkpoint_file"):
        small_estimator(run=dict(resume=True)).fit(tj.SnapshotPath(X, CLOUD_TIMES))
