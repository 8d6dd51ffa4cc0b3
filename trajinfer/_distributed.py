"""Data-parallel training over processes started by ``torchrun`` (``distributed=True``).

Every process (rank) holds a full copy of the network and draws its own minibatches from its
own random streams. After the backward pass the gradients of all parameters and the minibatch
loss are summed over ranks in one ``all_reduce`` of a flat buffer, so every rank takes the same
optimiser step and the weights stay identical.

Gradients are reduced explicitly rather than through
:class:`torch.nn.parallel.DistributedDataParallel`: the loss evaluates the network through
several entry points (``forward`` on the boundary samples, the forward-mode ``jet`` or nested
autograd for the interior), while DDP's reducer hooks a single ``forward`` call per backward
pass. One reduction after ``backward`` synchronises every parameter whatever way it was used,
works for any custom potential, and costs the same single collective for networks of this size.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._random import torch_generator

__all__ = ["DistributedContext", "is_main_process", "setup_distributed"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """The process's place in a data-parallel fit (a single process when ``enabled`` is False).

    Attributes
    ----------
    enabled
        Whether gradients are reduced over a process group.
    rank, world_size
        This process's rank and the number of processes.
    """

    enabled: bool = False
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that shows progress and writes files."""
        return self.rank == 0

    def broadcast_object(self, value: Any) -> Any:
        """``value`` as rank 0 holds it."""
        if not self.enabled:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank (in place)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for tensor in module.state_dict().values():
                torch.distributed.broadcast(tensor, src=0)

    def reduce_gradients(self, parameters: Sequence[nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
        """Sum the gradients and ``loss`` over ranks in place; return the summed loss.

        Each rank's contribution is already divided by the total number of minibatches, so the
        sums are averages. Parameters without a gradient contribute zeros.
        """
        if not self.enabled:
            return loss
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads] + [loss.reshape(1).to(grads[0].dtype)])
        torch.distributed.all_reduce(flat)
        offset = 0
        for param, grad in zip(parameters, grads):
            size = grad.numel()
            param.grad = flat[offset : offset + size].view_as(param)
            offset += size
        return flat[-1].to(loss.dtype)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate a 1-D tensor of equal length on every rank, in rank order."""
        if not self.enabled:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def gather_objects(self, values: list[Any]) -> list[Any]:
        """Concatenate each rank's list of picklable values, in rank order."""
        if not self.enabled:
            return values
        parts: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(parts, values)
        return [value for part in parts for value in part]

    def streams(self, first: torch.Generator, seed: int, per_rank: int, device: torch.device) -> list[torch.Generator]:
        """This rank's random streams: stream ``j`` of ``world_size × per_rank`` is seeded ``seed + j``.

        Stream 0 is ``first`` (the generator already seeded with ``seed``), so a single-process
        fit without gradient accumulation draws from one stream, the generator of its seed.
        """
        ids = range(self.rank * per_rank, (self.rank + 1) * per_rank)
        return [first if j == 0 else torch_generator(seed + j, device) for j in ids]


def setup_distributed(enabled: bool, device: torch.device) -> tuple[DistributedContext, torch.device]:
    """Join (or create) the default process group and pick this rank's device.

    Parameters
    ----------
    enabled
        ``False`` returns a single-process context and ``device`` unchanged.
    device
        The requested device; a CUDA device without an index becomes ``cuda:LOCAL_RANK``.

    Returns
    -------
    context, device

    Raises
    ------
    RuntimeError
        If no process group exists and the environment was not set up by ``torchrun``, or the
        group's backend cannot handle tensors on ``device``.
    """
    if not enabled:
        return DistributedContext(), device
    if not torch.distributed.is_available():
        raise RuntimeError("distributed=True needs a PyTorch build with torch.distributed.")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        missing = [key for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if key not in os.environ]
        if missing:
            raise RuntimeError(
                f"distributed=True needs a process group: launch with torchrun (e.g. 'torchrun "
                f"--nproc_per_node=2 script.py') or call torch.distributed.init_process_group first "
                f"(missing environment variables: {', '.join(missing)})."
            )
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
        atexit.register(_destroy_process_group)
        if torch.distributed.get_rank() == 0:
            logger.info("Started a %s process group of %d ranks.", backend, torch.distributed.get_world_size())
    backend = torch.distributed.get_backend()
    if backend == "nccl" and device.type != "cuda":
        raise RuntimeError("The process group uses NCCL, which needs CUDA tensors; fit with device='cuda'.")
    return DistributedContext(True, torch.distributed.get_rank(), torch.distributed.get_world_size()), device


def is_main_process() -> bool:
    """False on the ranks other than 0 of an initialised process group."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or torch.distributed.get_rank() == 0


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
