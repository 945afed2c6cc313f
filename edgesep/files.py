"""Atomic file writes and file digests: a temporary file beside the target, then a rename, so
a crash never leaves a half-written report, manifest or config behind.

A temporary file is named ``.tmp-PID-RANDOM-NAME`` (:func:`create_temp`): the process that
owns it and the target's name (its extension kept, for writers that check it). A run that is
stopped (an exception, Ctrl-C, SIGTERM or SIGHUP: see :func:`edgesep.cli.main`) removes its
own; what a SIGKILLed run left is removed by the next write into that folder
(:func:`clean_stale_temps`), once its process is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

#: Kernel and device trees: no report or output of edgesep belongs there.
SPECIAL_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
#: How the name of every temporary file edgesep writes begins (:func:`create_temp`).
TEMP_PREFIX = ".tmp-"
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d{1,9})-[0-9a-f]{8}-")

log = logging.getLogger("edgesep.files")


def create_temp(path: str | os.PathLike) -> tuple[int, Path]:
    """Create a new empty file ``.tmp-PID-RANDOM-NAME`` beside ``path`` (creating its folder;
    the kernel applies the umask to 0666); returns its descriptor, open for reading and
    writing, and its path. Temporaries that killed runs left in that folder are removed first
    (:func:`clean_stale_temps`)."""
    from edgesep.errors import EdgesepError

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for note in clean_stale_temps(path.parent):
        log.warning(note)
    for _ in range(100):
        tmp = path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}")
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise EdgesepError(f"{path}: could not create a temporary file beside it")


def clean_stale_temps(folder: str | os.PathLike) -> list[str]:
    """Remove the temporary files (:func:`create_temp`) in ``folder`` whose process is gone
    (a SIGKILLed or crashed run); returns one note per file removed. Another live process's
    temporaries, and files of any other name, are kept."""
    notes = []
    try:
        candidates = list(Path(folder).glob(f"{TEMP_PREFIX}*"))
    except OSError:
        return notes
    for path in candidates:
        match = _TEMP_NAME.match(path.name)
        if match is None or path.is_symlink() or not path.is_file():
            continue
        pid = int(match[1])
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            path.unlink()
        except OSError:
            continue
        notes.append(f"removed {path}, left by an interrupted run (process {pid})")
    return notes


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A new empty temporary file beside ``path`` (see :func:`create_temp`), for a writer that
    wants a file name (Keras's ``save_weights``); it replaces ``path`` when the block ends,
    and is removed if the block raises."""
    path = Path(path)
    fd, tmp = create_temp(path)
    os.close(fd)
    try:
        yield tmp
        check_replaceable(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a unique temporary file beside ``path`` (creating its folder) for binary writing;
    it replaces ``path`` with the usual permissions (0666 less the umask) when the block ends,
    and is removed if the block raises."""
    path = Path(path)
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        check_replaceable(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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


def check_replaceable(path: str | os.PathLike) -> None:
    """Raise :class:`EdgesepError` unless ``path`` is absent or a regular file (not a link,
    folder, device, FIFO or socket): what a rename onto it may replace. Called just before
    the rename of an atomic write."""
    from edgesep.errors import EdgesepError

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise EdgesepError(f"{path}: {_kind(mode)} appeared there; not replaced")


def check_output_file(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                      what: str = "output file") -> Path:
    """Raise :class:`EdgesepError` now, before any work, if file ``path`` could not or should
    not be written later; returns it as a :class:`Path`.

    Refused: an empty name; a name over NAME_MAX or a path over PATH_MAX bytes; a path under
    /proc, /sys or /dev (``/dev/stdout`` too); an existing path that is not a regular file (a
    folder, symbolic link, device, FIFO or socket: an atomic write would replace it); a
    parent that is not a folder (a regular file on the way) or cannot be created; a folder not
    writable (``os.access``: root passes it); a path inside (or equal to) one of ``inputs``,
    the files and folders the command reads (``None`` entries are skipped).
    """
    from edgesep.errors import EdgesepError

    text = os.fspath(path)
    path = Path(text)
    if not text.strip() or "\0" in text or path.name in ("", ".", ".."):
        raise EdgesepError(f"{text!r}: not a file name, give the path of the {what}")
    _check_lengths(path, what)
    target = _absolute(path)
    _check_special(path, target, what)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise EdgesepError(f"{path}: cannot write there ({exc.strerror})") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise EdgesepError(f"{path}: is a folder, a file path is needed for the {what}")
    if mode is not None and not stat.S_ISREG(mode):
        raise EdgesepError(f"{path}: {_kind(mode)}, not a regular file: give another path for "
                           f"the {what}")
    _check_folder(path.parent, path, what)
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source:
            raise EdgesepError(f"{path}: is {given}, which this command reads; write the {what} "
                               "elsewhere")
        if source in target.parents:
            raise EdgesepError(f"{path}: lies inside {given}, which this command reads; write "
                               f"the {what} elsewhere")
    return path


def check_output_dir(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                     what: str = "output folder", replaced: bool = True) -> Path:
    """Raise :class:`EdgesepError` now, before any work, if folder ``path`` could not be
    created or written later (:func:`check_writable_dir`), is under /proc, /sys or /dev, has a
    name or path over NAME_MAX/PATH_MAX, or is or lies inside one of ``inputs`` (the files and
    folders the command reads; ``None`` entries are skipped). ``replaced``: the folder may be
    swapped out as a whole (``--force``), so it must not contain an input either; ``False``
    for a folder only written into (``stream -o .`` beside its inputs). Returns it as a
    :class:`Path`."""
    from edgesep.errors import EdgesepError

    text = os.fspath(path)
    if not text.strip() or "\0" in text:
        raise EdgesepError(f"{text!r}: not a folder name, give the path of the {what}")
    path = Path(text)
    _check_lengths(path, what)
    target = path.resolve()
    _check_special(path, target, what)
    check_writable_dir(path, what)
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source:
            raise EdgesepError(f"{path}: is {given}, which this command reads; give another "
                               f"{what}")
        if source in target.parents:
            raise EdgesepError(f"{path}: lies inside {given}, which this command reads; give "
                               f"another {what}")
        if replaced and target in source.parents:
            raise EdgesepError(f"{path}: contains {given}, which this command reads; give "
                               f"another {what}")
    return path


def _absolute(path: Path) -> Path:
    """``path`` with its folder's links resolved and its own name kept (a link there is
    itself the thing checked)."""
    return path.parent.resolve() / path.name


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISLNK, "is a symbolic link"), (stat.S_ISDIR, "is a folder"),
             (stat.S_ISCHR, "is a character device"), (stat.S_ISBLK, "is a block device"),
             (stat.S_ISFIFO, "is a FIFO (named pipe)"), (stat.S_ISSOCK, "is a socket"))
    return next((text for test, text in kinds if test(mode)), "is not a regular file")


def _check_lengths(path: Path, what: str) -> None:
    from edgesep.errors import EdgesepError

    name_max, path_max = _limits(path)
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise EdgesepError(f"{part[:40]}...: a name of the {what} path is longer than "
                               f"{name_max} bytes (NAME_MAX)")
    if len(os.fsencode(os.path.abspath(path))) >= path_max:
        raise EdgesepError(f"{str(path)[:40]}...: the {what} path is longer than {path_max - 1} "
                           "bytes (PATH_MAX)")


def _limits(path: Path) -> tuple[int, int]:
    """``(NAME_MAX, PATH_MAX)`` of the file system holding ``path`` (its nearest existing
    folder), 255 and 4096 where the system does not say."""
    folder = Path(os.path.abspath(path)).parent
    while not os.path.isdir(folder) and folder != folder.parent:  # isdir: False on ENAMETOOLONG
        folder = folder.parent
    limits = []
    for name, default in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096)):
        try:
            limits.append(os.pathconf(folder, name) or default)
        except (OSError, ValueError):
            limits.append(default)
    return limits[0], limits[1]


def _check_special(path: Path, resolved: Path, what: str) -> None:
    from edgesep.errors import EdgesepError

    for candidate in (Path(os.path.abspath(path)), resolved):
        for root in SPECIAL_ROOTS:
            if candidate == root or root in candidate.parents:
                raise EdgesepError(f"{path}: is under {root}, not a place for the {what}")


def _check_folder(folder: Path, path: Path, what: str) -> None:
    """The nearest existing folder on the way to ``folder`` is a writable folder."""
    from edgesep.errors import EdgesepError

    while not folder.exists():
        if folder.is_symlink():
            raise EdgesepError(f"{path}: cannot write there ({folder} is a broken link)")
        folder = folder.parent
    if not folder.is_dir():
        raise EdgesepError(f"{path}: cannot write there ({folder} is not a folder)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EdgesepError(f"{path}: cannot write there ({folder} is not a writable folder)")


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


def read_regular(path: Path, limit: int, field_name: str, missing_hint: bool = False) -> bytes:
    """Bytes of a regular file (no symlink, device or FIFO), at most ``limit`` of them."""
    from edgesep.errors import EdgesepError

    try:
        info = os.lstat(path)
    except OSError:
        hint = f" (is {path.parent} an export directory?)" if missing_hint else ""
        raise EdgesepError(f"{path}: no such file ({field_name}){hint}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise EdgesepError(f"{path}: {field_name} must be a regular file (not a link, device "
                           "or pipe)")
    if info.st_size > limit:
        raise EdgesepError(f"{path}: {field_name} is {info.st_size} bytes, over the "
                           f"{limit}-byte limit")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise EdgesepError(f"{path}: cannot read {field_name} ({exc.strerror})") from None
    if len(data) > limit:
        raise EdgesepError(f"{path}: {field_name} grew past the {limit}-byte limit")
    return data
