"""Atomic file writes and file digests: a temporary file beside the target, then a rename, so
a crash never leaves a half-written report, manifest or config behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a unique temporary file beside ``path`` (creating its folder) for binary writing;
    it replaces ``path`` with the usual permissions (0666 less the umask) when the block ends,
    and is removed if the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` (creating its folder) through a unique temporary file;
    the file gets the usual permissions (0666 less the umask)."""
    path = Path(path)
    with atomic_file(path) as fh:
        fh.write(data)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON, atomically (NaN/inf refused: not JSON)."""
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False))


def check_writable(path: str | os.PathLike) -> None:
    """Raise :class:`EdgesepError` now if ``path`` could not be written later (its folder
    missing and not creatable, not writable, or the path a folder)."""
    from edgesep.errors import EdgesepError

    path = Path(path)
    if path.is_dir():
        raise EdgesepError(f"{path}: is a folder, a file path is needed")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise EdgesepError(f"{path}: cannot write there ({folder} is not a writable folder)")


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> None:
    """Raise :class:`EdgesepError` now if folder ``path`` could not be created or written
    later: a file in its place, or the nearest existing folder on its way not writable."""
    from edgesep.errors import EdgesepError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgesepError(f"{path}: is a file, the {what} must be a folder")
    folder = path
    while not folder.exists():
        if folder.is_symlink():
            raise EdgesepError(f"{path}: cannot create the {what} ({folder} is a broken link)")
        folder = folder.parent
    if not folder.is_dir():
        raise EdgesepError(f"{path}: cannot create the {what} ({folder} is not a folder)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EdgesepError(f"{path}: cannot write the {what} ({folder} is not writable)")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_folder(out_dir: str | os.PathLike, log=None) -> Iterator[Path]:
    """Build a folder all or nothing: yields a temporary folder beside ``out_dir`` that replaces
    ``out_dir`` (an old one is swapped out only then) when the block ends, and is removed if it
    raises. What killed runs left beside ``out_dir`` is removed first (see
    :func:`clean_stale`)."""
    out_dir = Path(out_dir)
    for note in clean_stale(out_dir):
        if log is not None:
            log.warning(note)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_stale(out_dir: str | os.PathLike) -> list[str]:
    """Remove what killed runs of ``out_dir`` left beside it (``.NAME.tmp-PID`` and
    ``.NAME.old-PID`` folders whose process is gone); returns one note per folder removed."""
    notes = []
    parent = Path(out_dir).parent
    if not parent.is_dir():
        return notes
    for path in parent.glob(f".{Path(out_dir).name}.*-*"):
        kind, _, pid = path.name.rpartition("-")
        if not kind.endswith((".tmp", ".old")) or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        notes.append(f"removed {path}, left by an interrupted run (process {pid})")
    return notes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
