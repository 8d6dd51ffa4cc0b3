"""Data-parallel training over processes (gloo): two ranks equal one process with twice the batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLOUD_TIMES, drifting_clouds, small_estimator

import trajinfer as tj

_WORKER = textwrap.dedent(
    """
    import logging, os, sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO)
    import trajinfer as tj
    sys.path.insert(0, {tests!r})
    from conftest import CLOUD_TIMES, drifting_clouds, small_estimator
    out, interpolation = sys.argv[1], sys.argv[2]
    model = small_estimator(n_iter=8, time_proposal="adaptive", run=dict(
        distributed=True, progress=True, checkpoint_file=os.path.join(out, "ddp.ckpt"), checkpoint_every=4))
    path = tj.SnapshotPath(drifting_clouds(), CLOUD_TIMES, interpolation=interpolation)
    model.fit(path)
    rank = torch.distributed.get_rank()
    correction = None if path.correction is None else path.correction.state_dict()
    torch.save({{"loss": torch.as_tensor(model.loss_curve_), "state": model.potential_.state_dict(), "path": correction}},
               os.path.join(out, f"rank{{rank}}.pt"))
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(tmp_path: Path, interpolation: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Fit on two gloo processes; the run and what each rank saved."""
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(script), str(tmp_path), interpolation,
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run, [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def test_two_gloo_processes_equal_one_process_with_twice_the_batch(tmp_path):
    """2 ranks × batch B equal 1 process × 2 micro-batches of B (``grad_accumulation=2``).

    Rank r draws from stream ``seed + r``, exactly the stream of micro-batch r of the single
    process, and a two-operand sum is exact in floating point, so the loss curves and weights
    agree bit for bit (all runs use one thread, so the matrix products round identically).
    """
    run, (rank0, rank1) = _launch(tmp_path, "mixture")
    assert all(torch.equal(rank0["state"][k], rank1["state"][k]) for k in rank0["state"])
    assert torch.equal(rank0["loss"], rank1["loss"])
    assert run.stderr.count("Fitted eam in") == 1  # rank 0 alone reports the fit
    checkpoint = torch.load(tmp_path / "ddp.ckpt", weights_only=True)
    assert checkpoint["iteration"] == 8 and len(checkpoint["rng"]) == 2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = small_estimator(n_iter=8, time_proposal="adaptive", run=dict(grad_accumulation=2)).fit(
            tj.SnapshotPath(drifting_clouds(), CLOUD_TIMES))
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(single.loss_curve_, rank0["loss"].numpy())
    assert all(torch.equal(v, rank0["state"][k]) for k, v in single.potential_.state_dict().items())


def test_two_processes_learn_one_path(tmp_path):
    """A learned path's gradients are averaged over the ranks: every rank keeps the same path."""
    _, (rank0, rank1) = _launch(tmp_path, "learned")
    assert all(torch.equal(rank0["path"][k], rank1["path"][k]) for k in rank0["path"])
    assert all(torch.equal(rank0["state"][k], rank1["state"][k]) for k in rank0["state"])
    assert float(rank0["path"]["net.4.weight"].abs().max()) > 0  # the path learned (its last layer starts at zero)


def test_distributed_without_process_group_explains_the_launch(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        small_estimator(n_iter=2, run=dict(distributed=True)).fit(tj.SnapshotPath(drifting_clouds(), CLOUD_TIMES))


def test_cli_fit_accepts_the_distributed_flag():
    from trajinfer.cli import build_parser

    base = ["fit", "cells.h5ad", "--time-key", "day", "--model", "model.pt"]
    assert build_parser().parse_args(base + ["--distributed"]).distributed is True
    assert build_parser().parse_args(base).distributed is False
