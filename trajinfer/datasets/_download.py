"""Cache location and checked file downloads for the bundled dataset loaders."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from .._progress import progress_bar

__all__ = ["DownloadError", "cache_dir", "download", "file_sha256"]

logger = logging.getLogger(__name__)

_CHUNK_SIZE = 1 << 20


class DownloadError(OSError):
    """A download failed: the source could not be read or its checksum did not match."""


def cache_dir() -> Path:
    """Directory where dataset files are looked for and downloaded to.

    Returns
    -------
    pathlib.Path
        ``$TRAJINFER_DATA`` when that environment variable is set, else ``~/.cache/trajinfer``.
        The directory is not created here; downloads create it when needed.
    """
    env = os.environ.get("TRAJINFER_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "trajinfer"


def file_sha256(path: str | Path) -> str:
    """Hexadecimal SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str, dest: str | Path, sha256: str | None = None, *, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest`` through a temporary file, checking its SHA-256 when known.

    The file is written to a temporary file beside ``dest`` and renamed into place only after
    the whole content arrived and the checksum matched, so an interrupted or corrupt download
    never leaves a file at ``dest``.

    Parameters
    ----------
    url
        Any URL :func:`urllib.request.urlopen` can read (``https://``, ``file://``, ...).
    dest
        Final path of the file; missing parent directories are created.
    sha256
        Expected hexadecimal SHA-256 digest, or ``None`` to skip the check.
    progress
        Show a tqdm progress bar.
    timeout
        Seconds to wait for the connection.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    DownloadError
        If the URL cannot be read or the checksum does not match.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            digest = _stream(url, out, progress=progress, timeout=timeout, desc=dest.name)
        if sha256 is not None and digest != sha256.lower():
            raise DownloadError(
                f"Checksum mismatch for {url}: expected sha256 {sha256}, got {digest}. The file may "
                "be corrupt or have changed upstream; retry, or obtain the file another way and "
                "pass its path to the loader."
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("Downloaded %s to %s", url, dest)
    return dest


def _stream(url: str, out: BinaryIO, *, progress: bool, timeout: float, desc: str) -> str:
    """Copy the content at ``url`` into the open binary file ``out``; return its SHA-256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            with progress_bar(total=int(total) if total else None, unit="B", unit_scale=True, desc=desc, show=progress) as bar:
                for chunk in iter(lambda: response.read(_CHUNK_SIZE), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"Could not download {url}: {err}") from err
    return digest.hexdigest()
