"""Atomic file writes and checksums: nothing half-written survives a kill.

Write to a temporary file in the destination folder, flush and fsync it, then `os.replace` it
over the destination (atomic on POSIX), so a reader sees the old file or the new one, never a
partial one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `destination`; on success it replaces `destination`.

    Use it for writers that want a file name (safetensors, ONNX, TensorRT):
        with atomic_path(out) as tmp:
            save_file(tensors, tmp)
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o666 & ~_current_umask()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        # mkstemp makes the file 0600; the result gets the mode a plain open() would have given it
        os.chmod(tmp, mode)
        os.replace(tmp, destination)
        fsync_dir(destination.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(destination: str | Path, data: bytes) -> None:
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(destination: str | Path, text: str) -> None:
    atomic_write_bytes(destination, text.encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(folder: Path) -> None:
    """fsync a folder so that a rename inside it survives a crash (best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
