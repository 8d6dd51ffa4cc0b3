"""Atomic file writes: a file is either its previous version or the complete new one.

A writer fills a temporary file in the target's folder; the temporary is flushed to disk and
then renamed over the target in one step (:func:`os.replace`). A writer that fails or is
interrupted (including by ``KeyboardInterrupt``) leaves the previous file untouched and no
temporary behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["atomic_path"]


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
