"""Atomic file writes: a file is either its previous version or the complete new one.

A writer fills a temporary file in the target's folder; the temporary is flushed to disk and
then renamed over the target in one step (:func:`os.replace`). A writer that fails or is
interrupted (including by ``KeyboardInterrupt``) leaves the previous file untouched and no
temporary behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["atomic_path", "write_atomically"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write in place of ``path``; on success it replaces ``path``.

    Parameters
    ----------
    path
        The file to (over)write. A symbolic link is followed: the file it points to is replaced.

    Yields
    ------
    pathlib.Path
        A fresh path in the target's folder, with the target's suffix (writers that pick the
        format from the suffix keep working). The writer creates the file there.

    Examples
    --------
    >>> with atomic_path("model.pt") as tmp:  # doctest: +SKIP
    ...     torch.save(payload, tmp)
    """
    target = Path(os.path.realpath(path))
    tmp = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Flush the folder entry of a renamed file to disk where the system allows it.

    The rename has happened by then, so this only adds durability against a power cut:
    systems and file systems that cannot sync a folder (Windows, some network mounts) skip it.
    """
    if os.name != "posix":
        return
    with suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def write_atomically(file: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` inside :func:`atomic_path` and name ``file`` in any failure to write it.

    Writers report a full disk or a file-size limit in their own words, often without the file:
    NumPy as a bare ``OSError: [Errno 27] File too large``, h5py (``.h5ad``) and torch as a
    ``RuntimeError``. Each becomes one ``OSError`` that names the file and the fix.

    Raises
    ------
    OSError
        If the file cannot be written completely; a previous file there stays intact.
    """
    try:
        with atomic_path(file) as tmp:
            write(tmp)
    except (OSError, RuntimeError) as err:
        raise OSError(f"Could not write {file}: {err}. Free disk space or choose another folder.") from err
