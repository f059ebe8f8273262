"""Atomic, owner-only file writes (temporary file, fsync, ``os.replace``, mode 0600)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from typing import Any, TypeAlias

from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

__all__ = ["FileSystem", "atomic_write", "read_bytes"]

#: An ``FileSystem`` (fsspec ships no type information).
FileSystem: TypeAlias = Any


def atomic_write(path: str, data: bytes | Sequence[bytes], fs: FileSystem | None = None) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old or the new file, never half.

    ``data`` may be a sequence of chunks, written in order without joining.
    The temporary file is created in the target directory with mode 0600 and
    fsynced before ``os.replace``; the directory is fsynced after. For a
    non-local ``fs`` (S3, GCS ...) the write goes through ``fs.open``, which
    those stores already make all-or-nothing per object.
    """
    if fs is not None and not isinstance(fs, LocalFileSystem):
        parent = os.path.dirname(path)
        if parent and not fs.exists(parent):
            fs.makedirs(parent)
        with fs.open(path, "wb") as f:
            for chunk in [data] if isinstance(data, bytes) else data:
                f.write(chunk)
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ragprod-", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.writelines([data] if isinstance(data, bytes) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_bytes(path: str, fs: FileSystem | None = None) -> bytes:
    """The whole file at ``path`` (through ``fs`` when given)."""
    if fs is not None and not isinstance(fs, LocalFileSystem):
        with fs.open(path, "rb") as f:
            return bytes(f.read())
    with open(path, "rb") as f:
        return f.read()
