"""Long and large fits: checkpoint/resume, divergence handling, data-parallel training over
processes (gloo), backed AnnData, torch.compile and mixed precision."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import trajinfer as tj

TIMES = [0.0, 1.0, 2.0]


def _snapshots(n: int = 150, dim: int = 2, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, dim)) + k for k in range(len(TIMES))]


def _small(**params) -> tj.ActionMatching:
    base = dict(method="eam", sigma=0.3, hidden_dims=(32, 32), batch_size=32, progress=False, device="cpu", seed=3)
    return tj.ActionMatching(**{**base, **params})


class _FailingPath(tj.SnapshotPath):
    """A snapshot path whose loss draws fail from iteration ``at`` on (one draw per iteration)."""

    def __init__(self, X, times, at: int, error: type[BaseException] | None = None):
        super().__init__(X, times)
        self.at, self.error, self.calls = at, error, 0

    def sample_triplet(self, tau, generator=None):
        self.calls += 1
        draws = super().sample_triplet(tau, generator)
        if self.calls > self.at:
            if self.error is not None:
                raise self.error("killed")
            return tuple(torch.full_like(x, float("inf")) for x in draws)
        return draws


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------ checkpoint and resume
def test_resume_after_kill_reproduces_the_uninterrupted_fit(tmp_path):
    X = _snapshots()
    params = dict(n_iter=16, time_proposal="adaptive", checkpoint_every=8)
    full = _small(**params).fit(tj.SnapshotPath(X, TIMES))

    ckpt = tmp_path / "fit.ckpt"
    with pytest.raises(KeyboardInterrupt):  # killed at iteration 11, after the checkpoint at 8
        _small(checkpoint_path=ckpt, **params).fit(_FailingPath(X, TIMES, at=11, error=KeyboardInterrupt))
    assert torch.load(ckpt, weights_only=True)["iteration"] == 8

    resumed = _small(checkpoint_path=ckpt, resume=True, **params).fit(tj.SnapshotPath(X, TIMES))
    np.testing.assert_array_equal(resumed.loss_curve_, full.loss_curve_)
    assert resumed.n_iter_ == 16 and _same_weights(resumed.potential_, full.potential_)

    again = _small(checkpoint_path=ckpt, resume=True, **params).fit(tj.SnapshotPath(X, TIMES))
    np.testing.assert_array_equal(again.loss_curve_, full.loss_curve_)  # finished checkpoint: nothing to run
    assert _same_weights(again.potential_, full.potential_)


def test_resume_without_checkpoint_starts_fresh_and_rejects_other_settings(tmp_path):
    X = _snapshots()
    ckpt = tmp_path / "fit.ckpt"
    plain = _small(n_iter=4).fit(tj.SnapshotPath(X, TIMES))
    fresh = _small(n_iter=4, checkpoint_path=ckpt, resume=True).fit(tj.SnapshotPath(X, TIMES))
    np.testing.assert_array_equal(fresh.loss_curve_, plain.loss_curve_)
    assert ckpt.exists()
    with pytest.raises(ValueError, match="batch_size"):
        _small(n_iter=4, batch_size=16, checkpoint_path=ckpt, resume=True).fit(tj.SnapshotPath(X, TIMES))
    with pytest.raises(ValueError, match="checkpoint_path"):
        _small(resume=True).fit(tj.SnapshotPath(X, TIMES))


# ------------------------------------------------------------------ divergence
def test_nonfinite_loss_keeps_the_last_good_weights():
    X = _snapshots()
    params = dict(lr_schedule="constant", n_iter=12)
    model = _small(**params)
    with pytest.raises(FloatingPointError) as info:
        model.fit(_FailingPath(X, TIMES, at=5))
    message = str(info.value)
    assert "iteration 5" in message and "lr=" in message and "sigma" in message and "data scale" in message
    assert model.n_iter_ == 5 and np.all(np.isfinite(model.loss_curve_))
    # the weights that gave the last finite loss are kept: those after 4 steps (the step to the
    # weights that met the failure is undone); their losses are the first 5 of a clean fit
    clean = _small(**{**params, "n_iter": 5}).fit(tj.SnapshotPath(X, TIMES))
    np.testing.assert_array_equal(model.loss_curve_, clean.loss_curve_)
    four = _small(**{**params, "n_iter": 4}).fit(tj.SnapshotPath(X, TIMES))
    assert _same_weights(model.potential_, four.potential_)
    assert np.all(np.isfinite(model.velocity(X[0], 0.0)))


def test_absurd_learning_rate_raises_with_finite_weights():
    model = _small(lr=1e6, grad_clip=None, n_iter=50)
    with pytest.raises(FloatingPointError, match=r"lr=1000000\.0.*sigma.*data scale"):
        model.fit(tj.SnapshotPath(_snapshots(), TIMES))
    assert 0 < model.n_iter_ < 50
    assert all(torch.isfinite(p).all() for p in model.potential_.parameters())


# ------------------------------------------------------------------ data-parallel training
_WORKER = textwrap.dedent(
    """
    import logging, os, sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO)
    import trajinfer as tj
    sys.path.insert(0, {tests!r})
    from test_scale import TIMES, _small, _snapshots
    out = sys.argv[1]
    model = _small(n_iter=8, time_proposal="adaptive", distributed=True, progress=True,
                   checkpoint_path=os.path.join(out, "ddp.ckpt"), checkpoint_every=4)
    model.fit(tj.SnapshotPath(_snapshots(), TIMES))
    rank = torch.distributed.get_rank()
    torch.save({{"loss": torch.as_tensor(model.loss_curve_), "state": model.potential_.state_dict()}},
               os.path.join(out, f"rank{{rank}}.pt"))
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_processes_equal_one_process_with_twice_the_batch(tmp_path):
    """2 ranks × batch B equal 1 process × 2 micro-batches of B (``grad_accumulation=2``).

    Rank r draws from stream ``seed + r``, exactly the stream of micro-batch r of the single
    process, and a two-operand sum is exact in floating point, so the loss curves and weights
    agree bit for bit (all runs use one thread, so the matrix products round identically).
    """
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(script), str(tmp_path),
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(rank0["state"][k], rank1["state"][k]) for k in rank0["state"])
    assert torch.equal(rank0["loss"], rank1["loss"])
    assert run.stderr.count("Fitted eam in") == 1  # rank 0 alone reports the fit
    checkpoint = torch.load(tmp_path / "ddp.ckpt", weights_only=True)
    assert checkpoint["iteration"] == 8 and len(checkpoint["rng"]) == 2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _small(n_iter=8, time_proposal="adaptive", grad_accumulation=2).fit(tj.SnapshotPath(_snapshots(), TIMES))
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(single.loss_curve_, rank0["loss"].numpy())
    assert all(torch.equal(v, rank0["state"][k]) for k, v in single.potential_.state_dict().items())


def test_distributed_without_process_group_explains_the_launch(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        _small(n_iter=2, distributed=True).fit(tj.SnapshotPath(_snapshots(), TIMES))


def test_cli_fit_accepts_the_distributed_flag():
    from trajinfer.cli import build_parser

    base = ["fit", "cells.h5ad", "--time-key", "day", "--model", "model.pt"]
    assert build_parser().parse_args(base + ["--distributed"]).distributed is True
    assert build_parser().parse_args(base).distributed is False


# ------------------------------------------------------------------ backed AnnData
def _h5ad(path: Path, n_per_time: int = 60) -> Path:
    rng = np.random.default_rng(1)
    n = n_per_time * len(TIMES)
    adata = ad.AnnData(X=sp.random(n, 80, density=0.05, format="csr", dtype=np.float32, random_state=1))
    adata.obs["day"] = np.repeat(TIMES, n_per_time)
    adata.obsm["X_pca"] = (rng.normal(size=(n, 3)) + adata.obs["day"].to_numpy()[:, None]).astype(np.float32)
    adata.write_h5ad(path)
    return path


def test_fit_on_backed_anndata_reads_the_obsm_representation(tmp_path):
    file = _h5ad(tmp_path / "cells.h5ad")
    params = dict(method="am", n_iter=5, hidden_dims=(16,), batch_size=32, progress=False, device="cpu")
    backed = ad.read_h5ad(file, backed="r")
    model = tj.fit(backed, "day", use_rep="X_pca", **params)
    assert backed.isbacked and backed.obsm["tj_velocity"].shape == (backed.n_obs, 3)
    in_memory = tj.fit(ad.read_h5ad(file), "day", use_rep="X_pca", **params)
    np.testing.assert_array_equal(model.loss_curve_, in_memory.loss_curve_)

    backed.write_h5ad(tmp_path / "out.h5ad")  # results saved with X streamed from the backing file
    written = ad.read_h5ad(tmp_path / "out.h5ad")
    assert "tj_velocity" in written.obsm and written.X.nnz == ad.read_h5ad(file).X.nnz

    with pytest.raises(ValueError, match="copy=True"):
        tj.fit(backed, "day", use_rep="X_pca", copy=True, **params)
    del backed.obsm["X_pca"]
    with pytest.raises(ValueError, match="backed"):
        tj.fit(backed, "day", **params)  # would need a PCA of the on-disk X


# ------------------------------------------------------------------ compile and mixed precision
_COMPILE = textwrap.dedent(
    """
    import numpy as np
    import torch
    torch.set_num_threads(1)
    try:
        torch.compile(lambda x: x * 2)(torch.ones(2))
    except Exception as err:
        print("NO-COMPILE", type(err).__name__, err)
        raise SystemExit(0)
    import trajinfer as tj
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(100, 2)) + k for k in range(3)]
    for flag in (False, True):
        model = tj.ActionMatching(method="eam", sigma=0.3, hidden_dims=(16, 16), batch_size=32, n_iter=3,
                                  compile=flag, progress=False, device="cpu")
        model.fit(tj.SnapshotPath(X, [0, 1, 2]))
        assert np.all(np.isfinite(model.loss_curve_)), model.loss_curve_
        print("compile", flag, model.loss_curve_.tolist())
    """
)


def test_compile_true_and_false_give_finite_losses(tmp_path):
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "TORCHINDUCTOR_COMPILE_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-X", "faulthandler", "-c", _COMPILE], env=env, capture_output=True, text=True,
                         timeout=400)
    if "NO-COMPILE" in run.stdout:
        pytest.skip(f"torch.compile does not work on this build: {run.stdout.strip()}")
    if run.returncode < 0:
        frames = [line.strip() for line in run.stderr.splitlines() if line.strip().startswith("File ")][:3]
        pytest.skip(f"torch.compile crashed on this build (signal {-run.returncode}); innermost frames: {frames}")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "compile True" in run.stdout and "compile False" in run.stdout


def test_compile_without_jet_warns_and_mixed_precision_trains():
    X = _snapshots()
    with pytest.warns(UserWarning, match="no effect"):
        _small(method="am", n_iter=2, compile=True).fit(tj.SnapshotPath(X, TIMES))
    model = _small(method="am", n_iter=5, mixed_precision=True).fit(tj.SnapshotPath(X, TIMES))
    assert np.all(np.isfinite(model.loss_curve_))
    assert all(p.dtype == torch.float32 for p in model.potential_.parameters())
    with pytest.raises(ValueError, match="mixed_precision"):
        _small(mixed_precision=True).fit(tj.SnapshotPath(X, TIMES))
