"""Saving and loading fitted models, and the one reader of trajinfer's files.

Model files (:meth:`~trajinfer.ActionMatching.save`) and fit checkpoints are ``torch.save``
archives of tensors and plain Python values, written atomically (see :mod:`trajinfer._io`)
and read with ``torch.load(..., weights_only=True)``, so reading a file never runs code from
it. Each file records its format and format version. :func:`read_payload` turns every way a
file can fail to read (empty, cut short, not written by trajinfer, holding objects other than
tensors and plain values, written by a newer trajinfer) into a ``ValueError`` that names the
file, the problem and what to do.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._device import resolve_device
from ._distributed import is_main_process
from ._io import atomic_path
from ._random import as_int_seed
from .costs import resolve_cost
from .networks import MLPPotential, build_potential

if TYPE_CHECKING:
    from .estimator import ActionMatching

__all__ = ["MODEL", "FileKind", "load", "read_payload", "save", "to_plain"]

# the first bytes of a zip archive: what every torch.save file starts with
_ZIP_MAGIC = b"PK\x03\x04"

# parameters that describe the machine or the run rather than the model: never written to a
# model file, left at their defaults by load (which takes the device as its argument)
_LOCAL_PARAMS = ("device", "checkpoint_path", "resume")
# the settings a fit used where its parameters said "auto", kept with the fitted model
_RESOLVED = ("lr_", "time_frequencies_", "hidden_dims_")


@dataclass(frozen=True)
class FileKind:
    """A kind of file trajinfer writes: its format tag and version, and how to talk about it.

    Parameters
    ----------
    format
        Tag stored under ``"format"`` in the file.
    version
        Format version written now; files of a higher version are refused.
    description
        What the file is, as read after "not a", e.g. ``"trajinfer fit checkpoint"``.
    remedy
        What to do when a file cannot be read, one or more sentences.
    keys
        Entries every file of this kind holds.
    """

    format: str
    version: int
    description: str
    remedy: str
    keys: tuple[str, ...]


MODEL = FileKind(
    format="trajinfer.ActionMatching",
    version=1,
    description="saved trajinfer ActionMatching model",
    remedy="Check the path; otherwise save the model again (ActionMatching.save, or 'trajinfer fit --model') or refit it.",
    keys=("params", "potential_config", "state_dict", "fitted"),
)


def to_plain(value: Any) -> Any:
    """NumPy scalars and arrays, tuples and lists as plain Python values (``weights_only``-loadable)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, list, tuple)):
        return [to_plain(v) for v in value]
    return value


def read_payload(path: str | Path, kind: FileKind) -> dict[str, Any]:
    """Read a file of ``kind`` written by trajinfer, safely, and return its content.

    Parameters
    ----------
    path
        An existing file.
    kind
        The kind of file expected.

    Raises
    ------
    ValueError
        If the file is empty, truncated or damaged, was not written by trajinfer, holds objects
        other than tensors and plain values (never loaded: loading them could run code), is of
        another kind or format, or was written by a newer trajinfer. The message names the file,
        the problem and ``kind.remedy``.
    OSError
        If the file cannot be opened (missing, a folder, no permission).
    """
    path = Path(path)

    def refuse(problem: str) -> ValueError:
        return ValueError(f"{path} is not a {kind.description}: {problem}. {kind.remedy}")

    with open(path, "rb") as file:
        head = file.read(len(_ZIP_MAGIC))
    if not head:
        raise refuse("the file is empty, probably because writing it was interrupted")
    if not zipfile.is_zipfile(path):
        if head == _ZIP_MAGIC:
            raise refuse("the file is truncated or damaged, probably because writing it was interrupted")
        raise refuse("its content was not written by trajinfer")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message suggests loading without weights_only, which could run code from the file
        raise refuse(
            "it holds objects other than tensors and plain values (or is damaged); they are not loaded, "
            "because loading them could run code from the file"
        ) from None
    except Exception as err:  # any other failure inside the archive means a damaged file
        raise refuse(f"the file is damaged ({type(err).__name__} while reading it)") from err
    if not (isinstance(payload, dict) and isinstance(payload.get("format"), str)):
        raise refuse("it has no trajinfer format tag, so it was not written by trajinfer")
    if payload["format"] != kind.format:
        raise refuse(f"it is a {payload['format']!r} file, not a {kind.format!r} one")
    version = payload.get("version")
    if not (isinstance(version, int) and version >= 1):
        raise refuse(f"its format version {version!r} is not a version trajinfer writes")
    if version > kind.version:
        raise ValueError(
            f"{path} was written by a newer trajinfer (format version {version}; this trajinfer reads "
            f"versions up to {kind.version}). Upgrade trajinfer to read it."
        )
    missing = [key for key in kind.keys if key not in payload]
    if missing:
        raise refuse(f"it lacks {', '.join(missing)}, so it is damaged or was not written by trajinfer")
    return payload


def save(estimator: ActionMatching, path: str | Path) -> None:
    """Write ``estimator`` to ``path`` atomically (see :meth:`ActionMatching.save`)."""
    estimator._check_fitted()
    if estimator.distributed and not is_main_process():
        return
    params = estimator.get_params()
    if not (isinstance(estimator.potential_, MLPPotential) and isinstance(params["potential"], str)):
        raise TypeError("save() supports the built-in potentials; for a custom module save potential_.state_dict().")
    if callable(estimator.sigma) or estimator.time_weight is not None:
        raise TypeError("save() cannot store a callable sigma or time_weight; refit with a constant sigma to save.")
    saved = {key: to_plain(value) for key, value in params.items() if key not in ("cost", *_LOCAL_PARAMS)}
    saved["cost"] = estimator.cost_.config()
    saved["seed"] = None if isinstance(estimator.seed, np.random.Generator) else as_int_seed(estimator.seed)
    payload = {
        "format": MODEL.format,
        "version": MODEL.version,
        "params": saved,
        "potential_config": estimator.potential_.config,
        "state_dict": {key: value.detach().cpu() for key, value in estimator.potential_.state_dict().items()},
        "fitted": {
            "dim_": estimator.dim_,
            "t_range_": list(estimator.t_range_),
            "loss_curve_": torch.as_tensor(estimator.loss_curve_),
            "n_iter_": estimator.n_iter_,
            "fit_time_": estimator.fit_time_,
            **{key: to_plain(getattr(estimator, key)) for key in _RESOLVED if hasattr(estimator, key)},
        },
        "metadata": getattr(estimator, "metadata_", {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: str | Path, device: str | torch.device = "auto") -> ActionMatching:
    """Load a model saved by :meth:`ActionMatching.save` onto ``device``.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file cannot be read as a saved model (see :func:`~trajinfer.persistence.read_payload`); the message
        names the file, the problem and what to do.
    """
    from .estimator import ActionMatching  # the estimator module imports this one

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No saved model at {path}.")
    payload = read_payload(path, MODEL)
    params = {key: value for key, value in payload["params"].items() if key not in _LOCAL_PARAMS}
    params["cost"] = resolve_cost(params["cost"])
    if not isinstance(params["hidden_dims"], str):  # "auto" stays a name
        params["hidden_dims"] = tuple(params["hidden_dims"])
    network = build_potential(payload["potential_config"])
    network.load_state_dict(payload["state_dict"])
    fitted = payload["fitted"]
    est = ActionMatching(device=device, **params)
    est._set_domain(device=resolve_device(device), dim=int(fitted["dim_"]), t_range=tuple(fitted["t_range_"]))
    est._set_fitted(potential=network, loss_curve=fitted["loss_curve_"].numpy(), fit_time=float(fitted["fit_time_"]))
    est.metadata_ = payload.get("metadata", {})
    for key in _RESOLVED:  # files written before these were recorded lack them
        if key in fitted:
            setattr(est, key, tuple(fitted[key]) if key == "hidden_dims_" else fitted[key])
    return est
