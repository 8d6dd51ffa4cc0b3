"""Run-time settings of a fit: where and how it runs, apart from what it models.

:class:`RunConfig` groups the settings that change neither the model nor, on one device, the
fitted weights (the device, progress display, checkpoints, data-parallel processes, compiling):
:class:`~trajinfer.ActionMatching` takes them as one ``run`` parameter so that its signature
shows the modelling choices.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any, ClassVar

import torch

from ._validation import Constraint, Device, Interval, validate_params

__all__ = ["RUN_SETTINGS", "RunConfig", "as_run_config", "fold_run_settings"]


@dataclass(frozen=True)
class RunConfig:
    """Where and how a fit runs.

    Parameters
    ----------
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    progress
        Show a progress bar while fitting and simulating.
    grad_accumulation
        Minibatches of ``batch_size`` whose gradients are averaged in each optimiser step: an
        effective batch of ``batch_size × grad_accumulation × processes`` in bounded memory.
    distributed
        Data-parallel training over the processes of a ``torchrun`` launch (or an initialised
        ``torch.distributed`` process group): each process draws its own minibatches, gradients
        are averaged over processes after every backward pass, and rank 0 alone shows progress
        and writes checkpoints and model files. CUDA devices are assigned by ``LOCAL_RANK``
        (NCCL), CPU processes use gloo. Launch as ``torchrun --nproc_per_node=4 script.py``, or
        ``torchrun --nproc_per_node=4 -m trajinfer fit ... --distributed``.
    checkpoint_file
        File to which the state of the fit is written every ``checkpoint_every`` iterations and
        at the end (network, optimiser, schedule, moving average, time proposal, random streams,
        iteration and losses); ``None`` writes none.
    checkpoint_every
        Iterations between checkpoints.
    resume
        Continue from ``checkpoint_file`` when that file exists (otherwise start a new fit). The
        resumed fit needs the same parameters, data, number of processes and device type, and
        reproduces the uninterrupted fit (exactly on CPU).
    compile
        Compile the training passes with ``torch.compile`` where it applies (the forward-mode
        jet of the built-in potentials: entropic methods with an exact Laplacian); the first
        iterations pay the compilation time.
    mixed_precision
        Evaluate the network in bfloat16 autocast during training, with float32 losses,
        gradients and weights (methods without a Laplacian term: ``am``, ``uam`` and c-AM;
        useful on GPUs with bfloat16 tensor cores).

    Notes
    -----
    Minibatch ``j`` of an optimiser step (``j < processes × grad_accumulation``, numbered by
    rank, then accumulation step) draws from a random stream seeded ``seed + j``, so a fit on
    ``P`` processes takes the same steps as a single-process fit with
    ``grad_accumulation=P`` (up to the summation order of the reduction).
    """

    device: str | torch.device = "auto"
    progress: bool = True
    grad_accumulation: int = 1
    distributed: bool = False
    checkpoint_file: str | Path | None = None
    checkpoint_every: int = 500
    resume: bool = False
    compile: bool = False
    mixed_precision: bool = False

    _constraints: ClassVar[dict[str, Constraint]] = {
        "device": Device(),
        "grad_accumulation": Interval(Integral, 1),
        "checkpoint_every": Interval(Integral, 1),
    }

    def validate(self) -> None:
        """Check the settings; raise ``TypeError``/``ValueError`` naming the setting and the fix."""
        validate_params(dataclasses.asdict(self), self._constraints)
        if self.resume and self.checkpoint_file is None:
            raise ValueError("resume=True needs checkpoint_file, the file to resume from.")
        if self.checkpoint_file is not None and not Path(self.checkpoint_file).resolve().parent.is_dir():
            raise ValueError(f"checkpoint_file={str(self.checkpoint_file)!r}: its folder does not exist.")

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


#: Names of the run-time settings (the fields of :class:`RunConfig`).
RUN_SETTINGS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(RunConfig))
#: Earlier names of run settings, accepted with a FutureWarning for one release.
_RENAMED = {"checkpoint_path": "checkpoint_file"}


def _renamed(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with earlier names replaced by the current ones (a FutureWarning for each)."""
    out = {}
    for key, value in settings.items():
        if key in _RENAMED:
            warnings.warn(f"The run setting {key!r} is now called {_RENAMED[key]!r}; the old name will be removed "
                          "in the next release.", FutureWarning, stacklevel=4)
            key = _RENAMED[key]
        out[key] = value
    return out


def as_run_config(run: RunConfig | Mapping[str, Any] | None) -> RunConfig:
    """``run`` as a :class:`RunConfig` (``None``: the defaults; a mapping: its settings)."""
    if run is None:
        return RunConfig()
    if isinstance(run, RunConfig):
        return run
    if isinstance(run, Mapping):
        run = _renamed(run)
        unknown = sorted(set(run) - set(RUN_SETTINGS))
        if unknown:
            raise ValueError(f"Unknown run settings {unknown}; RunConfig takes {list(RUN_SETTINGS)}.")
        return RunConfig(**run)
    raise TypeError(f"run must be a trajinfer.RunConfig, a dict of its settings or None; got {type(run).__name__}.")


def fold_run_settings(run: RunConfig | Mapping[str, Any] | None, settings: dict[str, Any], *, owner: str) -> RunConfig:
    """Fold run settings passed as keywords of ``owner`` into ``run``, with a FutureWarning.

    Raises
    ------
    TypeError
        For a keyword that is not a run setting.
    """
    settings = _renamed(settings)
    unknown = sorted(set(settings) - set(RUN_SETTINGS))
    if unknown:
        raise TypeError(f"{owner} got unexpected keyword argument(s) {unknown}.")
    named = ", ".join(f"{key}={value!r}" for key, value in settings.items())
    warnings.warn(
        f"{owner}({named}) is deprecated and will be removed in the next release: run settings go in one "
        f"parameter, {owner}(run=tj.RunConfig({named})).", FutureWarning, stacklevel=3,
    )
    return as_run_config(run).replace(**settings)
