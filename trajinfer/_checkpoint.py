"""Checkpoints of a running fit, so that a long fit killed part-way can be resumed.

A checkpoint holds everything the fit loop evolves: the raw network weights, the optimiser
(Adam moments), the learning-rate schedule, the moving average of the weights, the time
proposal, the state of every random stream (and of torch's global generator, which callable
paths may draw from) and the losses so far. Resuming restores all of it,
so the resumed fit draws the same minibatches and takes the same steps as an uninterrupted fit
with the same seed: on CPU the loss curves agree exactly.

Files are written atomically (see :mod:`trajinfer._io`), so a fit killed while writing leaves
the previous checkpoint intact, and read by :func:`trajinfer.persistence.read_payload`, so a
damaged checkpoint is reported clearly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._distributed import DistributedContext
from .persistence import FileKind, read_payload, write_payload
from .time_sampling import TimeProposal

__all__ = ["CHECKPOINT", "TrainingState", "load_checkpoint", "save_checkpoint"]

logger = logging.getLogger(__name__)

CHECKPOINT = FileKind(
    format="trajinfer.ActionMatching.checkpoint",
    version=1,
    description="trajinfer fit checkpoint",
    remedy="Delete it, or pass resume=False, to start the fit over.",
    keys=("setup", "iteration", "network", "optimizer", "scheduler", "ema", "proposal", "rng", "losses"),
)


@dataclass
class TrainingState:
    """The objects a fit evolves, restored in place by :func:`load_checkpoint`."""

    network: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: list[torch.Tensor] | None
    proposal: TimeProposal
    streams: list[torch.Generator]
    losses: np.ndarray
    path_trainer: Any = None  # a learned path's trainer (``trajinfer._learned_path.PathTrainer``)


def save_checkpoint(file: Path, state: TrainingState, iteration: int, setup: dict[str, Any], context: DistributedContext) -> None:
    """Write the state after ``iteration`` completed iterations (rank 0 writes; all ranks must call).

    Parameters
    ----------
    file
        Checkpoint file.
    state
        The fit's evolving objects.
    iteration
        Number of completed iterations.
    setup
        Settings a resumed fit must share with this one (see :func:`load_checkpoint`).
    context
        Distributed context: the random streams of every rank are gathered into the file.
    """
    device = next(iter(state.network.parameters())).device
    local = {"streams": [generator.get_state() for generator in state.streams], "global": _global_rng_state(device)}
    rng = context.gather_objects([local])
    if not context.is_main:
        return
    payload = {
        "format": CHECKPOINT.format,
        "version": CHECKPOINT.version,
        "setup": setup,
        "iteration": int(iteration),
        "network": {key: value.detach().cpu() for key, value in state.network.state_dict().items()},
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "ema": None if state.ema is None else [avg.detach().cpu() for avg in state.ema],
        "proposal": state.proposal.state_dict(),
        "rng": rng,
        "losses": torch.as_tensor(state.losses[:iteration], dtype=torch.float64),
        "path": None if state.path_trainer is None else state.path_trainer.state_dict(),
    }
    write_payload(payload, file)
    logger.debug("Checkpoint written to %s at iteration %d.", file, iteration)


def load_checkpoint(file: Path, state: TrainingState, setup: dict[str, Any], context: DistributedContext) -> int:
    """Restore ``state`` in place from ``file``; return the number of completed iterations.

    Raises
    ------
    ValueError
        If the file cannot be read as a checkpoint (empty, truncated, damaged, of another kind
        or a newer format: see :func:`~trajinfer.persistence.read_payload`), or was written by a
        fit with different settings (``setup``: estimator parameters, data dimension and time range, number of
        random streams, device type).
    """
    payload = read_payload(file, CHECKPOINT)
    saved = payload["setup"]
    changed = sorted(key for key in set(saved) | set(setup) if saved.get(key) != setup.get(key))
    if changed:
        details = "; ".join(f"{key}: checkpoint {saved.get(key)!r}, now {setup.get(key)!r}" for key in changed)
        raise ValueError(
            f"The checkpoint {file} was written by a fit with other settings ({details}). Resume with the "
            "same parameters, data, number of processes and device type, or pass resume=False to start over."
        )
    device = next(iter(state.network.parameters())).device
    state.network.load_state_dict(payload["network"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.scheduler.load_state_dict(payload["scheduler"])
    if state.ema is not None:
        for avg, saved_avg in zip(state.ema, payload["ema"]):
            avg.copy_(saved_avg.to(device))
    state.proposal.load_state_dict(payload["proposal"])
    rng = payload["rng"][context.rank]
    for generator, saved_state in zip(state.streams, rng["streams"]):
        generator.set_state(saved_state)
    _set_global_rng_state(rng["global"], device)
    if state.path_trainer is not None:
        if payload.get("path") is None:
            raise ValueError(f"The checkpoint {file} holds no learned path. Pass resume=False to start over.")
        state.path_trainer.load_state_dict(payload["path"])
    iteration = int(payload["iteration"])
    state.losses[:iteration] = payload["losses"].numpy()
    logger.info("Resumed the fit from %s at iteration %d.", file, iteration)
    return iteration


def _global_rng_state(device: torch.device) -> list[torch.Tensor]:
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


def _set_global_rng_state(states: list[torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(states[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states[1], device)
