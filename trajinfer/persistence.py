"""The one reader and writer of trajinfer's files.

Model files (:meth:`~trajinfer.ActionMatching.save`, :meth:`~trajinfer.Dynamics.save`) and fit
checkpoints are ``torch.save`` archives of tensors and plain Python values, written atomically
by :func:`write_payload` (see :mod:`trajinfer._io`) and read with ``torch.load(...,
weights_only=True)``, so reading a file never runs code from it. Each file records its format
and format version. :func:`read_payload` turns every way a file can fail to read (empty, cut
short, not written by trajinfer, holding objects other than tensors and plain values, written by
a newer trajinfer) into a ``ValueError`` that names the file, the problem and what to do.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._io import write_atomically

__all__ = ["DYNAMICS", "MODEL", "FileKind", "read_payload", "to_plain", "write_payload"]

# the first bytes of a zip archive: what every torch.save file starts with
_ZIP_MAGIC = b"PK\x03\x04"


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
    version_keys
        Further entries the files of one format version hold, by version.
    """

    format: str
    version: int
    description: str
    remedy: str
    keys: tuple[str, ...]
    version_keys: dict[int, tuple[str, ...]] = field(default_factory=dict)


MODEL = FileKind(
    format="trajinfer.ActionMatching",
    version=2,
    description="saved trajinfer ActionMatching model",
    remedy="Check the path; otherwise save the model again (ActionMatching.save, or 'trajinfer fit --model') or refit it.",
    keys=("params", "fitted"),
    version_keys={1: ("potential_config", "state_dict"), 2: ("dynamics",)},
)
DYNAMICS = FileKind(
    format="trajinfer.Dynamics",
    version=1,
    description="saved trajinfer Dynamics",
    remedy="Check the path; otherwise save the fitted dynamics again (Dynamics.save) or refit them.",
    keys=("method", "sigma", "cost", "growth_scale", "dim", "t_range", "potential_config", "state_dict"),
)


def to_plain(value: Any) -> Any:
    """NumPy scalars and arrays, tuples and lists as plain Python values (``weights_only``-loadable)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, list, tuple)):
        return [to_plain(v) for v in value]
    return value


def read_payload(file: str | Path, kind: FileKind) -> dict[str, Any]:
    """Read a file of ``kind`` written by trajinfer, safely, and return its content.

    Parameters
    ----------
    file
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
    file = Path(file)

    def refuse(problem: str) -> ValueError:
        return ValueError(f"{file} is not a {kind.description}: {problem}. {kind.remedy}")

    with open(file, "rb") as stream:
        head = stream.read(len(_ZIP_MAGIC))
    if not head:
        raise refuse("the file is empty, probably because writing it was interrupted")
    if not zipfile.is_zipfile(file):
        if head == _ZIP_MAGIC:
            raise refuse("the file is truncated or damaged, probably because writing it was interrupted")
        raise refuse("its content was not written by trajinfer")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
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
            f"{file} was written by a newer trajinfer (format version {version}; this trajinfer reads "
            f"versions up to {kind.version}). Upgrade trajinfer to read it."
        )
    missing = [key for key in (*kind.keys, *kind.version_keys.get(version, ())) if key not in payload]
    if missing:
        raise refuse(f"it lacks {', '.join(missing)}, so it is damaged or was not written by trajinfer")
    return payload


def write_payload(payload: dict[str, Any], file: str | Path) -> None:
    """Write ``payload`` to ``file`` atomically with ``torch.save``.

    Raises
    ------
    OSError
        If the file cannot be written completely (no space left, a file-size limit, no
        permission); the message names the file, and a previous file there stays intact.
    """
    write_atomically(file, lambda tmp: torch.save(payload, tmp))
